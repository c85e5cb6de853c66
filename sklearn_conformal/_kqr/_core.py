"""Numba kernels of the exact kernel-quantile-regression path solvers.

Everything here is ``nopython`` with ``cache=True`` and works on preallocated arrays; the Python
wrappers in :mod:`._path` validate inputs and turn status codes into errors.

Notation (see ``doc/speedcp.rst`` and the design notes): calibration scores ``S`` (n), linear
features ``Phi`` (n, d) of full column rank, kernel matrix ``K`` (n, n), dual box
``[lo, hi] = [-alpha, 1 - alpha]``. The dual of the RKHS quantile regression is::

    max_v  S'v - v'(K + jitter I)v / (2 lam)   s.t.  lo <= v <= hi,  Phi'v = 0

and the fit is ``g = (Phi u + K v) / lam`` with ``u = lam * eta``. Points are in one of three
sets: L (``v = lo``, residual < 0), E (elbow, residual = 0) and R (``v = hi``, residual > 0).
With the sets fixed, ``(u, v_E)`` solves the saddle-point system::

    M_E [u; v_E] = [bal; lam S_E - q_E],   M_E = [[0, Phi_E'], [Phi_E, K_EE + jitter I]]

with ``bal = -Phi_c' v_c`` and ``q = K[:, c] v_c`` over ``c = L u R``. We keep the explicit
inverse ``B = M_E^{-1}`` (unknowns ordered ``u`` first, then the elbow points in the order of
``Eidx``), update it by bordering when a point enters E and by a Schur downdate when one
leaves, and re-invert it every ``refactor_every`` updates. ``w = lam * g`` is advanced
incrementally along each linear segment and recomputed exactly at every refactorisation.

Status codes returned by the solvers: 0 ok, 1 step cap reached, 2 degenerate cycling (too many
consecutive zero-length steps), 3 singular elbow system.
"""

import numpy as np
from .._numba import jit

SET_L = 0
SET_E = 1
SET_R = 2

STATUS_OK = 0
STATUS_STEP_CAP = 1
STATUS_CYCLING = 2
STATUS_SINGULAR = 3

_SLOPE_RTOL = 1e-12


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------
@jit(error_model="numpy")
def sq_dists(X, Y):
    """Squared Euclidean distances between the rows of ``X`` and ``Y``."""
    nx, p = X.shape
    ny = Y.shape[0]
    out = np.empty((nx, ny))
    for i in range(nx):
        for j in range(ny):
            acc = 0.0
            for k in range(p):
                t = X[i, k] - Y[j, k]
                acc += t * t
            out[i, j] = acc
    return out


@jit(error_model="numpy")
def _kernel_value(d2, kind, gamma, beta):
    if kind == 0:  # rbf
        return np.exp(-gamma * d2)
    r = np.sqrt(gamma * d2)
    if kind == 1:  # laplacian (Matern 1/2)
        return np.exp(-r)
    if kind == 2:  # Matern 3/2
        a = np.sqrt(3.0) * r
        return (1.0 + a) * np.exp(-a)
    if kind == 3:  # Matern 5/2
        a = np.sqrt(5.0) * r
        return (1.0 + a + a * a / 3.0) * np.exp(-a)
    # inverse multiquadric, normalised so that k(x, x) = 1
    return (1.0 + gamma * d2) ** (-beta)


@jit(error_model="numpy")
def kernel_from_sq_dists(D2, kind, gamma, beta):
    """Elementwise kernel of a squared-distance matrix (``kind``: 0 rbf, 1 laplacian,
    2 matern32, 3 matern52, 4 imq)."""
    nx, ny = D2.shape
    out = np.empty((nx, ny))
    for i in range(nx):
        for j in range(ny):
            out[i, j] = _kernel_value(D2[i, j], kind, gamma, beta)
    return out


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
@jit(error_model="numpy")
def _kij(K, kt, ktt, n, a, b):
    """Kernel entry between augmented points ``a`` and ``b``; index ``n`` is the test point."""
    if a == n:
        if b == n:
            return ktt
        return kt[b]
    if b == n:
        return kt[a]
    return K[a, b]


@jit(error_model="numpy")
def _phi(Phi, phit, n, j, k):
    if j == n:
        return phit[k]
    return Phi[j, k]


@jit(error_model="numpy")
def _grow(B, need):
    cap = B.shape[0]
    if need <= cap:
        return B
    new_cap = max(need, 2 * cap)
    out = np.zeros((new_cap, new_cap))
    out[:cap, :cap] = B
    return out


@jit(error_model="numpy")
def _refactor(B, Eidx, m, d, K, kt, ktt, Phi, phit, n, jitter):
    """Re-invert ``M_E`` into ``B[:d+m, :d+m]``; returns False when it is singular."""
    p = d + m
    M = np.zeros((p, p))
    for a in range(m):
        ja = Eidx[a]
        for k in range(d):
            val = _phi(Phi, phit, n, ja, k)
            M[k, d + a] = val
            M[d + a, k] = val
        for b in range(m):
            M[d + a, d + b] = _kij(K, kt, ktt, n, ja, Eidx[b])
        M[d + a, d + a] += jitter
    if p == 0:
        return True
    Minv = _invert(M)
    if Minv.shape[0] != p:
        return False
    B[:p, :p] = Minv
    return True


@jit(error_model="numpy")
def _invert(A):
    """Gauss-Jordan inverse with partial pivoting (single-threaded, no LAPACK call overhead).

    Returns a (0, 0) array when ``A`` is numerically singular."""
    p = A.shape[0]
    M = A.copy()
    Inv = np.eye(p)
    scale = 0.0
    for a in range(p):
        for b in range(p):
            scale = max(scale, abs(M[a, b]))
    tiny = 1e-14 * max(scale, 1e-300)
    for col in range(p):
        piv = col
        best = abs(M[col, col])
        for r in range(col + 1, p):
            if abs(M[r, col]) > best:
                best = abs(M[r, col])
                piv = r
        if best <= tiny or not np.isfinite(best):
            return np.zeros((0, 0))
        if piv != col:
            for b in range(p):
                t = M[col, b]
                M[col, b] = M[piv, b]
                M[piv, b] = t
                t = Inv[col, b]
                Inv[col, b] = Inv[piv, b]
                Inv[piv, b] = t
        inv_p = 1.0 / M[col, col]
        for b in range(p):
            M[col, b] *= inv_p
            Inv[col, b] *= inv_p
        for r in range(p):
            if r != col:
                f = M[r, col]
                if f != 0.0:
                    for b in range(p):
                        M[r, b] -= f * M[col, b]
                        Inv[r, b] -= f * Inv[col, b]
    return Inv


