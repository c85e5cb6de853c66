"""numba kernels of conformal training on the CPU: the losses' fused path, the validation sizes.

In numpy the training quantile on a window of the calibration scores, the scores of the
prediction half and CaCT-ALM's class-mean penalty are some sixty array operations on a few
hundred values, each costing a microsecond of call overhead for nanoseconds of arithmetic (on a
small problem a CaCT epoch paid more for them than for its network), and so are the hard set
sizes of the validation set that the multiplier update and the epoch selection read after
every epoch. Here they are a few loops.
The arithmetic is that of the numpy code they replace (:func:`~._soft_quantile.sort_network_np`
on a stable-argsort window, the numpy twins of :mod:`._penalties`), operation for operation and
in its order (``np.bincount`` sums in sample order; no fast-math, so no fused multiply-adds);
reductions whose order numpy chooses (pairwise sums) and torch's ``sigmoid`` stay with them. The
results are the same bit for bit (tested).
"""

import numpy as np

from .._core._merge_sort import merge_sort_indices
from .._numba import jit
from ._soft_quantile import _PAD_OFFSET
from ._sortnet_kernels import network_backward_vector, network_forward_vector

__all__ = [
    "PENALTY_CODES",
    "class_mean_penalty_terms",
    "hard_set_sizes",
    "prediction_logits",
    "sizes_backward_rows",
    "sizes_backward_scores",
    "stable_argsort",
    "training_quantile",
]

# the penalty names of :mod:`._penalties` as the kernel's codes
PENALTY_CODES = {"phr": 0, "p2": 1, "p3": 2}


@jit()
def stable_argsort(keys):
    """``np.argsort(keys, kind="stable")`` of a float64 vector (numpy's order, NaN last)."""
    order = np.arange(keys.shape[0])
    merge_sort_indices(keys, order, keys.shape[0], 1.0)
    return order


@jit()
def _penalty(code, z, lam, rho):
    """``(P(z), P'(z))`` of penalty ``code`` for one class (phr_numpy, p2_numpy, p3_numpy)."""
    if code == 0:
        x = lam + rho * z
        if x >= 0:
            value = lam * z + 0.5 * rho * z * z
        else:
            value = -lam * lam / (2.0 * rho)
        # np.maximum(x, 0.0), NaN included
        derivative = x if (x >= 0.0 or x != x) else 0.0
        return value, derivative
    # np.minimum(z, 0.0), NaN included
    zn = z if (z <= 0.0 or z != z) else 0.0
    if z >= 0:
        if code == 1:
            value = lam * z + lam * rho * z * z + rho * rho * (z * z * z) / 6.0
            derivative = lam + 2.0 * lam * rho * z + 0.5 * rho * rho * z * z
        else:
            value = lam * z + lam * rho * z * z
            derivative = lam + 2.0 * lam * rho * z
    else:
        t = 1.0 - rho * zn
        value = lam * zn / t
        derivative = lam / (t * t)  # numpy's ``** 2`` is a square
    return value, derivative


@jit()
def class_mean_penalty_terms(y, size, lambdas, rhos, target_size, code, mean, coef_y):
    """Per-present-class penalty values and each sample's size-gradient coefficient.

    Parameters
    ----------
    y : int64 array of shape (n,)
        Labels of the prediction half.
    size : float64 array of shape (n,)
        Their soft set sizes.
    lambdas, rhos, target_size : float64 arrays of shape (K,)
    code : int
        :data:`PENALTY_CODES` value.
    mean : bool
        Mean (else sum) over the present classes.
    coef_y : float64 array of shape (n,)
        Filled with ``P'(z_k) * scale / (eta_k n_k)`` for each sample's class ``k``.

    Returns
    -------
    values : float64 array of shape (#present,)
        ``P(z_k)`` of the present classes in class order (their numpy sum is the penalty
        before the ``scale``).
    scale : float
        ``1 / #present`` for the mean, else 1.
    """
    K = lambdas.shape[0]
    counts = np.zeros(K, np.int64)
    sums = np.zeros(K)
    for i in range(y.shape[0]):
        counts[y[i]] += 1
        sums[y[i]] += size[i]
    n_present = 0
    for k in range(K):
        if counts[k] > 0:
            n_present += 1
    scale = 1.0 / n_present if mean else 1.0
    values = np.empty(n_present)
    coef = np.zeros(K)
    j = 0
    for k in range(K):
        if counts[k] == 0:
            continue
        cnt = float(counts[k])
        eta = target_size[k]
        z = sums[k] / cnt / eta - 1.0
        value, derivative = _penalty(code, z, lambdas[k], rhos[k])
        values[j] = value
        coef[k] = derivative * scale / (eta * cnt)
        j += 1
    for i in range(y.shape[0]):
        coef_y[i] = coef[y[i]]
    return values, scale


