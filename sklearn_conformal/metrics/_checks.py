"""Input checks shared by the metrics: targets, intervals, sets, weights.

Prediction sets and intervals are told apart by dtype only: boolean arrays are sets, floating
arrays are intervals. An integer ``(n, 2)`` array of a binary problem would be both a 0/1 set
and an interval, so integer arrays are refused where either could be meant, with the remedy.
"""

import numpy as np
from sklearn.utils.validation import _check_sample_weight

# rows named in an error message
_SHOWN = 10


def check_targets(y_true, n_samples=None, name="y_true"):
    """Real-valued finite targets of shape ``(n_samples,)``; a column vector is flattened."""
    y_true = np.asarray(y_true)
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        # a single column is unambiguous (sklearn's metrics read it the same way)
        y_true = y_true[:, 0]
    if y_true.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D of shape (n_samples,), got shape {y_true.shape}; pass one "
            "target per row."
        )
    if y_true.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {y_true.dtype}.")
    y_true = y_true.astype(float)
    _check_length(y_true, n_samples, name)
    bad = ~np.isfinite(y_true)
    if np.any(bad):
        raise ValueError(
            f"{name} contains NaN or infinite values (rows {_rows(bad)}); drop or impute them."
        )
    return y_true


def check_labels(y_true, n_samples, n_columns, name="y_true", classes=None):
    """Column indices into prediction sets: integers in ``[0, n_columns)``.

    With ``classes`` (the labels of the set columns, e.g. ``estimator.classes_``, in any order),
    ``y_true`` holds labels and is mapped to their columns.
    """
    y_true = np.asarray(y_true)
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    if y_true.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (n_samples,), got shape {y_true.shape}.")
    if classes is not None:
        return _label_columns(y_true, n_samples, n_columns, name, classes)
    if not np.issubdtype(y_true.dtype, np.integer):
        raise TypeError(
            f"for prediction sets, {name} must hold integer column indices into the sets "
            "(e.g. np.searchsorted(estimator.classes_, y)), got dtype "
            f"{y_true.dtype}."
        )
    _check_length(y_true, n_samples, name)
    outside = (y_true < 0) | (y_true >= n_columns)
    if np.any(outside):
        raise ValueError(
            f"{name} holds indices outside the {n_columns} columns of the prediction sets "
            f"(rows {_rows(outside)})."
        )
    return y_true


def _label_columns(y_true, n_samples, n_columns, name, classes):
    """The column of each label of ``y_true`` among ``classes``, or an error naming the labels."""
    classes = np.asarray(classes)
    if classes.ndim != 1 or classes.shape[0] != n_columns:
        raise ValueError(
            f"classes must list the labels of the {n_columns} columns of the prediction sets "
            f"(e.g. estimator.classes_), got shape {classes.shape}."
        )
    column_of = {label: column for column, label in enumerate(classes.tolist())}
    if len(column_of) != n_columns:
        raise ValueError("classes must not repeat a label.")
    _check_length(y_true, n_samples, name)
    columns = np.array([column_of.get(label, -1) for label in y_true.tolist()], dtype=np.int64)
    unseen = columns < 0
    if np.any(unseen):
        labels = list(dict.fromkeys(y_true[unseen].tolist()))[:10]
        raise ValueError(
            f"{name} holds labels that are not in classes: {labels} (rows {_rows(unseen)})."
        )
    return columns