@jit(error_model="numpy")
def _border_add(B, p, bvec, c):
    """Bordered update of ``B = M^{-1}`` (size ``p``) for a new last row/column ``[bvec; c]``.

    Returns the Schur complement ``s = c - bvec' B bvec`` (the caller checks it)."""
    z = np.zeros(p)
    for a in range(p):
        acc = 0.0
        for b in range(p):
            acc += B[a, b] * bvec[b]
        z[a] = acc
    s = c
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
    return s


@jit(error_model="numpy")
def _border_remove(B, p, idx):
    """Remove row/column ``idx`` from ``B = M^{-1}`` (size ``p``): swap it last, Schur-downdate.

    Returns the pivot ``B[idx, idx]``."""
    last = p - 1
    if idx != last:
        for a in range(p):
            t = B[idx, a]
            B[idx, a] = B[last, a]
            B[last, a] = t
        for a in range(p):
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
    return piv


@jit(error_model="numpy")
def _pinball(r, tau):
    if r > 0:
        return tau * r
    return (tau - 1.0) * r


@jit(error_model="numpy")
def _matvec(B, p, rhs, out):
    for a in range(p):
        acc = 0.0
        for b in range(p):
            acc += B[a, b] * rhs[b]
        out[a] = acc


@jit(error_model="numpy")
def _fit_dir(K, Phi, kt, n, d, Eidx, m, x, dw):
    """dw = Phi x_u + K[:, E] x_v over calibration rows (test column is ``kt``): the rate of
    change of ``w`` along a segment of direction ``x``, shared by the lambda and S paths."""
    for i in range(n):
        acc = 0.0
        for k in range(d):
            acc += Phi[i, k] * x[k]
        dw[i] = acc
    for a in range(m):
        j = Eidx[a]
        xa = x[d + a]
        if xa == 0.0:
            continue
        if j == n:
            for i in range(n):
                dw[i] += kt[i] * xa
        else:
            for i in range(n):
                dw[i] += K[j, i] * xa


@jit(error_model="numpy")
def _absmax(x, p):
    """max(0, |x[0]|, ..., |x[p-1]|): the scale of a direction, for relative slope tolerances."""
    xmax = 0.0
    for a in range(p):
        xmax = max(xmax, abs(x[a]))
    return xmax


@jit(error_model="numpy")
def _residual_step(si, slope, tol, num):
    """Step (>= 0) at which the residual numerator ``num`` of a point of set ``si`` (L or R),
    falling by ``slope`` per unit step, reaches zero; inf when it moves away or too slowly."""
    if si == SET_L:
        if slope >= -tol:
            return np.inf
    elif slope <= tol:
        return np.inf
    st = num / slope
    if st < 0.0:
        st = 0.0
    return st


@jit(error_model="numpy")
def _bound_step(vj, rate, lo, hi, tol):
    """Step (>= 0) at which an elbow dual ``vj``, moving by ``rate`` per unit step, reaches
    ``hi`` (joining R) or ``lo`` (joining L); ``(inf, SET_E)`` when it moves too slowly."""
    if rate > tol:
        st = (hi - vj) / rate
        to = SET_R
    elif rate < -tol:
        st = (lo - vj) / rate
        to = SET_L
    else:
        return np.inf, SET_E
    if st < 0.0:
        st = 0.0
    return st, to


@jit(error_model="numpy")
def _advance(Eidx, m, d, n, x, dw, step, u, v, w):
    """(u, v_E, w) += step * (x_u, x_v, dw): move along one linear segment of a path (the
    lambda path passes ``-delta`` since its direction is taken per unit increase of lam)."""
    for a in range(m):
        v[Eidx[a]] += step * x[d + a]
    for k in range(d):
        u[k] += step * x[k]
    for i in range(n):
        w[i] += step * dw[i]


@jit(error_model="numpy")
def _zero_steps(is_zero, zero_run, n):
    """Count consecutive zero-length steps; returns ``(zero_run, cycling)`` with ``cycling``
    True once the run is too long for a degenerate tie to resolve (status 2)."""
    if is_zero:
        zero_run += 1
        return zero_run, zero_run > 4 * n + 50
    return 0, False


@jit(error_model="numpy")
def _elbow_add(B, K, Phi, kt, ktt, phit, n, d, Eidx, pos, m, j, jitter):
    """Point ``j`` (``n``: the test point) joins E last: border ``B`` and append it to
    ``Eidx``/``pos``. Returns ``(B, m + 1, s)``, ``s`` the Schur complement (caller checks)."""
    p = d + m
    B = _grow(B, p + 1)
    bvec = np.empty(p)
    for k in range(d):
        bvec[k] = _phi(Phi, phit, n, j, k)
    for a in range(m):
        bvec[d + a] = _kij(K, kt, ktt, n, Eidx[a], j)
    s = _border_add(B, p, bvec, _kij(K, kt, ktt, n, j, j) + jitter)
    Eidx[m] = j
    pos[j] = m
    return B, m + 1, s


@jit(error_model="numpy")
def _elbow_drop(B, Eidx, pos, m, d, j):
    """Elbow point ``j`` leaves E: Schur-downdate ``B`` and move the last elbow point into its
    slot. Returns ``(m - 1, pivot)`` (the caller checks the pivot)."""
    a = pos[j]
    piv = _border_remove(B, d + m, d + a)
    last = Eidx[m - 1]
    Eidx[a] = last
    pos[last] = a
    pos[j] = -1
    return m - 1, piv


