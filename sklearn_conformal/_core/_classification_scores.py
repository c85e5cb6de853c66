"""Non-conformity scores of classifiers' probabilities: LAC (THR), APS and RAPS.

Labels are ranked by decreasing probability, ties broken by the smaller label index, so that a
label's rank never depends on how the row is sorted. APS and RAPS scores increase along that
ranking; with one uniform ``u`` per sample shared by all its labels, every prediction set
``{y : s(x, y) <= q}`` is a prefix of the ranking.

* LAC:  ``s(x, y) = 1 - p_y``.
* APS:  ``s(x, y) = sum_{j ranked before y} p_j + u * p_y`` (``u = 1`` when not randomized).
* RAPS: APS ``+ lambda_reg * max(0, rank(y) - k_reg)`` with the 1-based rank.

The kernels are compiled with numba and run one sample at a time, so memory stays at the size of
the output and no ``(n, K)`` argsort is ever materialised.
"""

import math

import numba
import numpy as np

SCORES = ("lac", "aps", "raps")


@numba.njit(cache=True, nogil=True)
def _ranked_before(p_row, y):
    """Mass of the labels ranked before ``y`` and the 1-based rank of ``y``."""
    py = p_row[y]
    mass = 0.0
    rank = 1
    for j in range(p_row.shape[0]):
        pj = p_row[j]
        if pj > py or (pj == py and j < y):
            mass += pj
            rank += 1
    return mass, rank


@numba.njit(cache=True, parallel=True)
def _aps_true_label_scores(proba, y_idx, u, k_reg, lambda_reg):
    n = proba.shape[0]
    out = np.empty(n)
    for i in numba.prange(n):
        mass, rank = _ranked_before(proba[i], y_idx[i])
        out[i] = mass + u[i] * proba[i, y_idx[i]] + lambda_reg * max(0, rank - k_reg)
    return out


@numba.njit(cache=True, parallel=True)
def _aps_all_label_scores(proba, u, k_reg, lambda_reg):
    n, n_classes = proba.shape
    out = np.empty((n, n_classes))
    for i in numba.prange(n):
        # stable argsort of -p gives the tie rule "smaller label index first"
        order = np.argsort(-proba[i], kind="mergesort")
        mass = 0.0
        for r in range(n_classes):
            label = order[r]
            p = proba[i, label]
            out[i, label] = mass + u[i] * p + lambda_reg * max(0, r + 1 - k_reg)
            mass += p
    return out


# a binade split in 4 by the mantissa: 4 * 62 ranges of p above ~1e-19, then one for the rest
_SUB_BUCKETS = 4
_N_BUCKETS = 256
# candidate lists up to this length are insertion-sorted; longer ones merge-sorted
_INSERTION_SORT_MAX = 24
# rows are split into this many chunks for the threads (each with its own work buffers)
_N_CHUNKS = 256


@numba.njit(cache=True, nogil=True)
def _bucket(p):
    """Index of a range of ``p``, non-increasing in ``p``: (0.875, 1] is 0, (0.75, 0.875] 1, ...

    Quarter binades keep the candidate prefix of ``_aps_prefix_sets`` short; zeros and values
    below about 1e-19 share the last index.
    """
    if p >= 1.0:
        return 0
    if p <= 0.0:
        return _N_BUCKETS - 1
    mantissa, exponent = math.frexp(p)
    return min(-exponent * _SUB_BUCKETS + int((1.0 - mantissa) * 2 * _SUB_BUCKETS), _N_BUCKETS - 1)


