"""Python layer of the exact path solvers: input preparation, the linear-QR start, results."""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from ..exceptions import PathError
from . import _core, _kernels

KERNELS = {"rbf": 0, "laplacian": 1, "matern32": 2, "matern52": 3, "imq": 4}

_STATUS_MESSAGES = {
    _core.STATUS_STEP_CAP: (
        "reached the step cap {cap_name}={cap} before finishing; raise {cap_name}"
    ),
    _core.STATUS_CYCLING: "cycled through degenerate zero-length steps",
    _core.STATUS_SINGULAR: "met a singular elbow system",
}


def n_threads(n_jobs=None):
    """Threads for the GIL-free numba kernels: ``n_jobs`` if given (-1: all cores), else all."""
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs == -1:
        return cores
    if n_jobs < 0:
        return max(cores + 1 + n_jobs, 1)
    return max(int(n_jobs), 1)


def run_ranges(fn, n_items, threads, min_chunk=1):
    """Call ``fn(lo, hi)`` on disjoint ranges covering ``range(n_items)``, in threads."""
    threads = max(1, min(threads, n_items // max(min_chunk, 1)))
    if threads <= 1:
        fn(0, n_items)
        return
    bounds = np.linspace(0, n_items, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: fn(bounds[k], bounds[k + 1]), range(threads)))


def check_status(status, what, cap_name="max_steps", cap=None):
    status = int(status)
    if status == _core.STATUS_OK:
        return
    msg = _STATUS_MESSAGES.get(status, "failed with status {status}")
    raise PathError(f"{what} " + msg.format(cap_name=cap_name, cap=cap, status=status) + ".")


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
def kernel_kind(kernel):
    try:
        return KERNELS[kernel]
    except KeyError:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}.") from None