@jit(error_model="numpy")
def _shift_sums(K, Phi, n, d, q, bal, j, dv, skip_zero):
    """q += dv K[j], bal -= dv Phi[j]: point ``j`` adds ``dv`` to the fixed duals of L u R
    (``-v_j`` when it enters E); ``skip_zero`` leaves ``q`` alone when ``dv == 0``."""
    if dv != 0.0 or not skip_zero:
        for i in range(n):
            q[i] += dv * K[j, i]
    for k in range(d):
        bal[k] -= dv * Phi[j, k]


# --------------------------------------------------------------------------------------------
# lambda path
# --------------------------------------------------------------------------------------------
@jit(error_model="numpy")
def _fit_from_coef(K, Phi, n, d, Eidx, m, u, v, q, out):
    """out = Phi u + K[:, E] v_E + q  (= lam * g at the calibration points)."""
    for i in range(n):
        acc = q[i]
        for k in range(d):
            acc += Phi[i, k] * u[k]
        out[i] = acc
    for a in range(m):
        j = Eidx[a]
        vj = v[j]
        if vj != 0.0:
            for i in range(n):
                out[i] += K[j, i] * vj


@jit(error_model="numpy")
def _lam_direction(B, Eidx, m, d, S, rhs, x):
    """x = B [0; S_E] = d(u, v_E)/dlam: the direction of the current lambda-path segment."""
    for k in range(d):
        rhs[k] = 0.0
    for a in range(m):
        rhs[d + a] = S[Eidx[a]]
    _matvec(B, d + m, rhs, x)


@jit(error_model="numpy")
def _lam_scan_events(S, lo, hi, lam, state, v, w, h, x, d, Eidx, m, n):
    """Smallest decrease of lam (>= 0) to the next lambda-path event: an elbow dual reaching
    a bound or a residual of L u R reaching zero. Returns ``(delta, point, target set)``."""
    best = np.inf
    best_i = -1
    best_to = SET_E
    tol_e = _SLOPE_RTOL * _absmax(x, d + m)
    for a in range(m):
        j = Eidx[a]
        # lowering lam by dl moves v_j by -x_a dl
        dl, to = _bound_step(v[j], -x[d + a], lo[j], hi[j], tol_e)
        if dl < best:
            best = dl
            best_i = j
            best_to = to
    for i in range(n):
        si = state[i]
        if si == SET_E:
            continue
        slope = S[i] - h[i]
        tol = _SLOPE_RTOL * (abs(S[i]) + abs(h[i]) + 1e-300)
        dl = _residual_step(si, slope, tol, lam * S[i] - w[i])
        if dl < best:
            best = dl
            best_i = i
            best_to = SET_E
    return best, best_i, best_to


@jit(error_model="numpy")
def _lam_losses(S, tau, lam, state, w, u, v, Eidx, m, n, d, logn_2n, Kval, Phival, Sval, qv,
                lo, hi, Wval):
    """Training pinball loss, SIC and validation pinball loss (NaN without validation data)
    of the fit at a lambda-path breakpoint, each point weighted by its multiplicity (the width
    ``hi - lo`` of its box; ``Wval`` for validation points). Returns ``(loss, sic, vloss)``."""
    nv = Sval.shape[0]
    loss = 0.0
    wsum = 0.0
    for i in range(n):
        wsum += hi[i] - lo[i]
        if state[i] != SET_E:
            loss += (hi[i] - lo[i]) * _pinball((lam * S[i] - w[i]) / lam, tau)
    loss /= wsum
    # the SIC is ill-posed at an interpolating fit (log 0): never select one
    sic = np.log(loss) + logn_2n * m if loss > 0.0 else np.inf
    vloss = np.nan
    if nv > 0:
        vloss = 0.0
        vsum = 0.0
        for i in range(nv):
            acc = qv[i]
            for k in range(d):
                acc += Phival[i, k] * u[k]
            for a in range(m):
                acc += Kval[Eidx[a], i] * v[Eidx[a]]
            vloss += Wval[i] * _pinball(Sval[i] - acc / lam, tau)
            vsum += Wval[i]
        vloss /= vsum
    return loss, sic, vloss


@jit(error_model="numpy")
def _lam_event_step(
    B, K, Phi, S, lo, hi, lam, Eidx, pos, m, state, v, u, w, q, bal, qv, Kval, j, to, jitter,
    rhs, x, steps, updates, refactor_every, empty,
):
    """Apply one lambda-path event (point ``j`` to set ``to``; updates B, q, bal, qv), then
    re-solve (u, v_E) exactly, refactorising every ``refactor_every`` updates (or at once
    after a bad pivot). Returns ``(B, m, status, steps, updates)``."""
    n, d = Phi.shape
    if to == SET_E:
        vj = v[j]
        B, m, s = _elbow_add(B, K, Phi, empty, 0.0, empty, n, d, Eidx, pos, m, j, jitter)
        ok = (s > 0.0) and np.isfinite(s)
        state[j] = SET_E
        dv = -vj
    else:
        m, piv = _elbow_drop(B, Eidx, pos, m, d, j)
        ok = np.isfinite(piv) and piv != 0.0
        dv = lo[j] if to == SET_L else hi[j]
        v[j] = dv
        state[j] = to
    _shift_sums(K, Phi, n, d, q, bal, j, dv, np.bool_(False))
    for i in range(qv.shape[0]):
        qv[i] += dv * Kval[j, i]
    if not ok:
        updates = refactor_every  # force a refactorisation
    steps += 1
    updates += 1
    if updates >= refactor_every:
        updates = 0
        if not _refactor(B, Eidx, m, d, K, empty, 0.0, Phi, empty, n, jitter):
            return B, m, STATUS_SINGULAR, steps, updates
        _exact_state(B, Eidx, m, d, S, lam, bal, q, u, v, rhs, x)
        _fit_from_coef(K, Phi, n, d, Eidx, m, u, v, q, w)
    else:
        # (u, v_E) from the sets (O(|E|^2)): no drift of the duals along the path
        _exact_state(B, Eidx, m, d, S, lam, bal, q, u, v, rhs, x)
    return B, m, STATUS_OK, steps, updates


