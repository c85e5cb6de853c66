"""Shared input checks and the warning raised for too-small calibration sets."""

import numbers
import warnings

import numpy as np

from ..exceptions import SmallCalibrationWarning


def check_confidence_level(confidence_level, name="confidence_level"):
    """Return ``confidence_level`` as a float in the open interval (0, 1), or raise.

    Parameters
    ----------
    confidence_level : float
        Target coverage probability ``1 - alpha`` (a 0-d numeric array is taken as its value).
    name : str, default="confidence_level"
        Parameter name used in the error message.

    Returns
    -------
    level : float
    """
    if isinstance(confidence_level, np.ndarray) and confidence_level.ndim == 0:
        confidence_level = confidence_level[()]  # np.array(0.8) -> np.float64(0.8)
    if isinstance(confidence_level, (bool, np.bool_)) or not isinstance(
        confidence_level, numbers.Real
    ):
        raise TypeError(f"{name} must be a float in (0, 1), got {confidence_level!r}.")
    level = float(confidence_level)
    if not (0.0 < level < 1.0) or not np.isfinite(level):
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {confidence_level!r}.")
    return level


def warn_small_calibration(n_calibration, confidence_level, where="the calibration set"):
    """Warn that ``n_calibration`` points cannot certify ``confidence_level``."""
    from ._quantile import min_calibration_size

    warnings.warn(
        f"{where} has {n_calibration} points, fewer than the "
        f"{min_calibration_size(confidence_level)} needed for confidence_level="
        f"{confidence_level:g}; the threshold is +inf (trivial prediction sets / infinite "
        "intervals), which keeps the coverage guarantee.",
        SmallCalibrationWarning,
        stacklevel=3,
    )
