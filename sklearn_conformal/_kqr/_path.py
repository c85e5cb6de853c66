"""Python layer of the exact path solvers: input preparation, the linear-QR start, results."""

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from ..exceptions import DegenerateDataWarning, PathError, PathStepCapWarning
from . import _core, _kernels

KERNELS = {"rbf": 0, "laplacian": 1, "matern32": 2, "matern52": 3, "imq": 4}

_STATUS_MESSAGES = {
    _core.STATUS_STEP_CAP: (
        "reached the step cap {cap_name}={cap} before finishing; raise {cap_name}"
    ),
    _core.STATUS_CYCLING: (
        "cycled through degenerate zero-length steps: near-tied scores at (nearly) identical "
        "kernel rows that merging exact duplicates and breaking ties did not resolve; use a "
        "larger lambda_, a smaller gamma, or round / de-duplicate X"
    ),
    _core.STATUS_SINGULAR: (
        "met a numerically singular elbow system: (nearly) identical kernel rows with "
        "different scores, fitted exactly (very large gamma or very small lambda_); use a "
        "smaller gamma or a larger lambda_"
    ),
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
    return _kernels.sq_dists(X, Y)


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


class KernelFactor:
    """A low-rank kernel ``K = F F'`` given by its factor ``F`` (n, r), e.g. Nystrom features.

    The path solvers accept it wherever they accept a kernel matrix and solve the problem of
    the kernel ``F F'`` exactly, in ``O(n r)`` memory and ``O(n r)`` per path step. As a test
    block (``SPathSolver.cutoffs``) it holds the test points' features: the kernel column of a
    test point is ``F f_t`` and its self-kernel ``f_t . f_t``.
    """

    def __init__(self, F):
        F = np.asarray(F, dtype=np.float64)
        if F.ndim != 2 or not np.all(np.isfinite(F)):
            raise ValueError("A kernel factor must be a finite 2-d array (n, r).")
        self.F = np.ascontiguousarray(F)

    @property
    def shape(self):
        return (self.F.shape[0], self.F.shape[0])

    def solver_array(self, keep=None):
        """The factor's rows ``keep`` as the numba kernels take it: they tell a factor from a
        square kernel matrix by its shape, so a factor that would be square gets a zero column
        (which leaves ``F F'`` unchanged)."""
        F = self.F if keep is None else self.F[keep]
        if F.shape[0] == F.shape[1]:
            F = np.column_stack([F, np.zeros(F.shape[0])])
        return np.ascontiguousarray(F)

    def self_kernel(self):
        """``f . f`` per row, summed as :func:`~._kernels.row_products` sums."""
        F = self.F
        out = np.zeros(F.shape[0])
        for k in range(F.shape[1]):
            out += F[:, k] * F[:, k]
        return out


def _identity_rows(K):
    """What identifies equal kernel rows: the factor's rows, or the kernel matrix itself."""
    return K.F if isinstance(K, KernelFactor) else K


# --------------------------------------------------------------------------------------------
# linear features and ties
# --------------------------------------------------------------------------------------------
def reduce_phi(Phi, rtol=1e-10):
    """Basis ``V`` (d, r) of the row space of ``Phi`` with ``Phi @ V`` orthonormal (rank r).

    The rank is decided on the standardised columns (centred against a constant column when
    there is one, then scaled to unit norm), so an affine change of a feature (``x -> a x + b``,
    e.g. a feature of order 1e8 next to the intercept) changes neither the rank nor the span.
    ``V`` spans the row space exactly and makes the reduced design perfectly conditioned.
    """
    Phi = np.asarray(Phi, dtype=np.float64)
    d = Phi.shape[1]
    if d == 0:
        return np.zeros((0, 0))
    T = _phi_standardizer(Phi)
    _, s, Vt = np.linalg.svd(Phi @ T, full_matrices=False)
    if s.size == 0 or s[0] == 0.0:
        return np.zeros((d, 0))
    r = int(np.sum(s > s[0] * rtol * max(Phi.shape)))
    if r == d:
        # full rank: Phi @ T @ Vt' / s is orthonormal, with coefficients of the size of T
        # (no cancellation beyond the centring of the features)
        return np.ascontiguousarray(T @ (Vt.T / s[None, :]))
    # rank deficient: V must lie in the row space (see in_row_space), which is
    # T^{-T} (row space of Phi @ T)
    V, _ = np.linalg.qr(np.linalg.solve(T.T, Vt[:r].T))
    # recombine the columns so that the reduced design is orthonormal (same span)
    _, R = np.linalg.qr(Phi @ V)
    V = np.linalg.solve(R.T, V.T).T
    return np.ascontiguousarray(V)


def _phi_standardizer(Phi):
    """Invertible ``T`` (d, d): ``Phi @ T`` has the non-constant columns centred (when a
    constant column exists) and every non-zero column of unit norm."""
    d = Phi.shape[1]
    T = np.eye(d)
    if Phi.shape[0] == 0:
        return T
    const = np.flatnonzero((np.ptp(Phi, axis=0) == 0.0) & (Phi[0] != 0.0))
    if const.size:
        k = const[0]
        means = Phi.mean(axis=0) / Phi[0, k]
        for j in range(d):
            if j != k:
                T[k, j] = -means[j]
    norms = np.linalg.norm(Phi @ T, axis=0)
    norms[norms == 0.0] = 1.0
    return T / norms[None, :]


def phi_design(Phi_raw):
    """Reduce ``Phi_raw`` to full column rank: ``(V, Phi_raw @ V)``, ``V`` from :func:`reduce_phi`.

    Raises ``ValueError`` when ``Phi_raw`` is identically zero (no linear part to fit).
    """
    V = reduce_phi(Phi_raw)
    if V.shape[1] == 0:
        raise ValueError(
            "phi(X) is identically zero on the fitted data: phi must give at least one "
            "non-zero column (e.g. include an intercept column of ones)."
        )
    return V, np.ascontiguousarray(np.asarray(Phi_raw, dtype=np.float64) @ V)


def in_row_space(phi, V, rtol=1e-8):
    """Whether each row of ``phi`` lies in the span of the columns of ``V``."""
    phi = np.atleast_2d(phi)
    Q, _ = np.linalg.qr(V)  # V spans the row space but need not be orthonormal
    resid = phi - (phi @ Q) @ Q.T
    # relative to the row itself (an absolute floor would accept any row of tiny features)
    return np.linalg.norm(resid, axis=1) <= rtol * np.linalg.norm(phi, axis=1)


def break_ties(S, rel=1e-9):
    """Break exact ties in ``S`` by tiny index-ordered offsets (``rel`` times the range of S).

    The offsets scale with the range of ``S`` (not its magnitude), so ``c * S + b`` gets the
    offsets of ``S`` times ``c``; constant ``S`` is returned unchanged.

    Ties make the linear-QR start and the path degenerate; the perturbation selects one of the
    optimal solutions (the lexicographic one) and moves cutoffs by about ``rel`` relative. It
    must stay well above the solver's relative slope tolerance (1e-12).
    """
    S = np.asarray(S, dtype=np.float64)
    order = np.argsort(S, kind="stable")
    Ss = S[order]
    if S.size < 2 or not np.any(Ss[1:] == Ss[:-1]):
        return S.copy()
    scale = float(np.ptp(S))
    if not scale > 0.0:
        # all scores equal: nothing to order (the solvers treat constant scores exactly)
        return S.copy()
    out = S.copy()
    run = 0
    for k in range(1, S.size):
        run = run + 1 if Ss[k] == Ss[k - 1] else 0
        if run:
            out[order[k]] = Ss[k] + run * rel * scale
    return out


# the smallest standardised lam an automatic choice may reach, in units of the jitter
JITTER_FLOOR = 1e4


def jitter_floor(jitter):
    """Smallest standardised ``lam`` for the automatic choice: ``JITTER_FLOOR * jitter``.

    The jitter adds a fake identity kernel of weight ``jitter`` (``k(x, x) = 1`` here); with
    scores of order one its components are fitted in proportion to ``jitter / lam``, so below
    this floor the path would explore the jitter rather than the kernel. A near-constant kernel
    (huge lengthscale, all ``x`` equal) has its whole path there: the floor then returns the
    linear (intercept-only) fit instead of an interpolation of the jitter.
    """
    return JITTER_FLOOR * float(jitter)


class ScoreScale:
    """Affine standardisation ``S = a + s * S_std`` that makes the path solvers scale-free.

    The kernel quantile regression is equivariant: with the constant in the span of ``Phi``,
    ``c * S + b`` has the duals of ``S``, the penalty ``lam / c``, the fit ``c g + b`` and the
    cutoffs ``c S* + b``. The solvers therefore run on ``S_std = (S - a) / s`` (``a``: the
    median when the constant is in the span of ``Phi``, else 0; ``s``: the median absolute
    deviation from ``a``, or the mean one when that is 0) with ``lam_std = lam * s``, and map
    back; every tolerance then sees scores of order one whatever the units of ``S``.
    ``constant`` is True when ``S`` is constant (``s == 0``; ``S_std`` is then 0).
    """

    def __init__(self, S, Phi):
        S = np.asarray(S, dtype=np.float64)
        if not np.all(np.isfinite(S)):
            raise ValueError("The scores (targets) must be finite.")
        self.c1 = intercept_coef(Phi)
        self.a = float(np.median(S)) if (self.c1 is not None and S.size) else 0.0
        dev = np.abs(S - self.a)
        s = float(np.median(dev)) if S.size else 0.0
        if not s > 0.0:
            s = float(np.mean(dev)) if S.size else 0.0
        self.s = s if np.isfinite(s) else 0.0
        self.constant = not self.s > 0.0
        self.S = (S - self.a) / self.s if not self.constant else np.zeros_like(S)

    def to_std(self, S):
        S = np.asarray(S, dtype=np.float64)
        return (S - self.a) / self.s if not self.constant else S - self.a

    def lam_std(self, lam):
        return lam * self.s

    def values(self, Z):
        """Scores (cutoffs, fits) in the original units from standardised ones."""
        return self.a + self.s * np.asarray(Z, dtype=np.float64)

    def eta(self, eta_std):
        """Linear coefficients in the original units (rows of ``eta_std`` if 2-d)."""
        out = self.s * np.asarray(eta_std, dtype=np.float64)
        if self.c1 is not None and self.a != 0.0:
            out = out + self.a * self.c1
        return out


def intercept_coef(Phi, rtol=1e-8):
    """``c`` with ``Phi @ c = 1`` when the constant lies in the column span of ``Phi``, else None."""
    Phi = np.asarray(Phi, dtype=np.float64)
    n = Phi.shape[0]
    if n == 0 or Phi.shape[1] == 0:
        return None
    ones = np.ones(n)
    const = np.flatnonzero((np.ptp(Phi, axis=0) == 0.0) & (Phi[0] != 0.0))
    if const.size:
        # a constant column: the exact coefficient (fits of constant data stay exact)
        c = np.zeros(Phi.shape[1])
        c[const[0]] = 1.0 / Phi[0, const[0]]
        return c
    c = np.linalg.lstsq(Phi, ones, rcond=None)[0]
    if np.linalg.norm(Phi @ c - ones) > rtol * np.sqrt(n):
        return None
    return c


class CalibrationRows:
    """The calibration rows as the path solvers see them.

    * Exact duplicate rows (equal kernel row, ``Phi`` row and score) are merged into one point
      of weight ``w`` (its dual box is ``w [lo, hi]`` and its loss counts ``w`` times): the
      problem is unchanged, but repeated kernel rows no longer make the elbow system singular
      (up to the jitter) and the paths no longer cycle between copies.
    * Remaining ties between scores are broken (:func:`break_ties`).
    * The scores are standardised (:class:`ScoreScale`).

    ``M`` is any matrix whose equal rows identify equal kernel rows (the kernel matrix, or the
    points themselves: for a positive definite kernel equal rows are equal points).
    """

    def __init__(self, M, Phi, S):
        S = np.asarray(S, dtype=np.float64)
        Phi = np.asarray(Phi, dtype=np.float64)
        self.n = S.shape[0]
        self.keep, self.inv = _duplicate_groups(M, Phi, S)
        self.weights = np.bincount(self.inv, minlength=self.keep.size).astype(np.float64)
        self.merged = self.keep.size < self.n
        self.Phi = np.ascontiguousarray(Phi[self.keep])
        S_m = break_ties(S[self.keep])
        self.changed = self.merged or not np.array_equal(S_m, S)
        self.scale = ScoreScale(S_m, self.Phi)
        self.S = np.ascontiguousarray(self.scale.S)

    def square(self, K):
        if isinstance(K, KernelFactor):
            return K.solver_array(self.keep if self.merged else None)
        K = np.asarray(K, dtype=np.float64)
        return np.ascontiguousarray(K[np.ix_(self.keep, self.keep)] if self.merged else K)

    def columns(self, K_test):
        K_test = np.asarray(K_test, dtype=np.float64)
        return np.ascontiguousarray(K_test[:, self.keep] if self.merged else K_test)

    def rows(self, A):
        return np.ascontiguousarray(np.asarray(A)[self.keep] if self.merged else A)

    def bounds(self, alpha):
        return -float(alpha) * self.weights, (1.0 - float(alpha)) * self.weights

    def expand_v(self, v):
        """Duals per original row: a merged dual split equally among its copies."""
        v = np.asarray(v, dtype=np.float64)
        return v[..., self.inv] / self.weights[self.inv]

    def expand_state(self, state):
        return np.asarray(state)[self.inv].astype(np.int8)

    def compress(self, state, v):
        state = np.asarray(state, dtype=np.int8)
        v = np.asarray(v, dtype=np.float64)
        if not self.merged:
            return state.copy(), v.copy()
        return state[self.keep].copy(), np.bincount(self.inv, weights=v,
                                                    minlength=self.keep.size)


def _duplicate_groups(M, Phi, S):
    """``(keep, inv)``: representatives (first index of each group of identical rows of
    ``[S, Phi, M]``, ascending) and the group of every row (``keep[inv]`` = representative)."""
    n = S.shape[0]
    ident = (np.arange(n), np.arange(n))
    if n < 2:
        return ident
    M = np.ascontiguousarray(M, dtype=np.float64)
    r = np.random.default_rng(0).standard_normal((2, M.shape[1]))
    sig = np.column_stack([S, Phi, _kernels.row_hash(M, r[0]), _kernels.row_hash(M, r[1])])
    _, first, inv = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    if first.size == n:
        return ident
    rep = first[inv.ravel()]
    # confirm on the whole rows (a hash collision keeps the row on its own)
    for i in np.flatnonzero(rep != np.arange(n)):
        if not np.array_equal(M[i], M[rep[i]]):
            rep[i] = i
    keep = np.unique(rep)
    if keep.size == n:
        return ident
    pos = np.full(n, -1, dtype=np.int64)
    pos[keep] = np.arange(keep.size)
    return keep, pos[rep]


def prepared_start(rows, alpha):
    """The linear quantile regression start of :func:`lambda_path` on prepared ``rows``."""
    return linear_qr_start(rows.S, rows.Phi, *rows.bounds(alpha))


# --------------------------------------------------------------------------------------------
# linear quantile regression start (lam -> inf)
# --------------------------------------------------------------------------------------------
#: rows above which the linear-QR start solves a subsample with HiGHS (see linear_qr_start)
_HIGHS_ROWS = 5000


def linear_qr_start(S, Phi, lo, hi, max_pivots=None):
    """Exact vertex of ``max S'v s.t. lo <= v <= hi, Phi'v = 0`` with its basis as elbow.

    HiGHS gives a near-optimal basis; a bounded dual simplex then makes it exact (optimality is
    checked with exact residual signs), so the elbow has exactly ``d`` points with zero residual
    and every other point sits at the bound given by the sign of its residual.

    Returns ``(state, v)`` with ``state`` in {0: L, 1: E, 2: R}.
    """
    Phi = np.asarray(Phi, dtype=np.float64)
    # ties broken (a tied LP is degenerate); the optimal vertex is invariant under
    # S -> c S + b: solve with scores of order one
    sc = ScoreScale(break_ties(S), Phi)
    S = sc.S
    n, d = Phi.shape
    if n < d:
        raise ValueError(
            f"Fewer calibration points ({n}) than linear features phi ({d} independent "
            "columns): use fewer phi columns (groups) or more calibration data."
        )
    if sc.constant:
        # every point fits exactly: v = 0 with all points in the elbow (see lambda_path)
        return np.full(n, _core.SET_E, np.int8), np.zeros(n)
    # per-point bounds allowed (merged duplicate rows have the box w [lo, hi])
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (n,)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (n,)).copy()
    basis = None
    # HiGHS takes time superlinear in the rows on this LP (10 s at 20,000 rows, 370 s at
    # 100,000): above _HIGHS_ROWS it solves a seeded subsample, whose coefficients order the
    # rows for the starting basis; the dual simplex then reaches the same exact vertex
    sub = (
        slice(None) if n <= _HIGHS_ROWS
        else np.sort(np.random.default_rng(0).choice(n, size=_HIGHS_ROWS, replace=False))
    )
    try:
        res = linprog(
            -S[sub], A_eq=Phi[sub].T, b_eq=np.zeros(d),
            bounds=np.column_stack([lo[sub], hi[sub]]), method="highs",
        )
        if res.status == 0:
            eta = -np.asarray(res.eqlin.marginals)
            r = S - Phi @ eta
            key = np.abs(r)
            if n <= _HIGHS_ROWS:
                vx = res.x
                interior = (vx > lo + 1e-9) & (vx < hi - 1e-9)
                key = np.where(interior, -1.0, key)
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
        loB, hiB = lo[basis], hi[basis]
        viol = np.maximum(loB - vB, vB - hiB)
        kk = int(np.argmax(viol)) if d else 0
        if d == 0 or viol[kk] <= 1e-12 * (hiB[kk] - loB[kk]):
            state = np.where(r > 0, _core.SET_R, _core.SET_L).astype(np.int8)
            state[basis] = _core.SET_E
            v[basis] = np.clip(vB, loB, hiB)
            return state, v
        to_lower = vB[kk] < loB[kk]
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
            raise PathError(
                "The linear quantile regression at lam = inf (the start of the path) is "
                "infeasible for these linear features phi (a group or phi direction without "
                "enough points); merge small groups or simplify phi."
            )
        basis[kk] = j
    raise PathError(
        f"The linear quantile regression at lam = inf (the start of the path) did not converge "
        f"in {max_pivots} pivots (a degenerate linear program: many tied scores within the "
        "groups of phi); simplify phi or round the targets less coarsely."
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
    start=None, grow_cap=True, warn=True, rows=None,
):
    """Exact lambda path of the RKHS quantile regression at level ``tau = 1 - alpha``.

    ``Phi`` must have full column rank (see :func:`reduce_phi`). ``K_val`` has shape
    (n, n_val). The path runs on :class:`CalibrationRows` (duplicate rows merged, ties broken,
    scores standardised); everything returned refers to the rows and units given.

    A path that reaches ``max_steps`` before a fixed ``lam_stop`` is re-run with the cap raised
    eightfold (up to ``200 n + 1000``; ``grow_cap=False``: never); a path still capped warns
    with :class:`~sklearn_conformal.exceptions.PathStepCapWarning` naming the cap and the
    lambda actually used. ``warn=False`` leaves the reporting to the caller (``truncated``): the
    cross-validation paths are many, and a degenerate gamma candidate simply loses.

    ``rows`` may pass the :class:`CalibrationRows` of ``(Phi, S)`` prepared by the caller (e.g.
    from the points instead of the kernel, once for many kernels); ``start`` then refers to its
    merged, standardised rows, as :func:`prepared_start` returns it.
    """
    Phi = np.ascontiguousarray(Phi, dtype=np.float64)
    n, d = Phi.shape
    prepared = rows is not None
    if not prepared:
        rows = CalibrationRows(_identity_rows(K), Phi, S)
    if isinstance(K, KernelFactor) and K_val is not None:
        raise ValueError("Validation data are not supported with a low-rank kernel factor.")
    sc = rows.scale
    if sc.constant:
        return _constant_path(sc, n, d, lam_stop, K_val, S_val, alpha, store_path)
    K = rows.square(K)
    Phi = rows.Phi
    S = rows.S
    lo, hi = rows.bounds(alpha)
    if max_steps is None:
        max_steps = 20 * n + 100
    if start is None or (rows.changed and not prepared):
        start = linear_qr_start(S, Phi, lo, hi)
    state0, v0 = start
    if K_val is None:
        K_val = np.zeros((n, 0))
        Phi_val = np.zeros((0, d))
        S_val = np.zeros(0)
    K_val = rows.rows(np.asarray(K_val, dtype=np.float64))
    W_val = np.ones(np.asarray(S_val).shape[0])
    lam_stop_std = -1.0 if lam_stop is None else sc.lam_std(float(lam_stop))
    if warn and lam_stop is not None and lam_stop_std < jitter_floor(jitter):
        warnings.warn(
            f"lambda_={float(lam_stop):.3g} lies below the path solver's numerical floor "
            f"({jitter_floor(jitter) / sc.s:.3g} for scores of this scale): such a fit is decided "
            "by the solver's jitter, not by the data, and the intervals can be arbitrarily wide. "
            "Use a larger lambda_, or lambda_='auto'.",
            DegenerateDataWarning, stacklevel=2,
        )
    lam_min_std = sc.lam_std(float(lam_min))
    if lam_stop is None:
        lam_min_std = max(lam_min_std, jitter_floor(jitter))
    cap = int(max_steps)
    cap_limit = max(cap, 200 * n + 1000) if grow_cap else cap
    P = _core.problem(K, Phi, S, lo, hi, jitter)
    val = _core.Validation(
        np.ascontiguousarray(K_val, dtype=np.float64),
        np.ascontiguousarray(Phi_val, dtype=np.float64),
        np.ascontiguousarray(sc.to_std(S_val), dtype=np.float64), W_val,
    )
    state0 = np.ascontiguousarray(state0, np.int8)
    v0 = np.ascontiguousarray(v0, np.float64)
    while True:
        (rec, b_state, b_v, b_u, f_state, f_v, f_u, v_path, u_path, info,
         lam_ends) = _core.lambda_path_core(
            P, val, state0, v0, 1.0 - float(alpha), float(lam_stop_std), float(lam_min_std),
            0.0 if lam_stop is not None else float(lam_min_ratio), int(cap),
            int(refactor_every), bool(store_path),
        )
        n_rec, status, steps = (int(k) for k in info)
        if status != _core.STATUS_STEP_CAP or lam_stop is None or cap >= cap_limit:
            break
        # a fixed lambda must be reached: raise the cap (the path is exact, only longer)
        cap = min(8 * cap, cap_limit)
    rec = rec[:n_rec]
    lams, sics, losses, vlosses = (rec[:, c].copy() for c in (
        _core.REC_LAM, _core.REC_SIC, _core.REC_LOSS, _core.REC_VLOSS))
    esizes = rec[:, _core.REC_ELBOW].astype(np.int64)
    b_lam, f_lam = float(lam_ends[0]), float(lam_ends[1])
    with np.errstate(all="ignore"):
        b_eta = b_u / b_lam
        f_eta = f_u / f_lam
    v_path, eta_path = v_path[:n_rec].copy(), u_path[:n_rec].copy()
    if int(status) not in (_core.STATUS_OK, _core.STATUS_STEP_CAP):
        check_status(status, "The lambda path")
    if warn and int(status) == _core.STATUS_STEP_CAP:
        reached = float(lams[-1]) / sc.s if lams.size else np.nan
        if lam_stop is not None:
            what = (f"before the requested lambda_={float(lam_stop):.6g}; the solution at "
                    f"lam={reached:.6g} is used instead")
        else:
            what = (f"before its end; lambda is chosen among the breakpoints reached "
                    f"(lam >= {reached:.6g})")
        warnings.warn(
            f"The lambda path reached its step cap max_steps={cap} {what}. Raise max_steps.",
            PathStepCapWarning, stacklevel=2,
        )
    if lam_stop is not None:
        state, v, eta, lam = f_state, f_v, f_eta, float(f_lam)
    else:
        state, v, eta, lam = b_state, b_v, b_eta, float(b_lam)
        if warn and lams.size and lams[0] <= jitter_floor(jitter) * (1.0 + 1e-12):
            warnings.warn(
                "The kernel is numerically constant on these points beyond the linear part "
                "phi (gamma too small for the spread of X, or all X equal): the whole "
                "regularisation path lies below the jitter floor and the linear fit is "
                "returned. Use a larger gamma (or gamma='auto') for a kernel fit.",
                DegenerateDataWarning, stacklevel=2,
            )
    # back to the units of S: lam_std = lam * s, losses and fits scale with s
    # back to the rows given (merged duals split among copies) and to the units of S:
    # lam_std = lam * s, losses and fits scale with s
    return LambdaPathResult(
        lambdas=lams / sc.s, sic=sics + np.log(sc.s), train_loss=losses * sc.s,
        val_loss=vlosses * sc.s, elbow_sizes=esizes,
        best_index=int(np.argmin(sics)) if sics.size else -1,
        state=rows.expand_state(state), v=rows.expand_v(v), eta=sc.eta(eta), lam=lam / sc.s,
        truncated=int(status) == _core.STATUS_STEP_CAP, n_steps=int(steps),
        v_path=rows.expand_v(v_path) if store_path else None,
        eta_path=sc.eta(eta_path) if store_path else None,
    )