@jit(error_model="numpy")
def lambda_path_core(
    K, Phi, S, lo, hi, tau, state_in, v_in, lam_stop, lam_min, lam_min_ratio, max_steps, jitter,
    refactor_every, Kval, Phival, Sval, store_path, Wval,
):
    """Exact regularisation path of the kernel quantile regression from ``lam = inf`` downwards.

    ``lo``/``hi`` are per-point bounds (a point standing for ``w`` identical rows has the box
    ``w [lo, hi]``; its loss counts ``w`` times), ``Wval`` the validation weights.
    ``state_in``/``v_in`` is the linear-quantile-regression (``lam -> inf``) solution whose elbow
    has zero residual. The path stops at ``max(lam_stop, lam_min, lam_min_ratio * lam_0)`` (lam_0
    is the start of the first segment along which the duals move), when no event is left, or
    after ``max_steps`` events (status 1). A breakpoint is recorded at the start of every segment
    of positive length (zero-length degenerate steps are merged into one breakpoint) and at the
    stop. Validation data (``Kval`` of shape (n, n_val)) give the validation pinball loss at each
    breakpoint; pass zero-sized arrays to skip it.

    Returns ``(lams, sics, losses, val_losses, elbow_sizes, n_rec, best_state, best_v, best_u,
    best_lam, final_state, final_v, final_u, final_lam, v_path, u_path, status, n_steps)``.
    """
    n, d = Phi.shape
    nv = Sval.shape[0]
    state = state_in.copy()
    v = v_in.copy()
    Eidx = np.empty(n, np.int64)
    pos = np.full(n, -1, np.int64)
    m = np.int64(0)  # not a literal 0: numba would compile the helpers twice
    for i in range(n):
        if state[i] == SET_E:
            Eidx[m] = i
            pos[i] = m
            m += 1
    empty = np.zeros(0)
    B = np.zeros((d + m + 32, d + m + 32))
    status = STATUS_OK
    if not _refactor(B, Eidx, m, d, K, empty, 0.0, Phi, empty, n, jitter):
        status = STATUS_SINGULAR

    q = np.zeros(n)
    bal = np.zeros(d)
    qv = np.zeros(nv)
    for j in range(n):
        if state[j] != SET_E:
            vj = v[j]
            for i in range(n):
                q[i] += vj * K[j, i]
            for k in range(d):
                bal[k] -= vj * Phi[j, k]
            for i in range(nv):
                qv[i] += vj * Kval[j, i]

    # records
    cap_rec = 64
    lams = np.empty(cap_rec)
    sics = np.empty(cap_rec)
    losses = np.empty(cap_rec)
    vlosses = np.empty(cap_rec)
    esizes = np.empty(cap_rec, np.int64)
    if store_path:
        v_path = np.empty((cap_rec, n))
        u_path = np.empty((cap_rec, d))
    else:
        v_path = np.empty((0, n))
        u_path = np.empty((0, d))
    n_rec = np.int64(0)
    best_sic = np.inf
    best_state = state.copy()
    best_v = v.copy()
    best_u = np.zeros(d)
    best_lam = np.nan

    u = np.zeros(d)
    w = np.zeros(n)
    h = np.zeros(n)
    rhs = np.zeros(d + n + 1)
    x = np.zeros(d + n + 1)
    lam = np.inf
    n_eff = 0.0
    for i in range(n):
        n_eff += hi[i] - lo[i]
    logn_2n = np.log(n_eff) / (2.0 * n_eff) if n_eff > 0 else 0.0
    lam_floor = max(lam_stop, lam_min)
    # lam_min_ratio is relative to the lam at which the duals start to move (the first segment
    # with more elbow points than linear features): intrinsic, unlike the first breakpoint,
    # which a degenerate linear start (tau n integer) can place arbitrarily high
    anchored = not (lam_min_ratio > 0.0)

    if status == STATUS_OK:
        # ---- lam = inf: (u, v_E) = a + lam b, w = w0 + lam h
        p = d + m
        _lam_direction(B, Eidx, m, d, S, rhs, x)
        bu = x[:d].copy()
        bv = x[d:p].copy()
        for k in range(d):
            rhs[k] = bal[k]
        for a in range(m):
            rhs[d + a] = -q[Eidx[a]]
        _matvec(B, p, rhs, x)
        au = x[:d].copy()
        for a in range(m):
            v[Eidx[a]] = x[d + a]
        w0 = np.zeros(n)
        _fit_from_coef(K, Phi, n, d, Eidx, m, au, v, q, w0)
        for i in range(n):
            acc = 0.0
            for k in range(d):
                acc += Phi[i, k] * bu[k]
            h[i] = acc
        for a in range(m):
            j = Eidx[a]
            for i in range(n):
                h[i] += K[j, i] * bv[a]
        # first breakpoint: largest lam at which a residual of L u R reaches zero
        lam0 = -np.inf
        for i in range(n):
            if state[i] == SET_E:
                continue
            slope = S[i] - h[i]
            tol = _SLOPE_RTOL * (abs(S[i]) + abs(h[i]) + 1e-300)
            if state[i] == SET_L and slope < -tol:
                cand = w0[i] / slope
            elif state[i] == SET_R and slope > tol:
                cand = w0[i] / slope
            else:
                continue
            if cand > lam0:
                lam0 = cand
        if not (lam0 > 0.0) or not np.isfinite(lam0):
            # no event at any lam: the solution is constant in v
            lam0 = lam_floor if lam_floor > 0.0 else 1.0
            anchored = True
        elif lam0 < lam_floor:
            lam0 = lam_floor
            anchored = True
        lam = lam0
        for k in range(d):
            u[k] = au[k] + lam * bu[k]
        for a in range(m):
            v[Eidx[a]] += lam * bv[a]
        for i in range(n):
            w[i] = w0[i] + lam * h[i]

    steps = np.int64(0)
    updates = np.int64(0)
    zero_run = np.int64(0)
    while status == STATUS_OK:
        # ---- direction d(u, v_E)/dlam and d(w)/dlam, then the event scan (lam decreasing)
        _lam_direction(B, Eidx, m, d, S, rhs, x)
        _fit_dir(K, Phi, empty, n, d, Eidx, m, x, h)
        best, best_i, best_to = _lam_scan_events(S, lo, hi, lam, state, v, w, h, x, d, Eidx, m, n)
        if not anchored and m > d and best > 0.0:
            anchored = True
            lam_floor = max(lam_floor, lam_min_ratio * lam)
        delta_stop = lam - lam_floor
        stopping = (delta_stop <= best) or best_i < 0 or steps >= max_steps
        if stopping and steps >= max_steps and not (delta_stop <= best):
            status = STATUS_STEP_CAP
        # ---- record a breakpoint at the start of a positive-length segment
        if best > 0.0 or stopping:
            if n_rec == lams.shape[0]:
                new_cap = 2 * n_rec
                lams = _grow1(lams, new_cap)
                sics = _grow1(sics, new_cap)
                losses = _grow1(losses, new_cap)
                vlosses = _grow1(vlosses, new_cap)
                esizes = _grow1i(esizes, new_cap)
                if store_path:
                    v_path = _grow2(v_path, new_cap)
                    u_path = _grow2(u_path, new_cap)
            loss, sic, vloss = _lam_losses(
                S, tau, lam, state, w, u, v, Eidx, m, n, d, logn_2n, Kval, Phival, Sval, qv,
                lo, hi, Wval,
            )
            lams[n_rec] = lam
            sics[n_rec] = sic
            losses[n_rec] = loss
            vlosses[n_rec] = vloss
            esizes[n_rec] = m
            if store_path:
                v_path[n_rec, :] = v
                u_path[n_rec, :] = u / lam
            n_rec += 1
            if sic < best_sic:
                best_sic = sic
                best_state[:] = state
                best_v[:] = v
                best_u[:] = u
                best_lam = lam
        if stopping:
            if delta_stop <= best and delta_stop > 0.0 and lam_stop > 0.0:
                # advance exactly to lam_stop (the caller asked for the state there)
                _advance(Eidx, m, d, n, x, h, -delta_stop, u, v, w)
                lam = lam_floor
            break
        # ---- advance along the segment
        if best > 0.0:
            _advance(Eidx, m, d, n, x, h, -best, u, v, w)
            lam -= best
        zero_run, cycling = _zero_steps(best <= 1e-13 * lam, zero_run, n)
        if cycling:
            status = STATUS_CYCLING
            break
        # ---- apply the event, re-solve (u, v_E) exactly
        B, m, status, steps, updates = _lam_event_step(
            B, K, Phi, S, lo, hi, lam, Eidx, pos, m, state, v, u, w, q, bal, qv, Kval, best_i,
            best_to, jitter, rhs, x, steps, updates, refactor_every, empty,
        )

    return (
        lams[:n_rec].copy(), sics[:n_rec].copy(), losses[:n_rec].copy(), vlosses[:n_rec].copy(),
        esizes[:n_rec].copy(), best_state, best_v, best_u / best_lam, best_lam,
        state, v, u / lam, lam, v_path[:n_rec].copy(), u_path[:n_rec].copy(), status, steps,
    )


