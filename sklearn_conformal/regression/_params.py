"""Parameter objects of :class:`CoCPRegressor` (torch-free; defined in ``_training._params``)."""

from .._training._params import AdamWOptimizer  # noqa: F401
