"""scikit-learn compatible conformal prediction.

Estimators are imported lazily, so ``import sklearn_conformal`` stays fast and never imports
torch (needed only by :class:`CaCTClassifier` and :class:`CoCPRegressor`).
"""

from ._lazy import attach

__version__ = "0.1.0.dev0"

__getattr__, __dir__, __all__ = attach(
    __name__,
    globals(),
    {
        "SplitConformalClassifier": ".classification",
        "CrossConformalClassifier": ".classification",
        "SpeedCPClassifier": ".classification",
        "CaCTClassifier": ".classification",
        "SplitConformalRegressor": ".regression",
        "CrossConformalRegressor": ".regression",
        "SpeedCPRegressor": ".regression",
        "KernelQuantileRegressor": ".regression",
        "CoCPRegressor": ".regression",
        "metrics": ".metrics",
        "conformity_scores": ".conformity_scores",
        "calibrators": ".calibrators",
        "datasets": ".datasets",
        "plotting": ".plotting",
        "exceptions": ".exceptions",
        "model_selection": ".model_selection",
    },
)
