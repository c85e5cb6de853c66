"""Hyper-parameter selection: gamma by K-fold cross-validation over exact lambda paths."""

import numpy as np
from sklearn.model_selection import KFold

from . import _core
from ._path import check_status, kernel_kind, linear_qr_start, n_threads, run_ranges


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
    S = np.ascontiguousarray(S, dtype=np.float64)
    Phi = np.ascontiguousarray(Phi, dtype=np.float64)
    gammas = np.ascontiguousarray(gammas, dtype=np.float64)
    n, d = Phi.shape
    lo, hi = -float(alpha), 1.0 - float(alpha)
    n_folds = int(min(n_folds, n))
    kf = KFold(n_folds, shuffle=True, random_state=random_state)
    fold_of = np.empty(n, dtype=np.int64)
    init_states = np.zeros((n_folds, n), dtype=np.int8)
    init_vs = np.zeros((n_folds, n))
    for f, (tr, va) in enumerate(kf.split(S)):
        fold_of[va] = f
    for f in range(n_folds):
        tr = np.flatnonzero(fold_of != f)
        st, v = linear_qr_start(S[tr], Phi[tr], lo, hi)
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

    def work(lo_task, hi_task):
        _core.cv_lambda_paths(
            D2, kind, gammas, float(beta), Phi, S, lo, hi, 1.0 - float(alpha), fold_of, n_folds,
            init_states, init_vs, float(lam_min_ratio), int(max_steps), float(jitter),
            int(refactor_every), lo_task, hi_task, loss, n_bp, mean_el, status,
        )

    run_ranges(work, n_g * n_folds, n_threads(n_jobs))
    for s in np.unique(status):
        if s not in (_core.STATUS_OK, _core.STATUS_STEP_CAP):
            check_status(s, "A cross-validation lambda path")
    cv_loss = loss.mean(axis=1)
    best = int(np.nanargmin(cv_loss)) if np.any(np.isfinite(cv_loss)) else 0
    info = {"n_breakpoints": n_bp, "mean_elbow": mean_el, "truncated": status == 1}
    return float(gammas[best]), cv_loss, info