def sq_dists(X, Y):
    """Squared Euclidean distances between rows (numba, single thread)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    return _core.sq_dists(X, Y)


def kernel_matrix(X, Y, kernel="rbf", gamma=1.0, beta=0.5, *, n_jobs=1, out=None):
    """Kernel matrix ``k(X_i, Y_j)``; every kernel here has ``k(x, x) = 1``.

    ``rbf``: ``exp(-gamma d^2)``; ``laplacian``: ``exp(-r)``; ``matern32``/``matern52``: the
    Matern kernels of smoothness 3/2 and 5/2 in ``r``; ``imq``: ``(1 + gamma d^2)^(-beta)``;
    with ``r = sqrt(gamma) d``.

    Built in place from the points (no squared-distance matrix: one ``len(X) x len(Y)`` buffer,
    ``out`` when given), in row blocks over ``n_jobs`` threads; ``Y is X`` (or ``None``) fills
    the symmetric matrix from its upper triangle. Equal bit for bit to the kernel of
    :func:`sq_dists`.
    """
    sym = Y is None or Y is X
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = X if sym else np.ascontiguousarray(Y, dtype=np.float64)
    if out is None:
        out = np.empty((X.shape[0], Y.shape[0]))
    elif out.shape != (X.shape[0], Y.shape[0]) or out.dtype != np.float64 or not (
        out.flags.c_contiguous
    ):
        raise ValueError("out must be a C-contiguous float64 array of shape (len(X), len(Y)).")
    return _kernels.fill_kernel(
        X, None if sym else Y, kernel_kind(kernel), float(gamma), float(beta), out,
        n_threads(n_jobs),
    )


# --------------------------------------------------------------------------------------------
# linear features and ties
# --------------------------------------------------------------------------------------------
def reduce_phi(Phi, rtol=1e-10):
    """Orthonormal basis ``V`` (d, r) of the row space of ``Phi``; ``Phi @ V`` has full rank r."""
    Phi = np.asarray(Phi, dtype=np.float64)
    if Phi.shape[1] == 0:
        return np.zeros((0, 0))
    _, s, Vt = np.linalg.svd(Phi, full_matrices=False)
    if s.size == 0 or s[0] == 0.0:
        return np.zeros((Phi.shape[1], 0))
    r = int(np.sum(s > s[0] * rtol * max(Phi.shape)))
    return Vt[:r].T.copy()


def phi_design(Phi_raw):
    """Reduce ``Phi_raw`` to full column rank: ``(V, Phi_raw @ V)``, ``V`` from :func:`reduce_phi`.

    Raises ``ValueError`` when ``Phi_raw`` is identically zero (no linear part to fit).
    """
    V = reduce_phi(Phi_raw)
    if V.shape[1] == 0:
        raise ValueError("phi(X) is identically zero on the fitted data.")
    return V, np.ascontiguousarray(np.asarray(Phi_raw, dtype=np.float64) @ V)


def in_row_space(phi, V, rtol=1e-8):
    """Whether each row of ``phi`` lies in the span of the columns of ``V``."""
    phi = np.atleast_2d(phi)
    resid = phi - (phi @ V) @ V.T
    return np.linalg.norm(resid, axis=1) <= rtol * (1.0 + np.linalg.norm(phi, axis=1))


def break_ties(S, rel=1e-9):
    """Break exact ties in ``S`` by tiny index-ordered offsets (``rel`` times the scale).

    Ties make the linear-QR start and the path degenerate; the perturbation selects one of the
    optimal solutions (the lexicographic one) and moves cutoffs by about ``rel`` relative. It
    must stay well above the solver's relative slope tolerance (1e-12).
    """
    S = np.asarray(S, dtype=np.float64)
    order = np.argsort(S, kind="stable")
    Ss = S[order]
    if S.size < 2 or not np.any(Ss[1:] == Ss[:-1]):
        return S.copy()
    scale = max(np.max(np.abs(S)), np.ptp(S), 1e-300)
    out = S.copy()
    run = 0
    for k in range(1, S.size):
        run = run + 1 if Ss[k] == Ss[k - 1] else 0
        if run:
            out[order[k]] = Ss[k] + run * rel * scale
    return out


# --------------------------------------------------------------------------------------------
# linear quantile regression start (lam -> inf)
# --------------------------------------------------------------------------------------------
def linear_qr_start(S, Phi, lo, hi, max_pivots=None):
    """Exact vertex of ``max S'v s.t. lo <= v <= hi, Phi'v = 0`` with its basis as elbow.

    HiGHS gives a near-optimal basis; a bounded dual simplex then makes it exact (optimality is
    checked with exact residual signs), so the elbow has exactly ``d`` points with zero residual
    and every other point sits at the bound given by the sign of its residual.

    Returns ``(state, v)`` with ``state`` in {0: L, 1: E, 2: R}.
    """
    S = np.asarray(S, dtype=np.float64)
    Phi = np.asarray(Phi, dtype=np.float64)
    n, d = Phi.shape
    if n < d:
        raise ValueError("fewer calibration points than linear features")
    basis = None
    try:
        res = linprog(
            -S, A_eq=Phi.T, b_eq=np.zeros(d), bounds=(lo, hi), method="highs",
        )
        if res.status == 0:
            eta = -np.asarray(res.eqlin.marginals)
            r = S - Phi @ eta
            vx = res.x
            interior = (vx > lo + 1e-9) & (vx < hi - 1e-9)
            key = np.where(interior, -1.0, np.abs(r))
            basis = _greedy_basis(Phi, np.argsort(key, kind="stable"), d)
    except Exception:  # pragma: no cover - HiGHS failure: fall back to the dual simplex alone
        basis = None
    if basis is None:
        basis = _greedy_basis(Phi, np.argsort(np.abs(S - np.median(S)), kind="stable"), d)
    if basis is None:
        raise ValueError("the linear features do not have full column rank")
    return _dual_simplex(S, Phi, lo, hi, basis, max_pivots or 10 * n + 100)


def _greedy_basis(Phi, order, d):
    chosen = []
    Q = np.zeros((Phi.shape[1], 0))
    for i in order:
        row = Phi[i]
        nrm = np.linalg.norm(row)
        if nrm == 0:
            continue
        resid = row - Q @ (Q.T @ row)
        if np.linalg.norm(resid) > 1e-8 * nrm:
            chosen.append(i)
            Q = np.column_stack([Q, resid / np.linalg.norm(resid)])
            if len(chosen) == d:
                return np.array(chosen, dtype=np.int64)
    return None


def _dual_simplex(S, Phi, lo, hi, basis, max_pivots):
    n, d = Phi.shape
    basis = np.array(basis, dtype=np.int64)
    in_basis = np.zeros(n, dtype=bool)
    for _ in range(max_pivots):
        in_basis[:] = False
        in_basis[basis] = True
        P = Phi[basis]
        eta = np.linalg.solve(P, S[basis])
        r = S - Phi @ eta
        r[basis] = 0.0
        v = np.where(r > 0, hi, lo)
        nb = ~in_basis
        vB = np.linalg.solve(P.T, -(Phi[nb].T @ v[nb]))
        v[basis] = vB
        scale = hi - lo
        viol = np.maximum(lo - vB, vB - hi)
        kk = int(np.argmax(viol)) if d else 0
        if d == 0 or viol[kk] <= 1e-12 * scale:
            state = np.where(r > 0, _core.SET_R, _core.SET_L).astype(np.int8)
            state[basis] = _core.SET_E
            v[basis] = np.clip(vB, lo, hi)
            return state, v
        to_lower = vB[kk] < lo
        alpha = Phi @ np.linalg.solve(P, np.eye(d)[kk])
        # the leaving point's residual moves by -t; nonbasic residuals by -t alpha_j
        t_sign = 1.0 if to_lower else -1.0
        a = t_sign * alpha
        cand = np.full(n, np.inf)
        mask_r = nb & (r > 0) & (a > 1e-14)
        mask_l = nb & (r <= 0) & (a < -1e-14)
        cand[mask_r] = r[mask_r] / a[mask_r]
        cand[mask_l] = r[mask_l] / a[mask_l]
        j = int(np.argmin(cand))
        if not np.isfinite(cand[j]):
            raise RuntimeError("linear quantile regression start: dual simplex found no pivot")
        basis[kk] = j
    raise RuntimeError(
        f"linear quantile regression start: dual simplex reached max_pivots={max_pivots}"
    )


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass
class LambdaPathResult:
    """Breakpoints of the exact lambda path and the state selected on it.

    Attributes
    ----------
    lambdas, sic, train_loss, val_loss, elbow_sizes : ndarray of shape (n_breakpoints,)
        Breakpoints (decreasing), Schwarz information criterion, mean training pinball loss,
        validation pinball loss (NaN without validation data) and ``|E|`` at each breakpoint.
    best_index : int
        Breakpoint minimising the SIC.
    state, v, eta, lam : the selected solution (sets, duals, linear coefficients, lambda):
        at ``lam_stop`` when one was given, else at the SIC minimum.
    truncated : bool
        True when the step cap ended the path before ``lambda_min``.
    v_path, eta_path : ndarray or None
        Duals and linear coefficients at every breakpoint (``store_path=True``).
    """

    lambdas: np.ndarray
    sic: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    elbow_sizes: np.ndarray
    best_index: int
    state: np.ndarray
    v: np.ndarray
    eta: np.ndarray
    lam: float
    truncated: bool
    n_steps: int
    v_path: np.ndarray = field(default=None, repr=False)
    eta_path: np.ndarray = field(default=None, repr=False)


def lambda_path(
    K, Phi, S, alpha, *, lam_stop=None, lam_min=0.0, lam_min_ratio=1e-4, max_steps=None,
    jitter=1e-10, refactor_every=64, K_val=None, Phi_val=None, S_val=None, store_path=False,
    start=None,
):
    """Exact lambda path of the RKHS quantile regression at level ``tau = 1 - alpha``.

    ``Phi`` must have full column rank (see :func:`reduce_phi`) and ``S`` no exact ties (see
    :func:`break_ties`). ``K_val`` has shape (n, n_val).
    """
    S = np.ascontiguousarray(S, dtype=np.float64)
    Phi = np.ascontiguousarray(Phi, dtype=np.float64)
    K = np.ascontiguousarray(K, dtype=np.float64)
    n, d = Phi.shape
    lo, hi = -float(alpha), 1.0 - float(alpha)
    if max_steps is None:
        max_steps = 20 * n + 100
    if start is None:
        start = linear_qr_start(S, Phi, lo, hi)
    state0, v0 = start
    if K_val is None:
        K_val = np.zeros((n, 0))
        Phi_val = np.zeros((0, d))
        S_val = np.zeros(0)
    res = _core.lambda_path_core(
        K, Phi, S, lo, hi, 1.0 - float(alpha), np.asarray(state0, np.int8),
        np.asarray(v0, np.float64), -1.0 if lam_stop is None else float(lam_stop),
        float(lam_min), 0.0 if lam_stop is not None else float(lam_min_ratio), int(max_steps),
        float(jitter), int(refactor_every), np.ascontiguousarray(K_val, dtype=np.float64),
        np.ascontiguousarray(Phi_val, dtype=np.float64),
        np.ascontiguousarray(S_val, dtype=np.float64), bool(store_path),
    )
    (lams, sics, losses, vlosses, esizes, b_state, b_v, b_eta, b_lam,
     f_state, f_v, f_eta, f_lam, v_path, eta_path, status, steps) = res
    if int(status) not in (_core.STATUS_OK, _core.STATUS_STEP_CAP):
        check_status(status, "The lambda path")
    if lam_stop is not None:
        state, v, eta, lam = f_state, f_v, f_eta, float(f_lam)
    else:
        state, v, eta, lam = b_state, b_v, b_eta, float(b_lam)
    return LambdaPathResult(
        lambdas=lams, sic=sics, train_loss=losses, val_loss=vlosses, elbow_sizes=esizes,
        best_index=int(np.argmin(sics)) if sics.size else -1, state=state, v=v, eta=eta,
        lam=lam, truncated=int(status) == _core.STATUS_STEP_CAP, n_steps=int(steps),
        v_path=v_path if store_path else None, eta_path=eta_path if store_path else None,
    )


class SPathSolver:
    """Cutoffs of the exact S-path at a fixed ``(lam, sets)`` for many test points.

    Parameters
    ----------
    K, Phi, S : calibration kernel matrix, reduced linear features, scores (ties broken).
    alpha : float
        Miscoverage; the dual box is ``[-alpha, 1 - alpha]``.
    lam, state, v : the calibration solution (from :func:`lambda_path`).
    """

    def __init__(self, K, Phi, S, alpha, lam, state, v, *, jitter=1e-10, refactor_every=64,
                 max_steps=None):
        self.K = np.ascontiguousarray(K, dtype=np.float64)
        self.Phi = np.ascontiguousarray(Phi, dtype=np.float64)
        self.S = np.ascontiguousarray(S, dtype=np.float64)
        self.lo, self.hi = -float(alpha), 1.0 - float(alpha)
        self.lam = float(lam)
        self.jitter = float(jitter)
        self.refactor_every = int(refactor_every)
        n = self.S.shape[0]
        self.max_steps = int(max_steps if max_steps is not None else 20 * n + 100)
        self.state = np.asarray(state, dtype=np.int8).copy()
        ok, Eidx, m, B, v_, u, q, bal, w = _core.prepare_state(
            self.K, self.Phi, self.S, self.lam, self.state, np.asarray(v, np.float64),
            self.jitter,
        )
        if not ok:
            raise PathError("The elbow system at the selected lambda is singular.")
        self._prep = (Eidx, int(m), B, v_, u, q, bal, w)

    @property
    def elbow_size(self):
        return self._prep[1]

    def cutoffs(self, K_test, k_tt, Phi_test, U, n_jobs=None):
        """``(cutoffs, n_steps, mean_elbow, S0)`` for test rows ``K_test`` (n_test, n)."""
        Eidx, m, B, v, u, q, bal, w = self._prep
        K_test = np.ascontiguousarray(K_test, dtype=np.float64)
        k_tt = np.ascontiguousarray(k_tt, dtype=np.float64)
        Phi_test = np.ascontiguousarray(Phi_test, dtype=np.float64)
        U = np.ascontiguousarray(U, dtype=np.float64)
        nt = K_test.shape[0]
        cut = np.empty(nt)
        status = np.zeros(nt, np.int64)
        nsteps = np.zeros(nt, np.int64)
        mel = np.zeros(nt)
        s0 = np.empty(nt)

        def work(lo, hi):
            _core.s_path_batch(
                self.K, self.Phi, self.S, self.lo, self.hi, self.lam, self.state, Eidx, m, B, v,
                u, q, bal, w, K_test, k_tt, Phi_test, U, self.max_steps, self.jitter,
                self.refactor_every, lo, hi, cut, status, nsteps, mel, s0,
            )

        run_ranges(work, nt, n_threads(n_jobs), min_chunk=16)
        bad = status != _core.STATUS_OK
        if np.any(bad):
            check_status(status[bad][0], "The S-path", cap_name="max_steps", cap=self.max_steps)
        return cut, nsteps, mel, s0

    def trace(self, k_t, k_tt, phi_t, U):
        """``(cutoff, S_breakpoints, v_t_at_breakpoints, S0)`` for one test point."""
        Eidx, m, B, v, u, q, bal, w = self._prep
        tS = np.zeros(self.max_steps + 4)
        tv = np.zeros(self.max_steps + 4)
        res = _core.s_path_one(
            self.K, self.Phi, self.S, self.lo, self.hi, self.lam, self.state, Eidx, m, B, v, u,
            q, bal, w, np.ascontiguousarray(k_t, np.float64), float(k_tt),
            np.ascontiguousarray(phi_t, np.float64), float(U), self.max_steps, self.jitter,
            self.refactor_every, tS, tv,
        )
        check_status(res[1], "The S-path", cap=self.max_steps)
        k = int(res[4])
        return float(res[0]), tS[:k].copy(), tv[:k].copy(), float(res[5])
