"""Regression non-conformity scores and the intervals they invert to.

* absolute:   ``s = |y - m(x)|``,                       interval ``m(x) -/+ q``;
* normalized: ``s = |y - m(x)| / sigma(x)``,            interval ``m(x) -/+ q sigma(x)``;
* cqr:        ``s = max(lo(x) - y, y - hi(x))``,        interval ``[lo(x) - q, hi(x) + q]``.

For CQR the two quantile predictions are put in order per row (``lo = min``, ``hi = max``) before
scoring and before inverting: two independently fitted quantile regressors cross wherever they are
poorly fitted, and a crossed pair would otherwise yield intervals with ``lower > upper``. The
same ordering at calibration and prediction time keeps the score a fixed function of
``(x, y)``, so the coverage guarantee is unchanged.
"""

import numpy as np

REGRESSION_SCORES = ("absolute", "normalized", "cqr")


def _ordered(lower, upper):
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    return np.minimum(lower, upper), np.maximum(lower, upper)


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
        Predicted lower and upper quantiles (cqr); they may cross, each row is ordered first.

    Returns
    -------
    scores : ndarray of shape (n_samples,)
    """
    if score == "absolute":
        return np.abs(y - center)
    if score == "normalized":
        return np.abs(y - center) / scale
    if score == "cqr":
        lower, upper = _ordered(lower, upper)
        return np.maximum(lower - y, y - upper)
    raise ValueError(f"conformity_score must be one of {REGRESSION_SCORES}, got {score!r}.")


def regression_intervals(score, threshold, center=None, scale=None, lower=None, upper=None):
    """Intervals containing ``{y : s(x, y) <= threshold}``, of shape ``(n_samples, 2)``.

    Every row satisfies ``lower <= upper``. For CQR a negative threshold (quantile regressors
    wider than needed) can make the set ``[lo - q, hi + q]`` empty where ``hi - lo < -2 q``;
    such rows get the zero-width interval at the midpoint of the two quantile predictions,
    which contains the (empty) set, so coverage is never lost.
    """
    if score == "absolute":
        return np.column_stack([center - threshold, center + threshold])
    if score == "normalized":
        return np.column_stack([center - threshold * scale, center + threshold * scale])
    if score == "cqr":
        lower, upper = _ordered(lower, upper)
        lo, hi = lower - threshold, upper + threshold
        empty = lo > hi
        if np.any(empty):
            middle = 0.5 * (lower[empty] + upper[empty])
            lo[empty] = middle
            hi[empty] = middle
        return np.column_stack([lo, hi])
    raise ValueError(f"conformity_score must be one of {REGRESSION_SCORES}, got {score!r}.")
