"""Parameter objects of :class:`CaCTClassifier` (torch-free; defined in ``_training._params``)."""

from .._training._params import (  # noqa: F401
    ALMMultipliers,
    CALSObjective,
    CaCTObjective,
    ConfTrObjective,
    CrossEntropyObjective,
    FocalObjective,
    HRMultipliers,
    SGDOptimizer,
)