@jit(error_model="numpy")
def _exact_state(B, Eidx, m, d, S, lam, bal, q, u, v, rhs, x):
    """(u, v_E) = B [bal; lam S_E - q_E] (no drift)."""
    p = d + m
    for k in range(d):
        rhs[k] = bal[k]
    for a in range(m):
        j = Eidx[a]
        rhs[d + a] = lam * S[j] - q[j]
    _matvec(B, p, rhs, x)
    for k in range(d):
        u[k] = x[k]
    for a in range(m):
        v[Eidx[a]] = x[d + a]


@jit(error_model="numpy")
def _grow1(a, cap):
    out = np.empty(cap)
    out[: a.shape[0]] = a
    return out


@jit(error_model="numpy")
def _grow1i(a, cap):
    out = np.empty(cap, np.int64)
    out[: a.shape[0]] = a
    return out


@jit(error_model="numpy")
def _grow2(a, cap):
    out = np.empty((cap, a.shape[1]))
    out[: a.shape[0], :] = a
    return out


# --------------------------------------------------------------------------------------------
# S path (one test point)
# --------------------------------------------------------------------------------------------
@jit(error_model="numpy")
def prepare_state(K, Phi, S, lam, state_in, v_in, jitter):
    """Exact solution at ``lam`` for the given sets: ``(ok, Eidx, m, B, v, u, q, bal, w)``."""
    n, d = Phi.shape
    state = state_in
    v = v_in.copy()
    Eidx = np.empty(n, np.int64)
    m = np.int64(0)  # not a literal 0: numba would compile the helpers twice
    for i in range(n):
        if state[i] == SET_E:
            Eidx[m] = i
            m += 1
    empty = np.zeros(0)
    B = np.zeros((d + m + 8, d + m + 8))
    ok = _refactor(B, Eidx, m, d, K, empty, 0.0, Phi, empty, n, jitter)
    q = np.zeros(n)
    bal = np.zeros(d)
    for j in range(n):
        if state[j] != SET_E:
            vj = v[j]
            if vj != 0.0:
                for i in range(n):
                    q[i] += vj * K[j, i]
            for k in range(d):
                bal[k] -= vj * Phi[j, k]
    u = np.zeros(d)
    w = np.zeros(n)
    if ok:
        rhs = np.zeros(d + m)
        x = np.zeros(d + m)
        _exact_state(B, Eidx, m, d, S, lam, bal, q, u, v, rhs, x)
        _fit_from_coef(K, Phi, n, d, Eidx, m, u, v, q, w)
    return ok, Eidx, m, B, v, u, q, bal, w


@jit(error_model="numpy")
def _trace_point(trace_S, trace_v, n_trace, S_t, v_t):
    """Record a stage-2 breakpoint ``(S_t, v_t)`` while the trace arrays (possibly empty: no
    trace) have room; returns the new count."""
    if n_trace < trace_S.shape[0]:
        trace_S[n_trace] = S_t
        trace_v[n_trace] = v_t
        n_trace += 1
    return n_trace


