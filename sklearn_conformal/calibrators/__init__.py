"""Calibrators: which calibration scores set the threshold of which test point.

An estimator's ``mode`` takes a string (a shortcut for a built-in calibrator) or a calibrator
object, e.g. :class:`MondrianCalibrator` on user groups, :class:`WeightedCalibrator` under
covariate shift, :class:`LabelShiftCalibrator` under label shift, or a subclass of
:class:`BaseCalibrator`. Strings are resolved by :func:`check_calibrator` in ``fit``.
"""

from sklearn.base import clone

from ._base import BaseCalibrator, CalibrationData
from ._builtin import (
    CALIBRATORS,
    ClassConditionalCalibrator,
    ClusterCalibrator,
    MarginalCalibrator,
    MondrianCalibrator,
)
from ._weighted import LabelShiftCalibrator, WeightedCalibrator, weighted_conformal_quantile

__all__ = [
    "BaseCalibrator",
    "CalibrationData",
    "ClassConditionalCalibrator",
    "ClusterCalibrator",
    "MarginalCalibrator",
    "LabelShiftCalibrator",
    "MondrianCalibrator",
    "WeightedCalibrator",
    "check_calibrator",
    "weighted_conformal_quantile",
]


def check_calibrator(mode, *, n_clusters="auto", clustering_fraction="auto", allowed=None):
    """The calibrator for ``mode``: a fresh built-in for a string, a clone for an object.

    Parameters
    ----------
    mode : {"marginal", "class", "cluster"} or BaseCalibrator
    n_clusters, clustering_fraction
        The estimator's shortcut parameters for ``"cluster"``.
    allowed : tuple of str, optional
        The strings this estimator accepts (regressors: ``("marginal",)``).

    Returns
    -------
    calibrator : BaseCalibrator
    """
    allowed = tuple(CALIBRATORS) if allowed is None else allowed
    if isinstance(mode, str):
        if mode not in allowed:
            raise ValueError(
                f"mode must be one of {list(allowed)} or a BaseCalibrator instance (e.g. "
                f"MondrianCalibrator(groups=...)), got {mode!r}."
            )
        if mode == "cluster":
            return ClusterCalibrator(n_clusters, clustering_fraction)
        return CALIBRATORS[mode]()
    missing = [m for m in ("fit", "thresholds") if not callable(getattr(mode, m, None))]
    if missing:
        raise TypeError(
            f"mode must be one of {list(allowed)} or a BaseCalibrator instance; "
            f"{type(mode).__name__} lacks {', '.join(missing)}."
        )
    return clone(mode) if hasattr(mode, "get_params") else mode
