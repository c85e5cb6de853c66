"""Coverage and size of classification prediction sets (and coverage of intervals).

Prediction sets are boolean arrays ``(n_samples, n_classes)``; intervals are float arrays
``(n_samples, 2)`` (see :mod:`sklearn_conformal.metrics._checks` for why integer arrays are
refused where both could be meant).
"""

import numpy as np

from .._core import check_confidence_level
from ._checks import check_labels, check_sets, hits, weighted_mean


def coverage(y_true, y_pred_set, *, sample_weight=None, classes=None):
    """Fraction of samples whose true value lies in its prediction set or interval.

    Parameters
    ----------
    y_true : ndarray of shape (n_samples,)
        Integer column indices into the sets, or labels with ``classes`` (classification), or
        finite targets (regression).
    y_pred_set : ndarray of shape (n_samples, n_classes) of bool, or (n_samples, 2) of float
        Prediction sets (boolean) or ``[lower, upper]`` intervals (floating, ``lower <= upper``).
        Integer arrays are refused: an integer ``(n, 2)`` array of a binary problem could be
        either; convert with ``.astype(bool)`` or ``.astype(float)``.
    sample_weight : array-like of shape (n_samples,), default=None
        Finite, non-negative, with a positive sum.
    classes : array-like of shape (n_classes,), default=None
        Labels of the set columns (e.g. ``estimator.classes_``): ``y_true`` then holds labels
        rather than column indices.

    Returns
    -------
    coverage : float
    """
    return weighted_mean(hits(y_true, y_pred_set, classes=classes), sample_weight)


def mean_set_size(y_pred_set, *, sample_weight=None):
    """Average number of labels per prediction set.

    Parameters
    ----------
    y_pred_set : ndarray of shape (n_samples, n_classes) of bool
    sample_weight : array-like of shape (n_samples,), default=None
        Finite, non-negative, with a positive sum.

    Returns
    -------
    size : float
    """
    return weighted_mean(check_sets(y_pred_set).sum(axis=1), sample_weight)


def size_stratified_coverage(y_true, y_pred_set, *, classes=None):
    """Coverage among the samples of each set size.

    Parameters
    ----------
    y_true : ndarray of shape (n_samples,)
        Integer column indices into the sets (labels with ``classes``).
    y_pred_set : ndarray of shape (n_samples, n_classes) of bool
    classes : array-like of shape (n_classes,), default=None
        Labels of the set columns (e.g. ``estimator.classes_``): ``y_true`` then holds labels
        rather than column indices.

    Returns
    -------
    table : dict of int to (float, int)
        Set size -> (coverage, number of samples with that size).
    """
    covered, sets, _ = _set_hits(y_true, y_pred_set, classes)
    sizes = sets.sum(axis=1)
    return {
        int(size): (float(covered[sizes == size].mean()), int(np.sum(sizes == size)))
        for size in np.unique(sizes)
    }


def class_coverages(y_true, y_pred_set, *, classes=None):
    """Coverage within each class present in ``y_true``.

    Parameters
    ----------
    y_true : ndarray of shape (n_samples,)
        Integer column indices into the sets (labels with ``classes``).
    y_pred_set : ndarray of shape (n_samples, n_classes) of bool
    classes : array-like of shape (n_classes,), default=None
        Labels of the set columns (e.g. ``estimator.classes_``): ``y_true`` then holds labels
        rather than column indices.

    Returns
    -------
    classes : ndarray
        Column indices present in ``y_true`` (with ``classes``: their labels), in column order.
    coverages : ndarray of float
    """
    covered, _, columns = _set_hits(y_true, y_pred_set, classes)
    present = np.unique(columns)
    coverages = np.array([covered[columns == k].mean() for k in present])
    return (present if classes is None else np.asarray(classes)[present]), coverages


def class_coverage_gap(y_true, y_pred_set, confidence_level, *, classes=None):
    """CovGap (Ding et al. 2023): ``100 * mean_k |coverage_k - confidence_level|``.

    The mean runs over the classes present in ``y_true`` (column indices, or labels of
    ``classes``).
    """
    level = check_confidence_level(confidence_level)
    _, coverages = class_coverages(y_true, y_pred_set, classes=classes)
    return float(100.0 * np.mean(np.abs(coverages - level)))


def _set_hits(y_true, y_pred_set, classes=None):
    """Coverage indicators of prediction sets (these metrics are defined for sets only)."""
    sets = check_sets(y_pred_set)
    labels = check_labels(y_true, sets.shape[0], sets.shape[1], classes=classes)
    return sets[np.arange(labels.shape[0]), labels], sets, labels
