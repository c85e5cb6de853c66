"""Scorers for ``GridSearchCV(scoring=...)``: callables ``scorer(estimator, X, y)``.

Higher is better for every scorer, as scikit-learn expects.
"""

import numpy as np

from ._intervals import interval_score, mean_interval_length
from ._sets import coverage, mean_set_size


def _label_indices(estimator, y):
    return estimator._encode(np.asarray(y))


def coverage_scorer(estimator, X, y):
    """Empirical coverage of ``predict_set`` (classifiers) or ``predict_interval`` (regressors)."""
    if hasattr(estimator, "predict_interval"):
        return coverage(np.asarray(y, dtype=float), estimator.predict_interval(X))
    return coverage(_label_indices(estimator, y), estimator.predict_set(X))


def neg_mean_set_size_scorer(estimator, X, y):
    """Minus the mean prediction-set size."""
    return -mean_set_size(estimator.predict_set(X))


def neg_mean_interval_length_scorer(estimator, X, y):
    """Minus the mean interval length."""
    return -mean_interval_length(estimator.predict_interval(X))


def neg_interval_score_scorer(estimator, X, y):
    """Minus the mean interval (Winkler) score at the estimator's ``confidence_level``."""
    return -interval_score(y, estimator.predict_interval(X), estimator.confidence_level)
