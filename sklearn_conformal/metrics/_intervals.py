"""Efficiency of regression intervals."""

import numpy as np


def _check_intervals(y_pred_interval):
    y_pred_interval = np.asarray(y_pred_interval, dtype=float)
    if y_pred_interval.ndim != 2 or y_pred_interval.shape[1] != 2:
        raise ValueError(
            f"y_pred_interval must have shape (n_samples, 2), got {y_pred_interval.shape}."
        )
    return y_pred_interval


def mean_interval_length(y_pred_interval):
    """Average ``upper - lower`` (``inf`` if any interval is unbounded)."""
    intervals = _check_intervals(y_pred_interval)
    return float(np.mean(intervals[:, 1] - intervals[:, 0]))


def interval_score(y_true, y_pred_interval, confidence_level):
    """Mean interval (Winkler) score; lower is better.

    ``(u - l) + (2 / alpha) (l - y) 1[y < l] + (2 / alpha) (y - u) 1[y > u]`` with
    ``alpha = 1 - confidence_level``: a proper scoring rule for the central interval.
    """
    intervals = _check_intervals(y_pred_interval)
    y_true = np.asarray(y_true, dtype=float)
    lower, upper = intervals[:, 0], intervals[:, 1]
    alpha = 1.0 - confidence_level
    penalty = (2.0 / alpha) * (np.maximum(lower - y_true, 0) + np.maximum(y_true - upper, 0))
    return float(np.mean(upper - lower + penalty))
