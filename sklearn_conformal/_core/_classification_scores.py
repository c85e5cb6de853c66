"""Non-conformity scores of classifiers' probabilities: LAC (THR), APS and RAPS.

Labels are ranked by decreasing probability, ties broken by the smaller label index, so that a
label's rank never depends on how the row is sorted. APS and RAPS scores increase along that
ranking; with one uniform ``u`` per sample shared by all its labels, every prediction set
``{y : s(x, y) <= q}`` is a prefix of the ranking.

* LAC:  ``s(x, y) = 1 - p_y``.
* APS:  ``s(x, y) = sum_{j ranked before y} p_j + u * p_y`` (randomised; see below otherwise).
* RAPS: APS ``+ lambda_reg * max(0, rank(y) - k_reg)`` with the 1-based rank.

Non-randomised APS/RAPS (Romano et al. 2020) score a label by the score of the label ranked just
before it, ``s_prev(x, y) = sum_{j ranked before y} p_j + lambda_reg * max(0, rank(y) - 1 -
k_reg)`` (0 for the top label): these kernels with ``u = 0`` and ``k_reg + 1`` (see
``ClassificationConformalizer._regularisation``). Their sets ``{y : s_prev(x, y) <= q}`` are the
labels in rank order up to and including the first whose cumulative score reaches ``q``: never
empty, coverage at least the level. (``u = 1`` with ``{y : s(x, y) <= q}`` is valid too but
drops the crossing label, and so gives empty sets.)

The kernels are compiled with numba and run one sample at a time, so memory stays at the size of
the output and no ``(n, K)`` argsort is ever materialised. They are serial GIL-free kernels with
no parallel region (fork safety, see :mod:`sklearn_conformal._numba`). A label's mass is always
summed in rank order, at calibration as at prediction: summing it in another order can differ by
an ulp, and the label whose score equals the threshold would then drop out of its own set.
"""

import math

import numpy as np

from .._numba import jit
from ._merge_sort import merge_sort_indices

SCORES = ("lac", "aps", "raps")

# candidate lists up to this length are insertion-sorted; longer ones merge-sorted
_INSERTION_SORT_MAX = 24


@jit(inline="always")
def _score_at_rank(mass, u, p, rank, k_reg, lambda_reg):
    """APS/RAPS score of the label at 1-based ``rank`` with probability ``p``.

    ``mass`` is the running rank-order sum of the labels ranked before it. Every kernel calls
    this one expression, so the calibration score of a label and its score at prediction time are
    the same floating-point number.
    """
    return mass + u * p + lambda_reg * max(0, rank - k_reg)


@jit()
def _sort_by_rank(row, labels, count):
    """Sort ``labels[:count]`` (gathered in increasing label order) into rank order, in place.

    Rank order is decreasing probability, ties by the smaller label index; both sorts below
    are stable, so labels gathered in label order keep the tie rule.
    """
    if count > _INSERTION_SORT_MAX:
        # decreasing probability: the keys negated
        merge_sort_indices(row, labels, count, -1.0)
        return
    for a in range(1, count):
        label = labels[a]
        k = a
        while k > 0 and row[labels[k - 1]] < row[label]:
            labels[k] = labels[k - 1]
            k -= 1
        labels[k] = label


@jit()
def _aps_true_label_scores(proba, y_idx, u, k_reg, lambda_reg):
    """Score of each sample's own label, its mass summed in rank order as in the set kernels."""
    n, n_classes = proba.shape
    out = np.empty(n)
    before = np.empty(n_classes, dtype=np.int64)
    for i in range(n):
        row = proba[i]
        y = y_idx[i]
        py = row[y]
        # not a literal 0: numba would first type the call below with Literal[int](0) and
        # compile _sort_by_rank twice
        count = np.int64(0)
        for j in range(n_classes):
            pj = row[j]
            if pj > py or (pj == py and j < y):
                before[count] = j
                count += 1
        _sort_by_rank(row, before, count)
        mass = 0.0
        for r in range(count):
            mass += row[before[r]]
        out[i] = _score_at_rank(mass, u[i], py, count + 1, k_reg, lambda_reg)
    return out


