"""Numpy core of split conformal prediction: scores, the finite-sample quantile, calibrators.

Nothing here imports torch; every estimator composes these pieces.
"""

from ._quantile import conformal_quantile, conformal_rank, min_calibration_size
from ._validation import SmallCalibrationWarning, check_confidence_level

__all__ = [
    "SmallCalibrationWarning",
    "check_confidence_level",
    "conformal_quantile",
    "conformal_rank",
    "min_calibration_size",
]
