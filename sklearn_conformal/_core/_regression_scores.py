"""Regression non-conformity scores and the intervals they invert to.

* absolute:   ``s = |y - m(x)|``,                       interval ``m(x) -/+ q``;
* normalized: ``s = |y - m(x)| / sigma(x)``,            interval ``m(x) -/+ q sigma(x)``;
* cqr:        ``s = max(lo(x) - y, y - hi(x))``,        interval ``[lo(x) - q, hi(x) + q]``.
"""

import numpy as np

REGRESSION_SCORES = ("absolute", "normalized", "cqr")


def regression_scores(score, y, center=None, scale=None, lower=None, upper=None):
    """Non-conformity scores of observed targets ``y``.

    Parameters
    ----------
    score : {"absolute", "normalized", "cqr"}
    y : ndarray of shape (n_samples,)
    center : ndarray of shape (n_samples,), optional
        Point prediction (absolute, normalized).
    scale : ndarray of shape (n_samples,), optional
        Positive spread prediction (normalized).
    lower, upper : ndarray of shape (n_samples,), optional
        Predicted lower and upper quantiles (cqr).

    Returns
    -------
    scores : ndarray of shape (n_samples,)
    """
    if score == "absolute":
        return np.abs(y - center)
    if score == "normalized":
        return np.abs(y - center) / scale
    if score == "cqr":
        return np.maximum(lower - y, y - upper)
    raise ValueError(f"conformity_score must be one of {REGRESSION_SCORES}, got {score!r}.")


def regression_intervals(score, threshold, center=None, scale=None, lower=None, upper=None):
    """Intervals ``{y : s(x, y) <= threshold}`` of shape ``(n_samples, 2)``."""
    if score == "absolute":
        return np.column_stack([center - threshold, center + threshold])
    if score == "normalized":
        return np.column_stack([center - threshold * scale, center + threshold * scale])
    if score == "cqr":
        return np.column_stack([lower - threshold, upper + threshold])
    raise ValueError(f"conformity_score must be one of {REGRESSION_SCORES}, got {score!r}.")
