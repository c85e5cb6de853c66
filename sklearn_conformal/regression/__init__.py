"""Conformal regressors."""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    globals(),
    {
        "SplitConformalRegressor": "._split",
        "CrossConformalRegressor": "._cross",
        "SpeedCPRegressor": "._speedcp",
        "KernelQuantileRegressor": "._kqr",
        "CoCPRegressor": "._cocp",
        "AdamWOptimizer": "._params",
    },
)
