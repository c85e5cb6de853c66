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


@numba.njit(cache=True, parallel=True)
def _aps_prefix_sets(proba, threshold, u, k_reg, lambda_reg):
    """Sets ``{y : s(x, y) <= threshold}`` for one threshold shared by all labels.

    The set is a prefix of the ranking, so labels are taken greedily (the largest remaining
    probability first) until the next one's score exceeds the threshold: the cost is
    ``O(K * (|set| + 1))`` per sample instead of a full sort.
    """
    n, n_classes = proba.shape
    out = np.zeros((n, n_classes), dtype=np.bool_)
    for i in numba.prange(n):
        taken = out[i]
        mass = 0.0
        for r in range(n_classes):
            best = -1
            best_p = -1.0
            for j in range(n_classes):
                # strict '>' keeps the smaller index among equal probabilities
                if not taken[j] and proba[i, j] > best_p:
                    best = j
                    best_p = proba[i, j]
            score = mass + u[i] * best_p + lambda_reg * max(0, r + 1 - k_reg)
            if score > threshold:
                break
            taken[best] = True
            mass += best_p
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
        limit = thresholds[0] if shared else thresholds[np.newaxis, :]
        return (1.0 - proba) <= limit
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
