"""Conformal classifiers."""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    globals(),
    {
        "SplitConformalClassifier": "._split",
        "CrossConformalClassifier": "._cross",
        "CaCTClassifier": "._cact",
        "SpeedCPClassifier": "._speedcp",
        "ALMMultipliers": "._params",
        "HRMultipliers": "._params",
        "CaCTObjective": "._params",
        "ConfTrObjective": "._params",
        "CrossEntropyObjective": "._params",
        "CALSObjective": "._params",
        "FocalObjective": "._params",
        "SGDOptimizer": "._params",
    },
)
