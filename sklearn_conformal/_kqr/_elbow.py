"""The path state and the maintenance of the elbow inverse, shared by the lambda and S paths.

Notation (see ``doc/speedcp.rst``): calibration scores ``S`` (n), linear features ``Phi``
(n, d) of full column rank, kernel matrix ``K`` (n, n), per-point dual boxes ``[lo, hi]``. The
dual of the RKHS quantile regression is::

    max_v  S'v - v'(K + jitter I)v / (2 lam)   s.t.  lo <= v <= hi,  Phi'v = 0

and the fit is ``g = (Phi u + K v) / lam`` with ``u = lam * eta``. Points are in one of three
sets: L (``v = lo``, residual < 0), E (elbow, residual = 0) and R (``v = hi``, residual > 0).
With the sets fixed, ``(u, v_E)`` solves the saddle-point system::

    M_E [u; v_E] = [bal; lam S_E - q_E],   M_E = [[0, Phi_E'], [Phi_E, K_EE + jitter I]]

with ``bal = -Phi_c' v_c`` and ``q = K[:, c] v_c`` over ``c = L u R``. The explicit inverse
``B = M_E^{-1}`` (unknowns ordered ``u`` first, then the elbow points in the order of ``Eidx``)
is bordered when a point enters E (:func:`elbow_add`), Schur-downdated when one leaves
(in :func:`apply_event`) and re-inverted every ``refactor_every`` updates (:func:`refactor`).

Two bundles carry a path through the kernels instead of dozens of arguments:

* :class:`Problem` -- the read-only data. The S-path adds a test point as index ``n``
  (kernel column ``kt``, self-kernel ``ktt``, features ``phit``); the lambda path passes empty
  ``kt``/``phit`` and never uses index ``n``. Both paths build it with the same field types, so
  every kernel taking it compiles once for both.
* :class:`PathState` -- preallocated arrays: sets, duals, ``u``, ``q``, ``bal``, ``w = lam g``,
  the elbow order ``Eidx`` and its inverse ``pos``, scratch vectors, and the counters ``ints``
  (``ints[M]``: the elbow size ``|E|``; ``STEPS``/``UPDATES``: events applied and updates since
  the last refactorisation) and ``flts[QT]`` (``q`` at the test point). ``B`` grows, so it
  travels apart, returned by the kernels that may reallocate it.

Status codes (returned by the kernels, turned into errors in Python): 0 ok, 1 step cap reached,
2 degenerate cycling (too many consecutive zero-length steps), 3 singular elbow system.
"""

from collections import namedtuple

import numpy as np

from .._numba import jit

SET_L = 0
SET_E = 1
SET_R = 2

STATUS_OK = 0
STATUS_STEP_CAP = 1
STATUS_CYCLING = 2
STATUS_SINGULAR = 3

SLOPE_RTOL = 1e-12

# indices into PathState.ints and PathState.flts
M = 0
STEPS = 1
UPDATES = 2
QT = 0

Problem = namedtuple("Problem", ["K", "Phi", "S", "lo", "hi", "kt", "ktt", "phit", "jitter"])
PathState = namedtuple(
    "PathState",
    ["state", "v", "u", "q", "bal", "w", "Eidx", "pos", "rhs", "x", "dw", "ints", "flts",
     "pend"],
)