@numba.njit(cache=True, parallel=True)
def _aps_prefix_sets(proba, threshold, u, k_reg, lambda_reg):
    """Sets ``{y : s(x, y) <= threshold}`` for one threshold shared by all labels.

    The set is a prefix of the ranking, and so is every union of the top ranges of ``p``
    (quarter binades, :func:`_bucket`). Once
    such a union holds more mass than the threshold (the next label's score is that mass plus
    non-negative terms), or more labels than the RAPS penalty allows, the set lies inside it.
    One pass fills the binade histogram, a second gathers those candidates, and only they are
    sorted.
    """
    n, n_classes = proba.shape
    out = np.zeros((n, n_classes), dtype=np.bool_)
    # RAPS: rank r scores at least lambda_reg * (r - k_reg), so no set is longer than this
    max_size = n_classes
    if lambda_reg > 0.0 and np.isfinite(threshold):
        max_size = min(n_classes, k_reg + max(int(threshold / lambda_reg), 0) + 1)
    # rows go in chunks so that the work buffers are allocated once per chunk, not per row
    n_chunks = min(n, _N_CHUNKS)
    for chunk in numba.prange(n_chunks):
        mass_in = np.empty(_N_BUCKETS)
        count_in = np.empty(_N_BUCKETS, dtype=np.int64)
        buckets = np.empty(n_classes, dtype=np.int64)
        candidates = np.empty(n_classes, dtype=np.int64)
        for i in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            row = proba[i]
            mass_in[:] = 0.0
            count_in[:] = 0
            for j in range(n_classes):
                b = _bucket(row[j])
                buckets[j] = b
                mass_in[b] += row[j]
                count_in[b] += 1
            last, mass, count = _N_BUCKETS - 1, 0.0, 0
            for b in range(_N_BUCKETS):
                mass += mass_in[b]
                count += count_in[b]
                if mass > threshold or count > max_size:
                    last = b
                    break
            c = 0
            for j in range(n_classes):
                if buckets[j] <= last:
                    candidates[c] = j
                    c += 1
            if c > _INSERTION_SORT_MAX:
                # a stable sort of labels gathered in label order keeps the tie rule
                candidates[:c] = candidates[:c][np.argsort(-row[candidates[:c]], kind="mergesort")]
            else:
                for a in range(1, c):
                    label = candidates[a]
                    k = a
                    while k > 0 and row[candidates[k - 1]] < row[label]:
                        candidates[k] = candidates[k - 1]
                        k -= 1
                    candidates[k] = label
            mass = 0.0
            for r in range(c):
                label = candidates[r]
                p = row[label]
                if mass + u[i] * p + lambda_reg * max(0, r + 1 - k_reg) > threshold:
                    break
                out[i, label] = True
                mass += p
    return out


@numba.njit(cache=True, parallel=True)
def _lac_sets(proba, thresholds):
    """``1 - p <= threshold`` element-wise, without an (n, K) temporary."""
    n, n_classes = proba.shape
    out = np.empty((n, n_classes), dtype=np.bool_)
    for i in numba.prange(n):
        for j in range(n_classes):
            out[i, j] = 1.0 - proba[i, j] <= thresholds[j]
    return out


def true_label_scores(proba, y_idx, score, u, k_reg=0, lambda_reg=0.0):
    """Scores ``s(x_i, y_i)`` of the observed labels.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        Predicted probabilities.
    y_idx : ndarray of shape (n_samples,)
        Column index of each sample's label.
    score : {"lac", "aps", "raps"}
        Score name.
    u : ndarray of shape (n_samples,)
        Uniform per sample (ones when not randomized); unused by LAC.
    k_reg, lambda_reg : int, float
        RAPS regularisation (ignored unless ``score="raps"``).

    Returns
    -------
    scores : ndarray of shape (n_samples,)
    """
    proba = np.ascontiguousarray(proba, dtype=np.float64)
    y_idx = np.ascontiguousarray(y_idx, dtype=np.int64)
    if score == "lac":
        return 1.0 - proba[np.arange(proba.shape[0]), y_idx]
    k_reg, lambda_reg = _raps_parameters(score, k_reg, lambda_reg)
    return _aps_true_label_scores(proba, y_idx, _as_u(u, proba), k_reg, lambda_reg)


def all_label_scores(proba, score, u, k_reg=0, lambda_reg=0.0):
    """Scores ``s(x_i, y)`` of every label, shape ``(n_samples, n_classes)``."""
    proba = np.ascontiguousarray(proba, dtype=np.float64)
    if score == "lac":
        return 1.0 - proba
    k_reg, lambda_reg = _raps_parameters(score, k_reg, lambda_reg)
    return _aps_all_label_scores(proba, _as_u(u, proba), k_reg, lambda_reg)


def prediction_sets(proba, thresholds, score, u, k_reg=0, lambda_reg=0.0):
    """Boolean prediction sets ``{y : s(x, y) <= thresholds[y]}``.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
    thresholds : ndarray of shape (n_classes,)
        One threshold per label (all equal for marginal calibration).
    score, u, k_reg, lambda_reg
        As in :func:`true_label_scores`.

    Returns
    -------
    sets : ndarray of bool, shape (n_samples, n_classes)
    """
    proba = np.ascontiguousarray(proba, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    shared = bool(np.all(thresholds == thresholds[0]))
    if score == "lac":
        # the same floating-point expression as at calibration, so ties resolve identically
        return _lac_sets(proba, thresholds)
    k_reg, lambda_reg = _raps_parameters(score, k_reg, lambda_reg)
    u = _as_u(u, proba)
    if shared:
        return _aps_prefix_sets(proba, float(thresholds[0]), u, k_reg, lambda_reg)
    return _aps_all_label_scores(proba, u, k_reg, lambda_reg) <= thresholds[np.newaxis, :]


def _raps_parameters(score, k_reg, lambda_reg):
    if score == "aps":
        return 0, 0.0
    if score == "raps":
        return int(k_reg), float(lambda_reg)
    raise ValueError(f"score must be one of {SCORES}, got {score!r}.")


def _as_u(u, proba):
    if u is None:
        return np.ones(proba.shape[0])
    return np.ascontiguousarray(u, dtype=np.float64)