def _constant_path(sc, n, d, lam_stop, K_val, S_val, alpha, store_path):
    """The exact solution for constant scores: the fit is the constant for every lam.

    With ``S = a`` (the constant in the span of ``Phi``, or ``a = 0``) the fit ``g = a`` has
    zero loss and zero penalty, so ``v = 0`` with every point in the elbow; a single
    breakpoint is reported (at ``lam_stop``, else at ``lam = inf``).
    """
    lam = float(lam_stop) if lam_stop is not None else np.inf
    eta = sc.eta(np.zeros(d))
    v = np.zeros(n)
    if S_val is not None and np.asarray(S_val).size:
        r = np.asarray(S_val, dtype=np.float64) - sc.a
        tau = 1.0 - float(alpha)
        vloss = float(np.mean(np.where(r > 0, tau * r, (tau - 1.0) * r)))
    else:
        vloss = np.nan
    return LambdaPathResult(
        lambdas=np.array([lam]), sic=np.array([-np.inf]), train_loss=np.zeros(1),
        val_loss=np.array([vloss]), elbow_sizes=np.array([n]), best_index=0,
        state=np.full(n, _core.SET_E, np.int8), v=v, eta=eta, lam=lam, truncated=False,
        n_steps=0, v_path=np.zeros((1, n)) if store_path else None,
        eta_path=eta[None, :].copy() if store_path else None,
    )


