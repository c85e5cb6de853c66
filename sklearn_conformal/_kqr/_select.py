"""Hyper-parameter selection: gamma by K-fold cross-validation over exact lambda paths."""

import warnings

import numpy as np
from sklearn.model_selection import KFold

from ..exceptions import PathStepCapWarning
from . import _core
from ._path import CalibrationRows, check_status, jitter_floor, kernel_kind, linear_qr_start, n_threads, run_ranges


def gamma_grid(D2, grid=None, size=30):
    """The gamma candidates: ``grid`` checked, or ``size`` log-spaced values around the data scale.

    The default spans ``[0.1, 100] / median(d^2)`` over the distinct pairs (``1 / median`` is
    the usual median heuristic for the RBF bandwidth).
    """
    if grid is None:
        off = D2[D2 > 0]
        return np.logspace(-1.0, 2.0, size) / (np.median(off) if off.size else 1.0)
    grid = np.asarray(grid, dtype=float).ravel()
    if grid.size == 0 or np.any(~np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError("gamma_grid must hold positive finite values.")
    return grid


def default_max_steps(n, max_steps=None):
    """The path step cap: ``max_steps`` if given, else ``20 n + 100``."""
    return int(max_steps) if max_steps is not None else 20 * n + 100


def select_gamma_cv(
    D2, Phi, S, alpha, gammas, *, kernel="rbf", beta=0.5, n_folds=5, random_state=None,
    lam_min_ratio=1e-4, max_steps=None, jitter=1e-10, refactor_every=64, n_jobs=None,
):
    """Pick ``gamma`` minimising the K-fold validation pinball loss.

    For every ``gamma`` and fold, the exact lambda path is run on the training part and the
    validation pinball loss is evaluated at every breakpoint; a fold's score is its minimum over
    the path, and a ``gamma``'s score the mean over folds (the SpeedCP two-step rule; lambda is
    then chosen by SIC on the full data). All ``len(gammas) * n_folds`` paths run in parallel
    (numba threads).

    Returns
    -------
    gamma : float
    cv_loss : ndarray of shape (n_gammas,)
    info : dict with ``n_breakpoints`` and ``mean_elbow`` arrays of shape (n_gammas, n_folds).
    """
    Phi = np.ascontiguousarray(Phi, dtype=np.float64)
    gammas = np.ascontiguousarray(gammas, dtype=np.float64)
    n, d = Phi.shape
    # scale-free: the paths run on standardised scores, the losses are reported in S's units
    rows = CalibrationRows(D2, Phi, S)
    sc = rows.scale
    if sc.constant:
        # constant scores: every gamma fits them exactly (zero validation loss)
        mid = gammas.shape[0] // 2
        zeros = np.zeros((gammas.shape[0], int(min(n_folds, n))))
        info = {"n_breakpoints": zeros.astype(np.int64), "mean_elbow": zeros + n,
                "truncated": zeros.astype(bool)}
        return float(gammas[mid]), np.zeros(gammas.shape[0]), info
    # duplicate rows merged (weights in the bounds), ties broken, scores standardised
    S = rows.S
    Phi = rows.Phi
    D2 = rows.square(D2)
    n = S.shape[0]
    lo, hi = rows.bounds(alpha)
    n_folds = int(min(n_folds, n))
    kf = KFold(n_folds, shuffle=True, random_state=random_state)
    fold_of = np.empty(n, dtype=np.int64)
    init_states = np.zeros((n_folds, n), dtype=np.int8)
    init_vs = np.zeros((n_folds, n))
    for f, (tr, va) in enumerate(kf.split(S)):
        fold_of[va] = f
    for f in range(n_folds):
        tr = np.flatnonzero(fold_of != f)
        st, v = linear_qr_start(S[tr], Phi[tr], lo[tr], hi[tr])
        init_states[f, : tr.size] = st
        init_vs[f, : tr.size] = v
    if max_steps is None:
        max_steps = 20 * n + 100
    n_g = gammas.shape[0]
    loss = np.full((n_g, n_folds), np.inf)
    n_bp = np.zeros((n_g, n_folds), np.int64)
    mean_el = np.zeros((n_g, n_folds))
    status = np.zeros((n_g, n_folds), np.int64)
    D2 = np.ascontiguousarray(D2, dtype=np.float64)
    kind = kernel_kind(kernel)
    threads = n_threads(n_jobs)
    K = np.empty_like(D2)
    # one kernel matrix per gamma (the exp is the costly part), shared by its folds
    for g in range(n_g):
        _fill_symmetric_kernel(D2, kind, float(gammas[g]), float(beta), K, threads)

        def fold(a, b, g=g):
            for f in range(a, b):
                out = _core.cv_fold_path(
                    K, Phi, S, lo, hi, 1.0 - float(alpha), fold_of, f, init_states[f],
                    init_vs[f], jitter_floor(jitter), float(lam_min_ratio), int(max_steps), float(jitter),
                    int(refactor_every),
                )
                loss[g, f], n_bp[g, f], mean_el[g, f], status[g, f] = out

        run_ranges(fold, n_folds, threads)
    for s in np.unique(status):
        if s not in (_core.STATUS_OK, _core.STATUS_STEP_CAP):
            check_status(s, "A cross-validation lambda path")
    n_capped = int(np.sum(status == _core.STATUS_STEP_CAP))
    if n_capped:
        warnings.warn(
            f"{n_capped} of {status.size} cross-validation lambda paths reached the step cap "
            f"max_steps={int(max_steps)}; their validation loss is the minimum over the "
            "breakpoints reached. Raise max_steps.",
            PathStepCapWarning, stacklevel=2,
        )
    cv_loss = loss.mean(axis=1) * sc.s
    best = int(np.nanargmin(cv_loss)) if np.any(np.isfinite(cv_loss)) else 0
    info = {"n_breakpoints": n_bp, "mean_elbow": mean_el, "truncated": status == 1}
    return float(gammas[best]), cv_loss, info


def _fill_symmetric_kernel(D2, kind, gamma, beta, K, threads):
    """Kernel of a symmetric squared-distance matrix, upper triangle split evenly in threads."""
    n = D2.shape[0]
    threads = max(1, min(threads, n // 64))
    if threads == 1:
        _core.kernel_sym_rows(D2, kind, gamma, beta, K, 0, n)
        return
    # row i costs n - i: cut so that every thread gets the same share of the triangle
    total = n * (n + 1) / 2.0
    cuts = [0]
    for t in range(1, threads):
        target = total * t / threads
        # solve i n - i^2 / 2 = target for i
        i = n - np.sqrt(max(n * n - 2.0 * target, 0.0))
        cuts.append(int(round(i)))
    cuts.append(n)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(
            lambda k: _core.kernel_sym_rows(D2, kind, gamma, beta, K, cuts[k], cuts[k + 1]),
            range(threads),
        ))
