"""Hyper-parameter selection: gamma by K-fold cross-validation over exact lambda paths."""

import os
import warnings

import numpy as np
from sklearn.model_selection import KFold
from sklearn.utils.parallel import delayed

from .._parallel import parallel, run_task, threads_backend
from .._progress import progress
from ..exceptions import PathStepCapWarning
from ._kernels import median_sq_dist
from ._path import (
    CalibrationRows,
    ScoreScale,
    kernel_matrix,
    lambda_path,
    n_threads,
    prepared_start,
)


def gamma_grid(Z, grid=None, size=30):
    """The gamma candidates: ``grid`` checked, or ``size`` log-spaced values around the data scale.

    The default spans ``[0.1, 100] / median(d^2)`` over the distinct pairs of rows of ``Z``
    (``1 / median`` is the usual median heuristic for the RBF bandwidth).
    """
    if grid is None:
        med = median_sq_dist(np.ascontiguousarray(Z, dtype=np.float64))
        return np.logspace(-1.0, 2.0, size) / (1.0 if med is None else med)
    grid = np.asarray(grid, dtype=float).ravel()
    if grid.size == 0 or np.any(~np.isfinite(grid)) or np.any(grid <= 0):
        raise ValueError("gamma_grid must hold positive finite values.")
    return grid


def default_max_steps(n, max_steps=None):
    """The path step cap: ``max_steps`` if given, else ``20 n + 100``."""
    return int(max_steps) if max_steps is not None else 20 * n + 100


