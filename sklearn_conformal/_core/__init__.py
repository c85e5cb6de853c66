"""Numpy core of split conformal prediction: scores, the finite-sample quantile, calibrators.

Nothing here imports torch; every estimator composes these pieces.
"""

from ._calibrators import ClusterAssignment, class_thresholds, marginal_thresholds
from ._classification_scores import all_label_scores, prediction_sets, true_label_scores
from ._conformalizer import ClassificationConformalizer
from ._quantile import conformal_quantile, conformal_rank, min_calibration_size
from ._regression_scores import regression_intervals, regression_scores
from ._validation import SmallCalibrationWarning, check_confidence_level, warn_small_calibration

__all__ = [
    "ClassificationConformalizer",
    "ClusterAssignment",
    "SmallCalibrationWarning",
    "all_label_scores",
    "check_confidence_level",
    "class_thresholds",
    "conformal_quantile",
    "conformal_rank",
    "marginal_thresholds",
    "min_calibration_size",
    "prediction_sets",
    "regression_intervals",
    "regression_scores",
    "true_label_scores",
    "warn_small_calibration",
]
