"""Numpy core of split conformal prediction: scores, the finite-sample quantile, calibrators.

Nothing here imports torch; every estimator composes these pieces.
"""

from ._calibrators import ClusterAssignment
from ._classification_scores import all_label_scores, prediction_sets, true_label_scores
from ._conformalizer import ClassificationConformalizer
from ._quantile import conformal_quantile, conformal_rank, min_calibration_size
from ._validation import SmallCalibrationWarning, check_confidence_level, warn_small_calibration

__all__ = [
    "ClassificationConformalizer",
    "ClusterAssignment",
    "SmallCalibrationWarning",
    "all_label_scores",
    "check_confidence_level",
    "conformal_quantile",
    "conformal_rank",
    "min_calibration_size",
    "prediction_sets",
    "true_label_scores",
    "warn_small_calibration",
]