def select_gamma_cv(
    Z, Phi, S, alpha, gammas, *, kernel="rbf", beta=0.5, n_folds=5, random_state=None,
    lam_min_ratio=1e-4, max_steps=None, jitter=1e-10, refactor_every=64, n_jobs=None,
    verbose=0, patience=None,
):
    """Pick ``gamma`` minimising the K-fold validation pinball loss.

    For every ``gamma`` and fold, the exact lambda path is run on the training part and the
    validation pinball loss is evaluated at every breakpoint; a fold's score is its minimum over
    the path, and a ``gamma``'s score the mean over folds (the SpeedCP two-step rule; lambda is
    then chosen by SIC on the full data).

    Each fold's kernels (training x training, training x validation) are built from the points
    ``Z`` for its own path, never copied out of a full ``n x n`` matrix: a path holds about
    ``(1 - 1/n_folds) n^2`` floats. The paths are tasks of ``sklearn.utils.parallel.Parallel``
    (``prefer="threads"``). By default they run concurrently in threads while their kernels
    together stay within one ``n x n`` matrix (or 64 MiB), otherwise one at a time, each
    kernel built by all threads. Under a process or cluster backend set by the caller (e.g.
    ``joblib.parallel_backend("dask")``) every path is a task pickled with its fold's data and
    run single-threaded in a worker (``n_jobs`` as joblib reads it: ``None`` is the backend's
    default, all of a Dask cluster's cores). The results are identical either way.

    ``gammas`` are evaluated in increasing order. With ``patience`` set, the search stops once
    the cross-validated loss has exceeded its running minimum at ``patience`` consecutive
    candidates: past the minimum, larger ``gamma`` give near-interpolating kernels whose paths
    are the longest (on friedman1 with 1,500 calibration points, the ten largest of the 30
    default candidates took 94 % of the time), and on the usual U-shaped loss they cannot
    win. The selected ``gamma`` is the full grid's whenever the loss does not fall again after
    ``patience`` rises; candidates not evaluated get a NaN loss.

    Returns
    -------
    gamma : float
    cv_loss : ndarray of shape (n_gammas,)
    info : dict with ``n_breakpoints``, ``mean_elbow`` and ``best_lambda`` (the breakpoint of
        least validation loss, in the units of ``S``) arrays of shape (n_gammas, n_folds), and
        ``evaluated``, a boolean array of shape (n_gammas,).
    """
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    S = np.ascontiguousarray(S, dtype=np.float64)
    Phi = np.ascontiguousarray(Phi, dtype=np.float64)
    gammas = np.ascontiguousarray(gammas, dtype=np.float64)
    n, d = Phi.shape
    if ScoreScale(S, Phi).constant:
        # constant scores: every gamma fits them exactly (zero validation loss)
        mid = gammas.shape[0] // 2
        zeros = np.zeros((gammas.shape[0], int(min(n_folds, n))))
        info = {"n_breakpoints": zeros.astype(np.int64), "mean_elbow": zeros + n,
                "best_lambda": np.full(zeros.shape, np.nan),
                "truncated": zeros.astype(bool), "evaluated": np.ones(gammas.shape[0], bool)}
        return float(gammas[mid]), np.zeros(gammas.shape[0]), info
    # each fold's lambda_path is scale-free (standardised scores, duplicate rows merged, ties
    # broken) and reports its validation losses in the units of S
    n_folds = int(min(n_folds, n))
    kf = KFold(n_folds, shuffle=True, random_state=random_state)
    fold_of = np.empty(n, dtype=np.int64)
    for f, (tr, va) in enumerate(kf.split(S)):
        fold_of[va] = f
    # per fold, once for every gamma: duplicate points merged, ties broken, scores standardised
    # (CalibrationRows from the points: equal kernel rows are equal points), and the linear
    # quantile regression start of its paths
    folds = []
    for f in range(n_folds):
        tr = np.flatnonzero(fold_of != f)
        rows = CalibrationRows(Z[tr], Phi[tr], S[tr])
        start = None if rows.scale.constant else prepared_start(rows, alpha)
        folds.append((tr, np.flatnonzero(fold_of == f), rows, start))
    if max_steps is None:
        max_steps = 20 * n + 100
    n_g = gammas.shape[0]
    loss = np.full((n_g, n_folds), np.inf)
    n_bp = np.zeros((n_g, n_folds), np.int64)
    mean_el = np.zeros((n_g, n_folds))
    best_lam = np.full((n_g, n_folds), np.nan)
    truncated = np.zeros((n_g, n_folds), dtype=bool)
    threads = n_threads(n_jobs)
    if threads_backend():
        per_path = max(fold[0].size * n for fold in folds) * 8
        concurrent = max(1, min(threads, max(n * n * 8, 64 * 2**20) // max(per_path, 1)))
        kernel_threads = 1 if concurrent > 1 else threads
    else:
        # workers of another process or machine: the local memory bound does not apply
        concurrent, kernel_threads = n_jobs, 1
    # each fold's data once, passed to its tasks (picklable for a process or cluster backend)
    fold_data = [
        (Z[tr], Z[va], Phi[tr], S[tr], Phi[va], S[va], rows, start)
        for tr, va, rows, start in folds
    ]
    options = {"lam_min_ratio": lam_min_ratio, "max_steps": max_steps, "jitter": jitter,
               "refactor_every": refactor_every}
    pid = os.getpid()

    evaluated = np.zeros(n_g, dtype=bool)
    best_loss, rises = np.inf, 0
    with progress(n_g * n_folds, "gamma cross-validation paths", verbose) as bar, \
            parallel(concurrent) as pool:
        # one gamma at a time (its folds concurrently), in increasing order, so the search can
        # stop past the minimum before the expensive large gammas
        for g in np.argsort(gammas, kind="stable"):
            results = pool(
                delayed(run_task)(pid, kernel_threads, _cv_path, *fold_data[f], gammas[g],
                                  kernel, beta, alpha, kernel_threads, options)
                for f in range(n_folds)
            )
            for f, (loss_gf, n_bp_gf, mean_el_gf, truncated_gf, lam_gf) in enumerate(results):
                loss[g, f], n_bp[g, f], best_lam[g, f] = loss_gf, n_bp_gf, lam_gf
                mean_el[g, f], truncated[g, f] = mean_el_gf, truncated_gf
                bar.update(1)
            evaluated[g] = True
            g_loss = loss[g].mean()
            if g_loss < best_loss:
                best_loss, rises = g_loss, 0
            else:
                rises += 1
            if patience is not None and rises >= patience:
                break
    n_capped = int(truncated.sum())
    if n_capped:
        warnings.warn(
            f"{n_capped} of {truncated.size} cross-validation lambda paths reached the step cap "
            f"max_steps={int(max_steps)}; their validation loss is the minimum over the "
            "breakpoints reached. Raise max_steps.",
            PathStepCapWarning, stacklevel=2,
        )
    cv_loss = np.where(evaluated, loss.mean(axis=1), np.nan)
    finite = np.isfinite(cv_loss)
    best = int(np.flatnonzero(finite)[np.argmin(cv_loss[finite])]) if finite.any() else 0
    info = {"n_breakpoints": n_bp, "mean_elbow": mean_el, "truncated": truncated,
            "evaluated": evaluated, "best_lambda": best_lam}
    return float(gammas[best]), cv_loss, info


def _cv_path(Z_tr, Z_va, Phi_tr, S_tr, Phi_va, S_va, rows, start, gamma, kernel, beta, alpha,
             kernel_threads, options):
    """One cross-validation path: ``(min validation loss, breakpoints, mean elbow size,
    truncated, lambda at that minimum)`` of the lambda path on a fold's training part at
    ``gamma``."""
    K_tr = kernel_matrix(Z_tr, None, kernel, gamma, beta, n_jobs=kernel_threads)
    K_va = kernel_matrix(Z_tr, Z_va, kernel, gamma, beta, n_jobs=kernel_threads)
    res = lambda_path(
        K_tr, Phi_tr, S_tr, alpha, K_val=K_va, Phi_val=Phi_va, S_val=S_va, warn=False,
        rows=rows, start=start, **options,
    )
    del K_tr, K_va
    ok = ~np.isnan(res.val_loss)
    vl = res.val_loss[ok]
    n_bp = res.lambdas.shape[0]
    lam = float(res.lambdas[ok][np.argmin(vl)]) if vl.size else np.nan
    return (vl.min() if vl.size else np.inf, n_bp, res.elbow_sizes.sum() / max(n_bp, 1),
            bool(res.truncated), lam)
