"""The exact finite-sample split-conformal quantile.

With ``n`` exchangeable calibration scores and a test score, the ``k``-th smallest calibration
score with ``k = ceil((n + 1) * confidence_level)`` is the smallest threshold that covers the test
score with probability at least ``confidence_level``; if ``k > n`` no finite threshold does.
"""

import math

import numpy as np

# ceil() of a product such as (n + 1) * 0.9 must not round up from 90.00000000000001
_RANK_TOLERANCE = 1e-9


def conformal_rank(n_calibration, confidence_level):
    """Rank ``k = ceil((n + 1) * confidence_level)`` of the conformal threshold (1-based).

    Parameters
    ----------
    n_calibration : int
        Number of calibration scores.
    confidence_level : float
        Target coverage in (0, 1).

    Returns
    -------
    k : int
        Rank of the threshold among the sorted calibration scores; ``k > n_calibration`` means
        the threshold is ``+inf``.
    """
    return int(math.ceil((n_calibration + 1) * confidence_level - _RANK_TOLERANCE))


def min_calibration_size(confidence_level):
    """Smallest number of calibration points giving a finite threshold at ``confidence_level``."""
    # k <= n  <=>  ceil((n + 1) c) <= n  <=>  (n + 1) c <= n  <=>  n >= c / (1 - c)
    n = max(int(math.floor(confidence_level / (1.0 - confidence_level))) - 1, 0)
    while conformal_rank(n, confidence_level) > n:
        n += 1
    return n


def conformal_quantile(scores, confidence_level, axis=None):
    """The ``ceil((n + 1) * confidence_level)``-th smallest score, or ``+inf``.

    Parameters
    ----------
    scores : array-like of shape (n,)
        Calibration non-conformity scores (non-finite scores are allowed: ``+inf`` ranks last).
    confidence_level : float
        Target coverage in (0, 1).

    Returns
    -------
    threshold : float
        The conformal threshold; ``+inf`` when ``n`` is too small for ``confidence_level``.
    """
    scores = np.asarray(scores, dtype=float).ravel()
    n = scores.shape[0]
    k = conformal_rank(n, confidence_level)
    if k > n:
        return float("inf")
    if k < 1:  # only for n = 0, handled above; kept for clarity of the rank arithmetic
        return float("-inf")
    return float(np.partition(scores, k - 1)[k - 1])
