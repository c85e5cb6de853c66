"""Efficiency of regression intervals."""

import numpy as np

from .._core import check_confidence_level
from ._checks import check_intervals, check_targets, weighted_mean


def mean_interval_length(y_pred_interval, *, sample_weight=None):
    """Average ``upper - lower`` (``inf`` if any interval is unbounded).

    Parameters
    ----------
    y_pred_interval : array-like of shape (n_samples, 2)
        ``[lower, upper]`` rows with ``lower <= upper``; crossing rows raise ``ValueError``.
    sample_weight : array-like of shape (n_samples,), default=None
        Finite, non-negative, with a positive sum.

    Returns
    -------
    length : float
    """
    intervals = check_intervals(y_pred_interval)
    return weighted_mean(intervals[:, 1] - intervals[:, 0], sample_weight)


def interval_score(y_true, y_pred_interval, confidence_level, *, sample_weight=None):
    """Mean interval (Winkler) score; lower is better.

    ``(u - l) + (2 / alpha) (l - y) 1[y < l] + (2 / alpha) (y - u) 1[y > u]`` with
    ``alpha = 1 - confidence_level``: a proper scoring rule for the central interval.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Finite targets (a single column ``(n_samples, 1)`` is flattened).
    y_pred_interval : array-like of shape (n_samples, 2)
        ``[lower, upper]`` rows with ``lower <= upper``; crossing rows raise ``ValueError``
        (a negative width would otherwise lower the score).
    confidence_level : float in (0, 1)
    sample_weight : array-like of shape (n_samples,), default=None
        Finite, non-negative, with a positive sum.

    Returns
    -------
    score : float
    """
    alpha = 1.0 - check_confidence_level(confidence_level)
    intervals = check_intervals(y_pred_interval)
    y_true = check_targets(y_true, intervals.shape[0])
    lower, upper = intervals[:, 0], intervals[:, 1]
    penalty = (2.0 / alpha) * (np.maximum(lower - y_true, 0) + np.maximum(y_true - upper, 0))
    return weighted_mean(upper - lower + penalty, sample_weight)
