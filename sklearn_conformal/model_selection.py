"""Tuning conformal estimators: out-of-fold sets and intervals, and a refit rule that covers.

* :func:`cross_val_predict_set` -- the ``cross_val_predict`` counterpart for prediction sets and
  intervals: each sample's set (or interval) comes from the fold in which it was held out, with
  the columns of every fold aligned on the labels of all of ``y``.
* :func:`smallest_covering` -- a ``refit=`` rule for ``GridSearchCV`` with several scorers: among
  the configurations whose cross-validated coverage reaches the target, the one with the
  smallest sets or intervals. (``refit="size"`` alone picks the smallest sets, covering or not.)
"""

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.model_selection import check_cv
from sklearn.utils import _safe_indexing, indexable
from sklearn.utils.parallel import Parallel, delayed

from ._core import check_confidence_level

__all__ = ["cross_val_predict_set", "smallest_covering"]


def cross_val_predict_set(estimator, X, y, *, cv=5, confidence_level=None, n_jobs=None):
    """Out-of-fold prediction sets (classifiers) or intervals (regressors).

    Parameters
    ----------
    estimator : conformal estimator
        Cloned and fitted once per fold on the other folds.
    X : array-like or DataFrame of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    cv : int, cross-validation generator or iterable, default=5
        As in scikit-learn (stratified folds for classifiers). Every sample must be held out
        exactly once (a partition), as for ``cross_val_predict``.
    confidence_level : float in (0, 1), default=None
        Level of the sets; ``None`` uses the estimator's.
    n_jobs : int, default=None
        Folds fitted in parallel through :class:`sklearn.utils.parallel.Parallel`, so a joblib
        backend set by the caller distributes them.

    Returns
    -------
    sets : ndarray of bool, shape (n_samples, n_classes), or intervals of shape (n_samples, 2)
        For classifiers the columns follow ``classes``, the sorted labels of ``y``.
    classes : ndarray of shape (n_classes,)
        Only for classifiers (``None`` for regressors).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_conformal import SplitConformalClassifier
    >>> from sklearn_conformal.metrics import coverage
    >>> from sklearn_conformal.model_selection import cross_val_predict_set
    >>> X, y = load_iris(return_X_y=True)
    >>> sets, classes = cross_val_predict_set(SplitConformalClassifier(random_state=0), X, y)
    >>> sets.shape
    (150, 3)
    """
    X, y = indexable(X, y)
    y = np.asarray(y)
    level = None if confidence_level is None else check_confidence_level(confidence_level)
    classifier = is_classifier(estimator)
    splits = list(check_cv(cv, y, classifier=classifier).split(X, y))
    held_out = np.concatenate([test for _, test in splits])
    if held_out.shape[0] != y.shape[0] or np.unique(held_out).shape[0] != y.shape[0]:
        raise ValueError(
            "cross_val_predict_set needs cv to hold out every sample exactly once (a partition "
            "such as KFold); got splits that repeat or miss samples."
        )
    parts = Parallel(n_jobs=n_jobs)(
        delayed(_fit_and_predict)(clone(estimator), X, y, train, test, level)
        for train, test in splits
    )
    if not classifier:
        out = np.empty((y.shape[0], 2))
        for (_, test), (intervals, _) in zip(splits, parts):
            out[test] = intervals
        return out, None
    classes = np.unique(y)
    out = np.zeros((y.shape[0], classes.shape[0]), dtype=bool)
    for (_, test), (sets, fold_classes) in zip(splits, parts):
        # a fold's estimator knows the labels of its training part; the others are never in
        # its sets (column of False)
        out[np.ix_(test, np.searchsorted(classes, fold_classes))] = sets
    return out, classes


def _fit_and_predict(estimator, X, y, train, test, level):
    estimator.fit(_safe_indexing(X, train), y[train])
    X_test = _safe_indexing(X, test)
    if hasattr(estimator, "predict_interval"):
        return np.asarray(estimator.predict_interval(X_test, confidence_level=level)), None
    sets = np.asarray(estimator.predict_set(X_test, confidence_level=level))
    return sets, np.asarray(estimator.classes_)


def smallest_covering(*, size="size", coverage="coverage", confidence_level, tolerance=0.0):
    """A ``refit=`` rule: the smallest sets (or intervals) among configurations that cover.

    Parameters
    ----------
    size : str, default="size"
        Name of the scorer measuring efficiency, higher is better (e.g.
        ``neg_mean_set_size_scorer`` or ``neg_mean_interval_length_scorer``).
    coverage : str, default="coverage"
        Name of the coverage scorer (``coverage_scorer``).
    confidence_level : float in (0, 1)
        Target coverage: configurations whose mean cross-validated coverage is below it (less
        ``tolerance``) are excluded.
    tolerance : float >= 0, default=0.0
        Slack for the noise of the cross-validated coverage. Each fold's coverage of a valid
        configuration scatters around the target with a standard deviation of about
        ``sqrt(level (1 - level) / n_calibration)`` (0.022 with 180 calibration points at 0.9),
        so with few calibration points a strict rule may exclude every configuration.

    Returns
    -------
    refit : callable
        ``refit(cv_results) -> best_index`` for ``GridSearchCV(refit=...)``. It raises a
        ``ValueError`` naming the best coverage reached when no configuration covers.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_conformal import SplitConformalClassifier
    >>> from sklearn_conformal.metrics import coverage_scorer, neg_mean_set_size_scorer
    >>> from sklearn_conformal.model_selection import smallest_covering
    >>> X, y = load_iris(return_X_y=True)
    >>> search = GridSearchCV(
    ...     SplitConformalClassifier(random_state=0),
    ...     {"conformity_score": ["lac", "aps"]},
    ...     scoring={"size": neg_mean_set_size_scorer, "coverage": coverage_scorer},
    ...     refit=smallest_covering(confidence_level=0.9), cv=3,
    ... ).fit(X, y)
    >>> search.best_params_["conformity_score"] in ("lac", "aps")
    True
    """
    level = check_confidence_level(confidence_level)
    tolerance = float(tolerance)
    if not (np.isfinite(tolerance) and 0.0 <= tolerance < level):
        raise ValueError(f"tolerance must be in [0, confidence_level), got {tolerance!r}.")

    def refit(cv_results):
        sizes = np.asarray(cv_results[f"mean_test_{size}"], dtype=float)
        coverages = np.asarray(cv_results[f"mean_test_{coverage}"], dtype=float)
        # a coverage equal to the level up to rounding of the fold averages counts as covering
        covering = np.flatnonzero(coverages >= level - tolerance - 1e-12)
        if covering.size == 0:
            raise ValueError(
                f"no configuration reaches the cross-validated coverage {level:g} - "
                f"{tolerance:g} (best {np.nanmax(coverages):.4f}); widen the grid, raise "
                "tolerance (fold coverages are noisy with few calibration points), or check "
                "that the folds are exchangeable (shuffled)."
            )
        return int(covering[np.argmax(sizes[covering])])

    return refit