@jit()
def _aps_all_label_scores(proba, u, k_reg, lambda_reg):
    n, n_classes = proba.shape
    out = np.empty((n, n_classes))
    order = np.empty(n_classes, dtype=np.int64)
    for i in range(n):
        row = proba[i]
        for j in range(n_classes):
            order[j] = j
        _sort_by_rank(row, order, n_classes)
        mass = 0.0
        for r in range(n_classes):
            label = order[r]
            p = row[label]
            out[i, label] = _score_at_rank(mass, u[i], p, r + 1, k_reg, lambda_reg)
            mass += p
    return out


# a binade split in 4 by the mantissa: 4 * 62 ranges of p above ~1e-19, then one for the rest
_SUB_BUCKETS = 4
_N_BUCKETS = 256
# relative error bound of a float sum of at most n non-negative terms is about n * 2**-53; the
# candidate search below stops only once the range-order mass exceeds the threshold by more
_SUM_ERROR_PER_TERM = 4.0 * 2.0**-53


@jit()
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


@jit()
def _aps_prefix_sets(proba, threshold, u, k_reg, lambda_reg):
    """Sets ``{y : s(x, y) <= threshold}`` for one threshold shared by all labels.

    Scores increase along the ranking (each is the previous label's mass plus non-negative
    terms, and floating-point rounding is monotone), so the set is a prefix of the ranking, and
    so is every union of the top ranges of ``p`` (quarter binades, :func:`_bucket`). Once such a
    union holds more mass than the threshold, or more labels than the RAPS penalty allows, the
    set lies inside it. One pass fills the range histogram, a second gathers those candidates,
    and only they are sorted; the scores along them are :func:`_score_at_rank`'s, so the set is
    exactly ``all_label_scores <= threshold``.
    """
    n, n_classes = proba.shape
    out = np.zeros((n, n_classes), dtype=np.bool_)
    # RAPS: rank r scores at least lambda_reg * (r - k_reg), so no set is longer than this
    max_size = n_classes
    if lambda_reg > 0.0 and np.isfinite(threshold):
        max_size = min(n_classes, k_reg + max(int(threshold / lambda_reg), 0) + 1)
    # the range-order mass may exceed the rank-order mass by rounding: stop with a margin
    shrink = 1.0 - _SUM_ERROR_PER_TERM * (n_classes + 1)
    mass_in = np.empty(_N_BUCKETS)
    count_in = np.empty(_N_BUCKETS, dtype=np.int64)
    buckets = np.empty(n_classes, dtype=np.int64)
    candidates = np.empty(n_classes, dtype=np.int64)
    for i in range(n):
        row = proba[i]
        mass_in[:] = 0.0
        count_in[:] = 0
        for j in range(n_classes):
            b = _bucket(row[j])
            buckets[j] = b
            mass_in[b] += row[j]
            count_in[b] += 1
        last, mass, count = _N_BUCKETS - 1, 0.0, np.int64(0)
        for b in range(_N_BUCKETS):
            mass += mass_in[b]
            count += count_in[b]
            if mass * shrink > threshold or count > max_size:
                last = b
                break
        c = np.int64(0)  # not a literal (one compilation of _sort_by_rank)
        for j in range(n_classes):
            if buckets[j] <= last:
                candidates[c] = j
                c += 1
        _sort_by_rank(row, candidates, c)
        mass = 0.0
        for r in range(c):
            label = candidates[r]
            p = row[label]
            if _score_at_rank(mass, u[i], p, r + 1, k_reg, lambda_reg) > threshold:
                break
            out[i, label] = True
            mass += p
    return out


@jit()
def _lac_sets(proba, thresholds):
    """``1 - p <= threshold`` element-wise, without an (n, K) temporary."""
    n, n_classes = proba.shape
    out = np.empty((n, n_classes), dtype=np.bool_)
    for i in range(n):
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
        Uniform per sample (``None``: ones); unused by LAC. Non-randomised APS/RAPS pass zeros
        and ``k_reg + 1`` (see the module docstring).
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
    thresholds = np.ascontiguousarray(thresholds, dtype=np.float64)
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