@jit()
def training_quantile(lp_flat, cal_flat, rank, window, steepness, A, B):
    """The soft ``rank``-th smallest calibration score ``-log p_y`` and the network's tape.

    ``lp_flat``: the batch's flattened float32 log-probabilities; ``cal_flat``: the entries of
    the calibration rows' labels. With ``0 < window < n_cal`` only the ``window`` scores whose
    stable-argsort ranks are nearest ``rank`` enter the network (``sel``, their positions);
    ``A, B``: the comparator table of the network's size (``_comparator_table``). Returns
    ``(q, sel, r, d, alpha)``: the threshold, the window (empty without one), the 0-based rank
    in the network and the per-stage comparator inputs for :func:`sizes_backward_scores`.
    """
    n_cal = cal_flat.shape[0]
    scores = np.empty(n_cal)
    for i in range(n_cal):
        scores[i] = -np.float64(lp_flat[cal_flat[i]])
    r = rank - 1
    if 0 < window < n_cal:
        start = min(max(rank - 1 - window // 2, 0), n_cal - window)
        sel = stable_argsort(scores)[start : start + window].copy()
        scores = scores[sel]
        r = rank - 1 - start
    else:
        sel = np.empty(0, np.int64)
    n = scores.shape[0]
    d = np.empty(A.shape)
    alpha = np.empty(A.shape)
    if n == 1:
        return scores[0], sel, r, d, alpha
    m = 2 * A.shape[1]
    x = np.empty(m)
    for i in range(n):
        x[i] = scores[i] * steepness
    if m > n:
        # detached padding strictly above the data, as ``sort_network_np``
        top = x[0]
        for i in range(1, n):
            if x[i] > top:
                top = x[i]
        for j in range(m - n):
            x[n + j] = top + steepness * (_PAD_OFFSET + np.float64(j))
    network_forward_vector(x, A, B, d, alpha)
    return x[r] / steepness, sel, r, d, alpha


@jit()
def prediction_logits(lp, pred, q, temperature):
    """``(log p_k(x) + q) / T`` of the prediction rows ``pred`` (float64), the sigmoid's input."""
    K = lp.shape[1]
    out = np.empty((pred.shape[0], K))
    for i in range(pred.shape[0]):
        for k in range(K):
            out[i, k] = (np.float64(lp[pred[i], k]) + q) / temperature
    return out


@jit()
def sizes_backward_rows(e, g_size, temperature, pred, shape):
    """The sizes' gradient on the prediction rows: ``w = e (1 - e) g_i / T`` in an array of
    ``shape`` (zeros elsewhere), and ``w`` itself (its numpy sum feeds the threshold)."""
    grad = np.zeros(shape)
    w = np.empty(e.shape)
    for i in range(e.shape[0]):
        gi = g_size[i] / temperature
        for k in range(e.shape[1]):
            v = e[i, k] * (1.0 - e[i, k])
            v *= gi
            w[i, k] = v
            grad[pred[i], k] = v
    return grad, w


@jit()
def sizes_backward_scores(grad, gq, cal_flat, sel, r, A, B, d, alpha):
    """Add the threshold's gradient ``gq`` through the network to ``grad`` (flattened, at the
    calibration entries ``cal_flat``; the scores are ``-log p``)."""
    n_cal = cal_flat.shape[0]
    g_scores = np.zeros(n_cal)
    if A.shape[1] == 0:  # a single score: q is that score
        g_scores[0] = gq
    else:
        g = np.zeros(2 * A.shape[1])
        g[r] = gq
        network_backward_vector(g, A, B, d, alpha)
        if sel.shape[0] == 0:
            for i in range(n_cal):
                g_scores[i] = g[i]
        else:
            for j in range(sel.shape[0]):
                g_scores[sel[j]] = g[j]
    flat = grad.reshape(-1)
    for i in range(n_cal):
        flat[cal_flat[i]] -= g_scores[i]


@jit()
def hard_set_sizes(lp, y, rank):
    """THR set sizes ``#{k : -log p_k <= q}`` at ``q``, the ``rank``-th smallest true-label score
    ``-log p_y`` of the same rows (the largest where ``rank`` exceeds their number or that
    score is not finite): the validation sizes the multipliers and the epoch selection read."""
    n, K = lp.shape
    scores = np.empty(n)
    for i in range(n):
        scores[i] = -lp[i, y[i]]
    q = np.inf
    if rank <= n:
        q = scores[stable_argsort(scores)[rank - 1]]
    if not np.isfinite(q):
        q = scores.max()
    sizes = np.zeros(n, lp.dtype)
    for i in range(n):
        count = 0
        for k in range(K):
            if -lp[i, k] <= q:
                count += 1
        sizes[i] = count
    return sizes
