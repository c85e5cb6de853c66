"""Scorers for ``GridSearchCV(scoring=...)``: callables ``scorer(estimator, X, y)``.

Higher is better for every scorer, as scikit-learn expects. The estimator may be a conformal
estimator or a ``Pipeline`` whose last step is one (``make_pipeline(scaler, conformal)``): the
earlier steps then transform ``X`` before the conformal step predicts its sets or intervals.
"""

import numpy as np

from ._intervals import interval_score, mean_interval_length
from ._sets import coverage, mean_set_size


def _conformal_step(estimator, X):
    """``(conformal estimator, its input)``: the last step of a pipeline and the transformed X."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return estimator, X
    final = steps[-1][1]
    if not (hasattr(final, "predict_set") or hasattr(final, "predict_interval")):
        raise TypeError(
            f"the pipeline's last step {type(final).__name__} is not a conformal estimator "
            "(it has neither predict_set nor predict_interval)."
        )
    return final, estimator[:-1].transform(X)


def coverage_scorer(estimator, X, y):
    """Empirical coverage of ``predict_set`` (classifiers) or ``predict_interval`` (regressors)."""
    conformal, X = _conformal_step(estimator, X)
    if hasattr(conformal, "predict_interval"):
        return coverage(np.asarray(y, dtype=float), np.asarray(conformal.predict_interval(X)))
    return coverage(np.asarray(y), np.asarray(conformal.predict_set(X)), classes=conformal.classes_)


def neg_mean_set_size_scorer(estimator, X, y):
    """Minus the mean prediction-set size."""
    conformal, X = _conformal_step(estimator, X)
    return -mean_set_size(np.asarray(conformal.predict_set(X)))


def neg_mean_interval_length_scorer(estimator, X, y):
    """Minus the mean interval length."""
    conformal, X = _conformal_step(estimator, X)
    return -mean_interval_length(np.asarray(conformal.predict_interval(X)))


def neg_interval_score_scorer(estimator, X, y):
    """Minus the mean interval (Winkler) score at the estimator's ``confidence_level``."""
    conformal, X = _conformal_step(estimator, X)
    return -interval_score(y, np.asarray(conformal.predict_interval(X)), conformal.confidence_level)