class SPathSolver:
    """Cutoffs of the exact S-path at a fixed ``(lam, sets)`` for many test points.

    Parameters
    ----------
    K, Phi, S : calibration kernel matrix, reduced linear features, scores (prepared as in
        :func:`lambda_path`: duplicate rows merged, ties broken, standardised).
    alpha : float
        Miscoverage; the dual box is ``[-alpha, 1 - alpha]``.
    lam, state, v : the calibration solution (from :func:`lambda_path`).
    """

    def __init__(self, K, Phi, S, alpha, lam, state, v, *, jitter=1e-10, refactor_every=64,
                 max_steps=None):
        # scale-free: the path runs on S_std = (S - a) / s at lam * s and maps back
        self.rows = rows = CalibrationRows(_identity_rows(K), Phi, S)
        self.K = rows.square(K)
        self.factored = isinstance(K, KernelFactor)
        # the kernel as given, for a solver at another level (None when rows were merged: the
        # merged copy no longer matches the rows given)
        self.kernel = None if rows.merged else K
        self.Phi = rows.Phi
        self.scale = rows.scale
        self.lo, self.hi = -float(alpha), 1.0 - float(alpha)
        self.clo, self.chi = rows.bounds(alpha)
        self.jitter = float(jitter)
        self.refactor_every = int(refactor_every)
        n = rows.n
        self.max_steps = int(max_steps if max_steps is not None else 20 * n + 100)
        if self.scale.constant:
            # constant scores: S* = a + s * (cutoff of any scores) with s = 0, i.e. the constant
            # wherever the cutoff is finite; which test points have an infinite one does not
            # depend on the scores, so a fixed non-degenerate pattern decides it
            warnings.warn(
                f"All {n} calibration scores are equal (to {self.scale.a!r}); every finite "
                "cutoff equals that value (zero-width intervals when it is 0). Check that the "
                "point predictor was not fitted on the calibration data.",
                DegenerateDataWarning, stacklevel=3,
            )
            pattern = np.arange(self.K.shape[0], dtype=np.float64) / max(n, 1)
            merged = KernelFactor(self.K) if self.factored else self.K
            ref = lambda_path(merged, self.Phi, pattern, alpha, max_steps=self.max_steps,
                              lam_min_ratio=0.1)
            self._pattern = SPathSolver(
                merged, self.Phi, pattern, alpha, ref.lam, ref.state, ref.v, jitter=jitter,
                refactor_every=refactor_every, max_steps=max_steps,
            )
            self.S = self.scale.S
            self.lam = float(lam)
            self.state = np.asarray(state, dtype=np.int8).copy()
            self._prep = (None, n)
            return
        self._pattern = None
        self.S = self.scale.S
        self.lam = self.scale.lam_std(float(lam))
        self.state, v = rows.compress(state, v)
        self._problem = _core.problem(self.K, self.Phi, self.S, self.clo, self.chi, self.jitter)
        ok, B, E = _core.prepare_state(
            self._problem, float(self.lam), np.ascontiguousarray(self.state, np.int8),
            np.ascontiguousarray(v, np.float64),
        )
        if not ok:
            raise PathError(
                "The elbow system at the selected lambda is numerically singular: (nearly) "
                "identical kernel rows with different scores are fitted exactly (very large "
                "gamma or very small lambda_); use a smaller gamma or a larger lambda_."
            )
        self._prep = (B, E)

    @property
    def elbow_size(self):
        if self._pattern is not None:
            return self._prep[1]
        return int(self._prep[1].ints[_core.M])

    def cutoffs(self, K_test, k_tt, Phi_test, U, n_jobs=None):
        """``(cutoffs, n_steps, mean_elbow, S0)`` for test rows ``K_test`` (n_test, n), or,
        with a low-rank kernel, the test points' factor rows (a :class:`KernelFactor`; its
        self-kernels replace ``k_tt``)."""
        K_test, k_tt = self._test_columns(K_test, k_tt)
        if self._pattern is not None:
            cut, nsteps, mel, s0 = self._pattern.cutoffs(K_test, k_tt, Phi_test, U, n_jobs)
            cut = np.where(np.isfinite(cut), self.scale.a, cut)
            return cut, nsteps, mel, np.full_like(s0, self.scale.a)
        B, E = self._prep
        k_tt = np.ascontiguousarray(k_tt, dtype=np.float64)
        Phi_test = np.ascontiguousarray(Phi_test, dtype=np.float64)
        U = np.ascontiguousarray(U, dtype=np.float64)
        nt = K_test.shape[0]
        out_f = np.zeros((nt, 3))
        out_i = np.zeros((nt, 2), np.int64)
        no_trace = np.zeros(0)

        def work(lo, hi):
            _core.s_path_batch(
                self._problem, E, B, float(self.lam), float(self.lo), K_test, k_tt, Phi_test, U,
                int(self.max_steps), int(self.refactor_every), int(lo), int(hi), out_f, out_i,
                no_trace, no_trace,
            )

        run_ranges(work, nt, n_threads(n_jobs), min_chunk=16)
        cut = out_f[:, _core.OUT_CUT].copy()
        mel = out_f[:, _core.OUT_MEAN_ELBOW].copy()
        s0 = out_f[:, _core.OUT_S0].copy()
        status = out_i[:, _core.OUT_STATUS].copy()
        nsteps = out_i[:, _core.OUT_STEPS].copy()
        bad = status != _core.STATUS_OK
        if np.any(bad):
            check_status(status[bad][0], "The S-path", cap_name="max_steps", cap=self.max_steps)
        return self.scale.values(cut), nsteps, mel, self.scale.values(s0)

    def _test_columns(self, K_test, k_tt):
        """Kernel columns (n_test, n_merged) and self-kernels of test points."""
        if isinstance(K_test, KernelFactor):
            if not self.factored:
                raise ValueError("Test factor rows need a solver built on a KernelFactor.")
            F_t = K_test.F
            F = self.K[:, :F_t.shape[1]]
            return _kernels.row_products(F_t, F), K_test.self_kernel()
        if self.factored:
            raise ValueError("A solver built on a KernelFactor takes the test points' factor "
                             "rows as a KernelFactor.")
        return self.rows.columns(K_test), k_tt

    def trace(self, k_t, k_tt, phi_t, U):
        """``(cutoff, S_breakpoints, v_t_at_breakpoints, S0)`` for one test point (``k_t``: its
        kernel column, or a one-row :class:`KernelFactor` with a low-rank kernel)."""
        if isinstance(k_t, KernelFactor):
            k_t, k_tt = self._test_columns(k_t, None)
            k_t, k_tt = k_t[0], float(k_tt[0])
        else:
            k_t = self.rows.columns(np.atleast_2d(k_t))[0]
        if self._pattern is not None:
            cut, tS, tv, S0 = self._pattern.trace(k_t, k_tt, phi_t, U)
            a = self.scale.a
            return (a if np.isfinite(cut) else cut), np.full_like(tS, a), tv, a
        B, E = self._prep
        tS = np.zeros(self.max_steps + 4)
        tv = np.zeros(self.max_steps + 4)
        out_f = np.zeros((1, 3))
        out_i = np.zeros((1, 2), np.int64)
        k = _core.s_path_batch(
            self._problem, E, B, float(self.lam), float(self.lo),
            np.ascontiguousarray(np.reshape(k_t, (1, -1)), np.float64),
            np.full(1, float(k_tt)), np.ascontiguousarray(np.reshape(phi_t, (1, -1)), np.float64),
            np.full(1, float(U)), int(self.max_steps), int(self.refactor_every), 0, 1, out_f,
            out_i, tS, tv,
        )
        check_status(out_i[0, _core.OUT_STATUS], "The S-path", cap=self.max_steps)
        k = int(k)
        sc = self.scale
        return (float(sc.values(out_f[0, _core.OUT_CUT])), sc.values(tS[:k]), tv[:k].copy(),
                float(sc.values(out_f[0, _core.OUT_S0])))