@jit(error_model="numpy")
def s_path_one(
    K, Phi, S, lo, hi, lam, state0, Eidx0, m0, B0, v0, u0, q0, bal0, w0, kt, ktt, phit, U,
    max_steps, jitter, refactor_every, trace_S, trace_v, clo, chi,
):
    """Cutoff ``S* = sup{S : v_t(S) <= U}`` for one test point (``+inf`` if never reached).

    Stage 1 moves the (fixed) test dual ``c`` from 0 to ``lo`` with exact event handling; the
    test point then joins the elbow at ``S0 = g(x_t)`` and stage 2 increases its imputed score
    until ``v_t`` reaches ``U`` (interpolated inside the segment). ``trace_S``/``trace_v``
    (length >= max_steps + 2, or 0 to skip) receive ``(S, v_t)`` at every stage-2 breakpoint.

    ``lo``/``hi`` bound the test dual, ``clo``/``chi`` (arrays) the calibration duals.

    Returns ``(cutoff, status, n_steps, sum_elbow_sizes, n_trace, S0)``.
    """
    n, d = Phi.shape
    state = state0.copy()
    v = np.empty(n + 1)
    v[:n] = v0
    v[n] = 0.0
    u = u0.copy()
    q = q0.copy()
    bal = bal0.copy()
    w = w0.copy()
    m = m0
    p0 = d + m0
    B = np.zeros((p0 + 16, p0 + 16))
    B[:p0, :p0] = B0[:p0, :p0]
    Eidx = np.empty(n + 1, np.int64)
    Eidx[:m0] = Eidx0[:m0]
    pos = np.full(n + 1, -1, np.int64)
    for a in range(m):
        pos[Eidx[a]] = a
    rhs = np.zeros(d + n + 1)
    x = np.zeros(d + n + 1)
    dw = np.zeros(n)
    qt = 0.0  # sum over L u R of kt_j v_j (q at the test point)
    for j in range(n):
        if state[j] != SET_E:
            qt += kt[j] * v[j]
    status = STATUS_OK
    steps = np.int64(0)
    updates = np.int64(0)
    zero_run = np.int64(0)
    sum_m = np.int64(0)
    n_trace = np.int64(0)

    # ---------------- stage 1: c from 0 to lo (t = -c goes 0 -> -lo)
    t_done = 0.0
    t_end = -lo
    while True:
        p = d + m
        for k in range(d):
            rhs[k] = phit[k]
        for a in range(m):
            rhs[d + a] = kt[Eidx[a]]
        _matvec(B, p, rhs, x)
        _fit_dir(K, Phi, kt, n, d, Eidx, m, x, dw)
        for i in range(n):
            dw[i] -= kt[i]
        best, best_i, best_to = _scan_events(S, clo, chi, lam, state, v, w, dw, x, d, Eidx, m, n)
        remaining = t_end - t_done
        sum_m += m
        if remaining <= best:
            step = remaining
        else:
            step = best
        if step > 0.0:
            _advance(Eidx, m, d, n, x, dw, step, u, v, w)
            t_done += step
        if remaining <= best:
            break
        zero_run, cycling = _zero_steps(best <= 1e-13 * (abs(t_end) + 1.0), zero_run, n)
        if cycling:
            status = STATUS_CYCLING
            break
        B, m, qt, status, steps, updates = _s_event_step(
            B, K, Phi, S, kt, ktt, phit, n, d, clo, chi, lam, Eidx, pos, m, state, v, q, bal, w,
            u, best_i, best_to, jitter, qt, -t_done, 0.0, rhs, x, steps, updates, max_steps,
            refactor_every,
        )
        if status != STATUS_OK:
            break
    if status != STATUS_OK:
        return np.nan, status, steps, sum_m, n_trace, np.nan

    # ---------------- join: t enters E with v_t = lo at S0 = g(x_t)
    acc = ktt * lo
    for k in range(d):
        acc += phit[k] * u[k]
    for j in range(n):
        acc += kt[j] * v[j]
    S_cur = acc / lam
    S0 = S_cur
    B, m, _ = _elbow_add(B, K, Phi, kt, ktt, phit, n, d, Eidx, pos, m, n, jitter)
    v[n] = lo
    zero_run = np.int64(0)

    # ---------------- stage 2: S_t increases from S0
    cutoff = np.nan
    while True:
        p = d + m
        pt = pos[n]
        # a test point that alone carries a direction of Phi (e.g. the only elbow point of its
        # group) has its dual fixed by the balance constraint: then exactly dv = 0 and only
        # u moves, along that direction (computed directly, free of round-off)
        t_crit, delta_t = _critical_dir(Phi, phit, n, d, Eidx, m, n)
        if t_crit:
            for k in range(d):
                x[k] = lam * delta_t[k]
            for a in range(m):
                x[d + a] = 0.0
        else:
            for a in range(p):
                x[a] = lam * B[a, d + pt]
        _fit_dir(K, Phi, kt, n, d, Eidx, m, x, dw)
        n_trace = _trace_point(trace_S, trace_v, n_trace, S_cur, v[n])
        best, best_i, best_to = _scan_events(S, clo, chi, lam, state, v, w, dw, x, d, Eidx, m, n)
        sum_m += m
        dvt = x[d + pt]
        if dvt > _SLOPE_RTOL * _absmax(x, p):
            dU = (U - v[n]) / dvt
            if dU < 0.0:
                dU = 0.0
        else:
            dU = np.inf
        if dU <= best:
            if np.isfinite(dU):
                cutoff = S_cur + dU
                n_trace = _trace_point(trace_S, trace_v, n_trace, cutoff, U)
            else:
                cutoff = np.inf
            break
        step = best
        if step > 0.0:
            _advance(Eidx, m, d, n, x, dw, step, u, v, w)
            S_cur += step
        zero_run, cycling = _zero_steps(not (step > 0.0), zero_run, n)
        if cycling:
            status = STATUS_CYCLING
            break
        B, m, qt, status, steps, updates = _s_event_step(
            B, K, Phi, S, kt, ktt, phit, n, d, clo, chi, lam, Eidx, pos, m, state, v, q, bal, w,
            u, best_i, best_to, jitter, qt, 0.0, S_cur, rhs, x, steps, updates, max_steps,
            refactor_every,
        )
        if status != STATUS_OK:
            break
    if status != STATUS_OK:
        return np.nan, status, steps, sum_m, n_trace, S0
    return cutoff, status, steps, sum_m, n_trace, S0


