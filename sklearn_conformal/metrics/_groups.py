"""Coverage within groups of rows (the quantity Mondrian calibration guarantees)."""

import numpy as np

from .._core import check_confidence_level
from ._checks import hits


def group_coverages(y_true, y_pred_set, groups, *, classes=None):
    """Empirical coverage within each group of rows.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels (column indices, or labels with ``classes``) or targets.
    y_pred_set : ndarray of shape (n_samples, n_classes) of bool, or (n_samples, 2) of float
        Prediction sets or intervals.
    groups : array-like of shape (n_samples,)
        Group of each row (any sortable labels).
    classes : array-like of shape (n_classes,), default=None
        Labels of the set columns (e.g. ``estimator.classes_``).

    Returns
    -------
    groups : ndarray
        The distinct groups, sorted.
    coverages : ndarray of float
        Coverage within each group.
    counts : ndarray of int
        Rows per group.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal.metrics import group_coverages
    >>> intervals = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    >>> group_coverages([0.5, 2.0, 0.5], intervals, ["a", "a", "b"])
    (array(['a', 'b'], dtype='<U1'), array([0.5, 1. ]), array([2, 1]))
    """
    covered = hits(y_true, y_pred_set, classes=classes)
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.shape[0] != covered.shape[0]:
        raise ValueError(
            f"groups must hold one group per row ({covered.shape[0]}), got shape {groups.shape}."
        )
    names, index, counts = np.unique(groups, return_inverse=True, return_counts=True)
    coverages = np.bincount(index, weights=covered.astype(float), minlength=names.size) / counts
    return names, coverages, counts


def group_coverage_gap(y_true, y_pred_set, groups, confidence_level, *, classes=None):
    """``100 * mean_g |coverage_g - confidence_level|`` over the groups present.

    The group counterpart of :func:`class_coverage_gap` (CovGap): 0 when every group is
    covered at exactly the level.
    """
    level = check_confidence_level(confidence_level)
    _, coverages, _ = group_coverages(y_true, y_pred_set, groups, classes=classes)
    return float(100.0 * np.mean(np.abs(coverages - level)))