def problem(K, Phi, S, lo, hi, jitter):
    """A :class:`Problem` without test point (C-contiguous float64 arrays, float scalars)."""
    empty = np.zeros(0)
    return Problem(K, Phi, S, lo, hi, empty, 0.0, empty, float(jitter))


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def new_state(state_in, v_in, d, extra, rank):
    """A :class:`PathState` for sets ``state_in`` and duals ``v_in`` (n), with room for
    ``extra`` (0 or 1: the test point) more points; ``Eidx`` lists E in increasing index.
    ``rank``: the columns of a kernel factor (0 for a kernel matrix), the size of ``pend``."""
    n = state_in.shape[0]
    N = n + extra
    state = np.zeros(n, np.int8)
    v = np.zeros(N)
    Eidx = np.zeros(N, np.int64)
    pos = np.zeros(N, np.int64)
    m = np.int64(0)
    for i in range(N):
        pos[i] = -1
    for i in range(n):
        state[i] = state_in[i]
        v[i] = v_in[i]
        if state[i] == SET_E:
            Eidx[m] = i
            pos[i] = m
            m += 1
    ints = np.zeros(4, np.int64)
    ints[M] = m
    return PathState(
        state, v, np.zeros(d), np.zeros(n), np.zeros(d), np.zeros(n), Eidx, pos,
        np.zeros(d + N), np.zeros(d + N), np.zeros(n), ints, np.zeros(2), np.zeros(rank),
    )


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def kij(K, kt, ktt, a, b):
    """Kernel entry between augmented points ``a`` and ``b``; index ``n = len(K)`` is the test
    point (column ``kt``, self-kernel ``ktt``). Arrays, not the Problem: called in loops, it
    must not take new references."""
    n = K.shape[0]
    if a == n:
        if b == n:
            return ktt
        return kt[b]
    if b == n:
        return kt[a]
    if K.shape[1] != n:
        return factor_dot(K, a, b)
    return K[a, b]


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def rank_of(K):
    """The columns of a kernel factor ``K`` (n, r), or 0 for a square kernel matrix."""
    if K.shape[1] != K.shape[0]:
        return np.int64(K.shape[1])
    return np.int64(0)


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def factor_dot(F, a, b):
    """Entry ``(a, b)`` of a low-rank kernel given by its factor ``F`` (n, r): ``F_a . F_b``."""
    acc = 0.0
    for k in range(F.shape[1]):
        acc += F[a, k] * F[b, k]
    return acc


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def factor_gather(F, j, c, g):
    """``g += c * F_j``: one kernel column of a combination, in the factor's r coordinates."""
    for k in range(F.shape[1]):
        g[k] += c * F[j, k]


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def factor_expand(F, g, out):
    """``out += F g``: a combination of kernel columns gathered in ``g`` (O(n r), instead of
    O(n r) per column)."""
    n, r = F.shape
    for i in range(n):
        acc = 0.0
        for k in range(r):
            acc += F[i, k] * g[k]
        out[i] += acc


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def phi(Phi, phit, j, k):
    """Feature ``k`` of augmented point ``j`` (``n``: the test point, features ``phit``)."""
    if j == Phi.shape[0]:
        return phit[k]
    return Phi[j, k]


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def refactor(B, P, E):
    """Re-invert ``M_E`` into ``B[:d+m, :d+m]`` (Gauss-Jordan with partial pivoting, no LAPACK
    call overhead); returns False when it is numerically singular."""
    K = P.K
    kt = P.kt
    ktt = P.ktt
    Phi = P.Phi
    phit = P.phit
    jitter = P.jitter
    d = Phi.shape[1]
    m = E.ints[M]
    Eidx = E.Eidx
    p = d + m
    A = np.zeros((p, p))
    for a in range(m):
        ja = Eidx[a]
        for k in range(d):
            val = phi(Phi, phit, ja, k)
            A[k, d + a] = val
            A[d + a, k] = val
        for b in range(m):
            A[d + a, d + b] = kij(K, kt, ktt, ja, Eidx[b])
        A[d + a, d + a] += jitter
    if p == 0:
        return True
    Inv = np.zeros((p, p))
    scale = 0.0
    for a in range(p):
        Inv[a, a] = 1.0
        for b in range(p):
            scale = max(scale, abs(A[a, b]))
    tiny = 1e-14 * max(scale, 1e-300)
    for col in range(p):
        piv = col
        best = abs(A[col, col])
        for r in range(col + 1, p):
            if abs(A[r, col]) > best:
                best = abs(A[r, col])
                piv = r
        if best <= tiny or not np.isfinite(best):
            return False
        if piv != col:
            for b in range(p):
                t = A[col, b]
                A[col, b] = A[piv, b]
                A[piv, b] = t
                t = Inv[col, b]
                Inv[col, b] = Inv[piv, b]
                Inv[piv, b] = t
        inv_p = 1.0 / A[col, col]
        for b in range(p):
            A[col, b] *= inv_p
            Inv[col, b] *= inv_p
        for r in range(p):
            if r != col:
                f = A[r, col]
                if f != 0.0:
                    for b in range(p):
                        A[r, b] -= f * A[col, b]
                        Inv[r, b] -= f * Inv[col, b]
    for a in range(p):
        for b in range(p):
            B[a, b] = Inv[a, b]
    return True


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def elbow_add(B, P, E, j):
    """Point ``j`` (``n``: the test point) joins E last: border ``B`` (grown when full) and
    append ``j`` to ``Eidx``/``pos``. Returns ``(B, s)``, ``s`` the Schur complement
    ``c - b' B b`` of the new row (the caller checks it)."""
    K = P.K
    kt = P.kt
    ktt = P.ktt
    Phi = P.Phi
    phit = P.phit
    d = Phi.shape[1]
    m = E.ints[M]
    Eidx = E.Eidx
    p = d + m
    cap = B.shape[0]
    if p + 1 > cap:
        new_cap = max(p + 1, 2 * cap)
        grown = np.zeros((new_cap, new_cap))
        for a in range(cap):
            for b in range(cap):
                grown[a, b] = B[a, b]
        B = grown
    bvec = np.zeros(p)
    for k in range(d):
        bvec[k] = phi(Phi, phit, j, k)
    for a in range(m):
        bvec[d + a] = kij(K, kt, ktt, Eidx[a], j)
    z = np.zeros(p)
    for a in range(p):
        acc = 0.0
        for b in range(p):
            acc += B[a, b] * bvec[b]
        z[a] = acc
    s = kij(K, kt, ktt, j, j) + P.jitter
    for a in range(p):
        s -= bvec[a] * z[a]
    inv_s = 1.0 / s
    for a in range(p):
        za = z[a] * inv_s
        for b in range(p):
            B[a, b] += za * z[b]
        B[a, p] = -za
        B[p, a] = -za
    B[p, p] = inv_s
    Eidx[m] = j
    E.pos[j] = m
    E.ints[M] = m + 1
    return B, s


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def apply_event(B, P, E, j, to):
    """Move calibration point ``j`` into E (``to == SET_E``) or out of it to its bound
    (``lo[j]`` for L, ``hi[j]`` for R), updating ``B``, the sets and the sums of L u R
    (``q``, ``bal`` and, with a test point, ``flts[QT]``). Returns ``(B, ok, dv)``: ``ok``
    False asks for a refactorisation (bad pivot), ``dv`` is what ``j`` added to the fixed duals
    (``-v_j`` when it entered E)."""
    K = P.K
    Phi = P.Phi
    n, d = Phi.shape
    if to == SET_E:
        B, s = elbow_add(B, P, E, j)
        ok = (s > 0.0) and np.isfinite(s)
        E.state[j] = SET_E
        dv = -E.v[j]
    else:
        # j leaves E: swap its row/column of B last, Schur-downdate, and move the last elbow
        # point into its slot
        m = E.ints[M]
        Eidx = E.Eidx
        pos = E.pos
        a0 = pos[j]
        idx = d + a0
        last = d + m - 1
        if idx != last:
            for a in range(last + 1):
                t = B[idx, a]
                B[idx, a] = B[last, a]
                B[last, a] = t
            for a in range(last + 1):
                t = B[a, idx]
                B[a, idx] = B[a, last]
                B[a, last] = t
        piv = B[last, last]
        inv = 1.0 / piv
        for a in range(last):
            f = B[a, last] * inv
            if f != 0.0:
                for b in range(last):
                    B[a, b] -= f * B[last, b]
        moved = Eidx[m - 1]
        Eidx[a0] = moved
        pos[moved] = a0
        pos[j] = -1
        E.ints[M] = m - 1
        ok = np.isfinite(piv) and piv != 0.0
        dv = P.lo[j] if to == SET_L else P.hi[j]
        E.v[j] = dv
        E.state[j] = to
    q = E.q
    if dv != 0.0:
        if K.shape[1] != n:
            # a kernel factor: q = F F' v_c is kept as q + F pend, and pend flushed into q
            # only where all of q is read (flush_q), which saves a pass over F per event
            factor_gather(K, j, dv, E.pend)
        else:
            for i in range(n):
                q[i] += dv * K[j, i]
    bal = E.bal
    for k in range(d):
        bal[k] -= dv * Phi[j, k]
    if P.kt.shape[0] > 0:
        E.flts[QT] += dv * P.kt[j]
    return B, ok, dv


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def matvec(B, p, rhs, out):
    for a in range(p):
        acc = 0.0
        for b in range(p):
            acc += B[a, b] * rhs[b]
        out[a] = acc


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def flush_q(P, E):
    """``q += F pend`` and ``pend = 0`` (a kernel factor; nothing pending otherwise)."""
    pend = E.pend
    if pend.shape[0] == 0:
        return
    factor_expand(P.K, pend, E.q)
    for k in range(pend.shape[0]):
        pend[k] = 0.0


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def q_at(K, q, pend, j):
    """``q[j]`` including the part pending in ``pend`` (a kernel factor)."""
    if pend.shape[0] == 0:
        return q[j]
    acc = 0.0
    for k in range(pend.shape[0]):
        acc += K[j, k] * pend[k]
    return q[j] + acc


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def exact_state(B, P, E, lam):
    """(u, v_E) = B [bal; lam S_E - q_E] from the sets (no drift of the duals)."""
    d = P.Phi.shape[1]
    m = E.ints[M]
    Eidx = E.Eidx
    S = P.S
    rhs = E.rhs
    x = E.x
    bal = E.bal
    q = E.q
    u = E.u
    v = E.v
    for k in range(d):
        rhs[k] = bal[k]
    K = P.K
    pend = E.pend
    for a in range(m):
        j = Eidx[a]
        rhs[d + a] = lam * S[j] - q_at(K, q, pend, j)
    matvec(B, d + m, rhs, x)
    for k in range(d):
        u[k] = x[k]
    for a in range(m):
        v[Eidx[a]] = x[d + a]


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def fit_from_coef(P, E, u, out):
    """out = Phi u + K[:, E] v_E + q  (= lam * g at the calibration points)."""
    flush_q(P, E)
    K = P.K
    Phi = P.Phi
    n, d = Phi.shape
    q = E.q
    v = E.v
    Eidx = E.Eidx
    for i in range(n):
        acc = q[i]
        for k in range(d):
            acc += Phi[i, k] * u[k]
        out[i] = acc
    if K.shape[1] != n:
        g = np.zeros(K.shape[1])
        for a in range(E.ints[M]):
            j = Eidx[a]
            factor_gather(K, j, v[j], g)
        factor_expand(K, g, out)
        return
    for a in range(E.ints[M]):
        j = Eidx[a]
        vj = v[j]
        if vj != 0.0:
            for i in range(n):
                out[i] += K[j, i] * vj


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def fit_dir(P, E, x, dw):
    """dw = Phi x_u + K[:, E] x_v over calibration rows (test column ``kt``): the rate of
    change of ``w`` along a segment of direction ``x``."""
    K = P.K
    Phi = P.Phi
    n, d = Phi.shape
    for i in range(n):
        acc = 0.0
        for k in range(d):
            acc += Phi[i, k] * x[k]
        dw[i] = acc
    kt = P.kt
    Eidx = E.Eidx
    factored = K.shape[1] != n
    g = np.zeros(K.shape[1] if factored else 0)
    for a in range(E.ints[M]):
        j = Eidx[a]
        xa = x[d + a]
        if xa == 0.0:
            continue
        if j == n:
            for i in range(n):
                dw[i] += kt[i] * xa
        elif factored:
            factor_gather(K, j, xa, g)
        else:
            for i in range(n):
                dw[i] += K[j, i] * xa
    if factored:
        factor_expand(K, g, dw)


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def advance(E, d, x, dw, step):
    """(u, v_E, w) += step * (x_u, x_v, dw): move along one linear segment of a path (the
    lambda path passes ``-delta`` since its direction is taken per unit increase of lam)."""
    v = E.v
    u = E.u
    Eidx = E.Eidx
    for a in range(E.ints[M]):
        v[Eidx[a]] += step * x[d + a]
    for k in range(d):
        u[k] += step * x[k]
    w = E.w
    for i in range(w.shape[0]):
        w[i] += step * dw[i]