@jit(error_model="numpy")
def _scan_events(S, lo, hi, lam, state, v, w, dw, x, d, Eidx, m, n):
    """Smallest step (parameter increasing) to the next calibration event of an S-path stage.

    E points move by ``x_v`` per unit, residual numerators ``lam S_i - w_i`` by ``-dw_i``."""
    best = np.inf
    best_i = -1
    best_to = SET_E
    tol_e = _SLOPE_RTOL * _absmax(x, d + m)
    for a in range(m):
        j = Eidx[a]
        if j == n:
            continue
        st, to = _bound_step(v[j], x[d + a], lo[j], hi[j], tol_e)
        if st < best:
            best = st
            best_i = j
            best_to = to
    for i in range(n):
        si = state[i]
        if si == SET_E:
            continue
        slope = dw[i]
        tol = _SLOPE_RTOL * (abs(w[i]) + abs(lam * S[i]) + abs(slope) + 1e-300)
        st = _residual_step(si, slope, tol, lam * S[i] - w[i])
        if st < best:
            best = st
            best_i = i
            best_to = SET_E
    return best, best_i, best_to


@jit(error_model="numpy")
def _apply_event(
    B, K, Phi, kt, ktt, phit, n, d, lo, hi, Eidx, pos, m, state, v, q, bal, j, to, jitter, qt,
):
    """Move calibration point ``j`` into E (``to == SET_E``) or out of it (to its bound
    ``lo[j]``/``hi[j]``); update B, q, bal."""
    if to == SET_E:
        B, m, s = _elbow_add(B, K, Phi, kt, ktt, phit, n, d, Eidx, pos, m, j, jitter)
        ok = (s > 0.0) and np.isfinite(s)
        state[j] = SET_E
        dv = -v[j]
    else:
        m, piv = _elbow_drop(B, Eidx, pos, m, d, j)
        ok = np.isfinite(piv) and piv != 0.0
        dv = lo[j] if to == SET_L else hi[j]
        v[j] = dv
        state[j] = to
    _shift_sums(K, Phi, n, d, q, bal, j, dv, to == SET_E)
    qt += dv * kt[j]
    return B, m, qt, ok



@jit(error_model="numpy")
def _load_phi_row(Phi, phit, n, k, d, row):
    """row = Phi[k] (``phit`` for the test point ``k == n``); returns its squared norm."""
    nrm0 = 0.0
    for c in range(d):
        row[c] = _phi(Phi, phit, n, k, c)
        nrm0 += row[c] * row[c]
    return nrm0


@jit(error_model="numpy")
def _project_out(Q, r, d, row):
    """Gram-Schmidt sweep: remove from ``row`` its components along the orthonormal columns
    ``Q[:, :r]``, one column at a time (the rank test of ``_critical_dir``)."""
    for b in range(r):
        dot = 0.0
        for c in range(d):
            dot += Q[c, b] * row[c]
        for c in range(d):
            row[c] -= dot * Q[c, b]


@jit(error_model="numpy")
def _critical_dir(Phi, phit, n, d, Eidx, m, j):
    """Whether removing elbow point ``j`` makes ``Phi_E`` rank deficient, and if so the
    direction ``delta`` with ``Phi_k delta = 0`` (k in E, k != j) and ``Phi_j delta = 1``."""
    Q = np.zeros((d, d))
    r = np.int64(0)
    row = np.empty(d)
    for a in range(m):
        k = Eidx[a]
        if k == j:
            continue
        nrm0 = _load_phi_row(Phi, phit, n, k, d, row)
        _project_out(Q, r, d, row)
        nrm = 0.0
        for c in range(d):
            nrm += row[c] * row[c]
        if nrm > 1e-20 * nrm0 and nrm > 0.0 and r < d:
            nrm = np.sqrt(nrm)
            for c in range(d):
                Q[c, r] = row[c] / nrm
            r += 1
        if r == d:
            break
    delta = np.zeros(d)
    if r == d:
        return False, delta
    nrm0 = _load_phi_row(Phi, phit, n, j, d, delta)
    _project_out(Q, r, d, delta)
    nrm = 0.0
    pj = 0.0
    for c in range(d):
        nrm += delta[c] * delta[c]
        pj += _phi(Phi, phit, n, j, c) * delta[c]
    if nrm <= 1e-16 * nrm0 or pj == 0.0:
        return False, delta
    for c in range(d):
        delta[c] /= pj
    return True, delta


@jit(error_model="numpy")
def _pivot_enter(Phi, S, lam, state, w, n, d, delta, sigma, j):
    """Dual-simplex ratio test: moving ``u`` by ``sigma * tau * delta`` (tau >= 0), the first
    point of L u R (other than ``j``) whose residual reaches zero; -1 if none."""
    best = np.inf
    best_i = -1
    for i in range(n):
        si = state[i]
        if si == SET_E or i == j:
            continue
        p = 0.0
        for c in range(d):
            p += Phi[i, c] * delta[c]
        sp = sigma * p
        psi = lam * S[i] - w[i]
        if si == SET_L:
            if sp >= -1e-14 * (abs(p) + 1e-300):
                continue
        elif sp <= 1e-14 * (abs(p) + 1e-300):
            continue
        tau = psi / sp
        if tau < 0.0:
            tau = 0.0
        if tau < best:
            best = tau
            best_i = i
    return best_i


