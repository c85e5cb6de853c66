"""Conformal classifiers."""

from .._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    globals(),
    {
        "SplitConformalClassifier": "._split",
        "CaCTClassifier": "._cact",
        "SpeedCPClassifier": "._speedcp",
    },
)
