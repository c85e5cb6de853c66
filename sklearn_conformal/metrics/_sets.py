"""Coverage and size of classification prediction sets (and coverage of intervals)."""

import numpy as np


def _weights(sample_weight, n):
    if sample_weight is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(sample_weight, dtype=float)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}.")
    return w / w.sum()


def _hits(y_true, y_pred_set):
    """Indicator that each true value lies in its set (bool sets) or interval ((n, 2) floats)."""
    y_pred_set = np.asarray(y_pred_set)
    y_true = np.asarray(y_true)
    if y_pred_set.ndim != 2 or y_pred_set.shape[0] != y_true.shape[0]:
        raise ValueError(
            "y_pred_set must have shape (n_samples, n_classes) (sets) or (n_samples, 2) "
            f"(intervals) with n_samples={y_true.shape[0]}, got {y_pred_set.shape}."
        )
    if y_pred_set.dtype == bool:
        if not np.issubdtype(y_true.dtype, np.integer):
            raise TypeError(
                "for prediction sets, y_true must hold column indices into the sets "
                "(e.g. np.searchsorted(estimator.classes_, y))."
            )
        if y_true.min(initial=0) < 0 or y_true.max(initial=0) >= y_pred_set.shape[1]:
            raise ValueError("y_true holds indices outside the columns of y_pred_set.")
        return y_pred_set[np.arange(y_true.shape[0]), y_true]
    if y_pred_set.shape[1] != 2:
        raise ValueError(f"intervals must have shape (n_samples, 2), got {y_pred_set.shape}.")
    return (y_pred_set[:, 0] <= y_true) & (y_true <= y_pred_set[:, 1])


def coverage(y_true, y_pred_set, *, sample_weight=None):
    """Fraction of samples whose true value lies in its prediction set or interval.

    Parameters
    ----------
    y_true : ndarray of shape (n_samples,)
        Column indices into the sets (classification) or targets (regression).
    y_pred_set : ndarray of shape (n_samples, n_classes) of bool, or (n_samples, 2)
        Prediction sets or ``[lower, upper]`` intervals.
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    coverage : float
    """
    hits = _hits(y_true, y_pred_set)
    return float(np.dot(_weights(sample_weight, hits.shape[0]), hits))


def mean_set_size(y_pred_set, *, sample_weight=None):
    """Average number of labels per prediction set."""
    y_pred_set = np.asarray(y_pred_set, dtype=bool)
    sizes = y_pred_set.sum(axis=1)
    return float(np.dot(_weights(sample_weight, sizes.shape[0]), sizes))


def size_stratified_coverage(y_true, y_pred_set):
    """Coverage among the samples of each set size.

    Returns
    -------
    table : dict of int to (float, int)
        Set size -> (coverage, number of samples with that size).
    """
    hits = _hits(y_true, y_pred_set)
    sizes = np.asarray(y_pred_set).sum(axis=1)
    return {
        int(size): (float(hits[sizes == size].mean()), int(np.sum(sizes == size)))
        for size in np.unique(sizes)
    }


def class_coverages(y_true, y_pred_set):
    """Coverage within each class present in ``y_true``.

    Returns
    -------
    classes : ndarray of int
        Column indices present in ``y_true``.
    coverages : ndarray of float
    """
    hits = _hits(y_true, y_pred_set)
    present = np.unique(y_true)
    return present, np.array([hits[y_true == k].mean() for k in present])


def class_coverage_gap(y_true, y_pred_set, confidence_level):
    """CovGap (Ding et al. 2023): ``100 * mean_k |coverage_k - confidence_level|``.

    The mean runs over the classes present in ``y_true``.
    """
    _, coverages = class_coverages(y_true, y_pred_set)
    return float(100.0 * np.mean(np.abs(coverages - confidence_level)))