@jit(error_model="numpy")
def _exact_stage(K, Phi, S, lam, B, Eidx, m, d, n, bal, q, u, v, w, kt, phit, c, S_t, qt, rhs, x):
    """Exact (u, v_E, w) of an S-path stage: test dual fixed at ``c`` (stage 1, test not in E)
    or test in E with imputed score ``S_t`` (stage 2, ``c`` ignored)."""
    p = d + m
    t_in = False
    for a in range(m):
        if Eidx[a] == n:
            t_in = True
    for k in range(d):
        rhs[k] = bal[k] if t_in else bal[k] - c * phit[k]
    for a in range(m):
        j = Eidx[a]
        if j == n:
            rhs[d + a] = lam * S_t - qt
        elif t_in:
            rhs[d + a] = lam * S[j] - q[j]
        else:
            rhs[d + a] = lam * S[j] - q[j] - c * kt[j]
    _matvec(B, p, rhs, x)
    for k in range(d):
        u[k] = x[k]
    for a in range(m):
        v[Eidx[a]] = x[d + a]
    for i in range(n):
        acc = q[i]
        for k in range(d):
            acc += Phi[i, k] * u[k]
        w[i] = acc
    for a in range(m):
        j = Eidx[a]
        vj = v[j]
        if j == n:
            for i in range(n):
                w[i] += kt[i] * vj
        else:
            for i in range(n):
                w[i] += K[j, i] * vj
    if not t_in:
        for i in range(n):
            w[i] += c * kt[i]


@jit(error_model="numpy")
def _s_event(
    B, K, Phi, S, kt, ktt, phit, n, d, lo, hi, lam, Eidx, pos, m, state, v, q, bal, w, u, j, to,
    jitter, qt, c, S_t, rhs, x,
):
    """Apply one S-path event; a rank-critical elbow point leaves through a dual-simplex pivot
    (the entering point found by a ratio test on the freed linear direction). Returns
    ``(B, m, qt, ok, pivoted)``; ``ok`` False means a refactorisation is due (or, with
    ``m < 0``, that the pivot found no entering point)."""
    if to != SET_E:
        crit, delta = _critical_dir(Phi, phit, n, d, Eidx, m, j)
        if crit:
            sigma = -1.0 if to == SET_R else 1.0
            ii = _pivot_enter(Phi, S, lam, state, w, n, d, delta, sigma, j)
            if ii < 0:
                return B, -1, qt, False, True
            B, m, qt, ok1 = _apply_event(
                B, K, Phi, kt, ktt, phit, n, d, lo, hi, Eidx, pos, m, state, v, q, bal, ii,
                np.int64(SET_E), jitter, qt,
            )
            B, m, qt, ok2 = _apply_event(
                B, K, Phi, kt, ktt, phit, n, d, lo, hi, Eidx, pos, m, state, v, q, bal, j, to,
                jitter, qt,
            )
            if ok1 and ok2:
                _exact_stage(K, Phi, S, lam, B, Eidx, m, d, n, bal, q, u, v, w, kt, phit, c,
                             S_t, qt, rhs, x)
            return B, m, qt, ok1 and ok2, True
    B, m, qt, ok = _apply_event(
        B, K, Phi, kt, ktt, phit, n, d, lo, hi, Eidx, pos, m, state, v, q, bal, j, to, jitter, qt,
    )
    return B, m, qt, ok, False


@jit(error_model="numpy")
def _s_event_step(
    B, K, Phi, S, kt, ktt, phit, n, d, lo, hi, lam, Eidx, pos, m, state, v, q, bal, w, u, j, to,
    jitter, qt, c, S_t, rhs, x, steps, updates, max_steps, refactor_every,
):
    """``_s_event`` plus the per-event bookkeeping of both S-path stages: singular pivot, step
    count and cap, and the periodic refactorisation with an exact re-solve at ``(c, S_t)``.
    Returns ``(B, m, qt, status, steps, updates)``; the caller stops unless status is 0."""
    B, m, qt, ok, _ = _s_event(
        B, K, Phi, S, kt, ktt, phit, n, d, lo, hi, lam, Eidx, pos, m, state, v, q, bal, w, u, j,
        to, jitter, qt, c, S_t, rhs, x,
    )
    if m < 0:
        return B, m, qt, STATUS_SINGULAR, steps, updates
    steps += 1
    updates += 1
    if not ok:
        updates = refactor_every
    if steps >= max_steps:
        return B, m, qt, STATUS_STEP_CAP, steps, updates
    if updates >= refactor_every:
        updates = 0
        if not _refactor(B, Eidx, m, d, K, kt, ktt, Phi, phit, n, jitter):
            return B, m, qt, STATUS_SINGULAR, steps, updates
        _exact_stage(K, Phi, S, lam, B, Eidx, m, d, n, bal, q, u, v, w, kt, phit, c, S_t, qt,
                     rhs, x)
    return B, m, qt, STATUS_OK, steps, updates


@jit(error_model="numpy")
def s_path_batch(
    K, Phi, S, lo, hi, lam, state0, Eidx0, m0, B0, v0, u0, q0, bal0, w0, Kt, ktt, Phit, U,
    max_steps, jitter, refactor_every, t_lo, t_hi, cut, status, nsteps, mean_elbow, s0, clo, chi,
):
    """``s_path_one`` for rows ``t_lo <= t < t_hi`` of ``Kt`` (n_test, n), written into the
    output arrays (callers run disjoint ranges in threads; the function releases the GIL)."""
    empty = np.zeros(0)
    for t in range(t_lo, t_hi):
        res = s_path_one(
            K, Phi, S, lo, hi, lam, state0, Eidx0, m0, B0, v0, u0, q0, bal0, w0, Kt[t],
            ktt[t], Phit[t], U[t], max_steps, jitter, refactor_every, empty, empty, clo, chi,
        )
        cut[t] = res[0]
        status[t] = res[1]
        nsteps[t] = res[2]
        mean_elbow[t] = res[3] / max(res[2] + 2, 1)
        s0[t] = res[5]


@jit(error_model="numpy")
def row_hash(M, r):
    """``out[i] = sum_j M[i, j] r[j]`` summed in a fixed order: identical rows give identical
    values bit for bit (a BLAS product need not), so it can key duplicate rows."""
    n, p = M.shape
    out = np.empty(n)
    for i in range(n):
        acc = 0.0
        for j in range(p):
            acc += M[i, j] * r[j]
        out[i] = acc
    return out