def check_intervals(y_pred_interval, n_samples=None, name="y_pred_interval"):
    """Intervals of shape ``(n_samples, 2)`` with ``lower <= upper`` and no NaN.

    Infinite bounds are allowed (unbounded intervals from too little calibration data). An
    interval with ``lower > upper`` is refused rather than given a negative length: a negative
    length would reward crossing intervals in every efficiency metric.
    """
    intervals = np.asarray(y_pred_interval)
    if intervals.dtype == bool:
        raise TypeError(
            f"{name} is boolean, i.e. prediction sets; intervals are float arrays of "
            "[lower, upper] rows."
        )
    if intervals.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {intervals.dtype}.")
    if intervals.ndim != 2 or intervals.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n_samples, 2), got {intervals.shape}.")
    intervals = intervals.astype(float)
    _check_length(intervals, n_samples, name)
    missing = np.isnan(intervals).any(axis=1)
    if np.any(missing):
        raise ValueError(f"{name} contains NaN bounds (rows {_rows(missing)}).")
    unreachable = (intervals[:, 0] == np.inf) | (intervals[:, 1] == -np.inf)
    if np.any(unreachable):
        raise ValueError(
            f"{name} has a lower bound of +inf or an upper bound of -inf (rows "
            f"{_rows(unreachable)}); unbounded intervals are [-inf, upper], [lower, inf] or "
            "[-inf, inf]."
        )
    crossing = intervals[:, 0] > intervals[:, 1]
    if np.any(crossing):
        raise ValueError(
            f"{name} has lower > upper in {int(crossing.sum())} rows ({_rows(crossing)}); "
            "an interval must satisfy lower <= upper. Crossing quantile predictions must be "
            "ordered (or the intervals repaired) before they are evaluated."
        )
    return intervals


def check_sets(y_pred_set, n_samples=None, name="y_pred_set"):
    """Boolean prediction sets of shape ``(n_samples, n_classes)``."""
    sets = np.asarray(y_pred_set)
    if sets.dtype != bool:
        raise TypeError(
            f"{name} must be a boolean array of prediction sets (n_samples, n_classes), got "
            f"dtype {sets.dtype}; convert 0/1 sets with .astype(bool)."
        )
    if sets.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, n_classes), got {sets.shape}.")
    _check_length(sets, n_samples, name)
    return sets


def hits(y_true, y_pred_set, classes=None):
    """Whether each true value lies in its set (boolean sets) or interval (float intervals)."""
    y_pred_set = np.asarray(y_pred_set)
    if y_pred_set.dtype == bool:
        sets = check_sets(y_pred_set)
        labels = check_labels(y_true, sets.shape[0], sets.shape[1], classes=classes)
        return sets[np.arange(labels.shape[0]), labels]
    if classes is not None:
        raise ValueError("classes applies to prediction sets (boolean arrays), not intervals.")
    if y_pred_set.dtype.kind == "f":
        intervals = check_intervals(y_pred_set, name="y_pred_set")
        y_true = check_targets(y_true, intervals.shape[0])
        return (intervals[:, 0] <= y_true) & (y_true <= intervals[:, 1])
    raise TypeError(
        f"y_pred_set has dtype {y_pred_set.dtype}, which is neither prediction sets nor "
        "intervals (an integer (n, 2) array could be either). Pass prediction sets as a "
        "boolean array (.astype(bool)) or intervals as floats (.astype(float))."
    )


def weighted_mean(values, sample_weight=None):
    """Mean of ``values`` under ``sample_weight`` (finite, non-negative, positive sum).

    The weighted sum is divided by the total weight only at the end, so integer weights give
    exactly the mean over repeated rows (and full coverage is exactly 1.0); zero-weight rows
    are left out, so an unbounded interval of weight 0 does not turn the mean into nan.
    """
    values = np.asarray(values, dtype=float)
    if sample_weight is None:
        return float(np.mean(values))
    weights = _check_sample_weight(
        sample_weight, np.empty((values.shape[0], 0)), dtype=np.float64, ensure_non_negative=True
    )
    total = weights.sum()
    if not np.all(np.isfinite(weights)) or not np.isfinite(total):
        raise ValueError("sample_weight must be finite (no NaN or infinity, finite sum).")
    used = weights > 0
    return float(np.dot(weights[used], values[used]) / total)


def _check_length(array, n_samples, name):
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty; metrics need at least one sample.")
    if n_samples is not None and array.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {array.shape[0]} rows but {n_samples} were expected (one per sample)."
        )


def _rows(mask):
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in rows[:_SHOWN])
    return shown + (", ..." if rows.size > _SHOWN else "")
