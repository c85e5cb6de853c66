"""The exact regularisation (lambda) path, from ``lam = inf`` downwards."""

from collections import namedtuple

import numpy as np

from .._numba import jit
from ._elbow import (
    M, SET_E, SET_L, SET_R, SLOPE_RTOL, STATUS_CYCLING, STATUS_OK, STATUS_SINGULAR,
    STATUS_STEP_CAP, advance, apply_event, exact_state, fit_dir, fit_from_coef, matvec,
    new_state, refactor, factor_expand, factor_gather, rank_of as _rank,
)
from ._events import scan_events

# validation data of the path: kernel (n, n_val), features (n_val, d), scores, weights
Validation = namedtuple("Validation", ["K", "Phi", "S", "W"])

# columns of the breakpoint records
REC_LAM = 0
REC_SIC = 1
REC_LOSS = 2
REC_VLOSS = 3
REC_ELBOW = 4


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pinball(r, tau):
    if r > 0:
        return tau * r
    return (tau - 1.0) * r


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _record(rec, r, P, E, V, qv, tau, lam, logn_2n):
    """Breakpoint ``r``: lam, SIC, training pinball loss, validation pinball loss (NaN without
    validation data) and ``|E|``, each point weighted by its multiplicity (the width
    ``hi - lo`` of its box; ``V.W`` for validation points). Returns the SIC."""
    S = P.S
    lo = P.lo
    hi = P.hi
    n, d = P.Phi.shape
    m = E.ints[M]
    w = E.w
    state = E.state
    u = E.u
    v = E.v
    Eidx = E.Eidx
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
    Kval = V.K
    Phival = V.Phi
    Sval = V.S
    Wval = V.W
    nv = Sval.shape[0]
    if nv > 0:
        vloss = 0.0
        vsum = 0.0
        for i in range(nv):
            acc = qv[i]
            for k in range(d):
                acc += Phival[i, k] * u[k]
            for a in range(m):
                j = Eidx[a]
                acc += Kval[j, i] * v[j]
            vloss += Wval[i] * _pinball(Sval[i] - acc / lam, tau)
            vsum += Wval[i]
        vloss /= vsum
    rec[r, REC_LAM] = lam
    rec[r, REC_SIC] = sic
    rec[r, REC_LOSS] = loss
    rec[r, REC_VLOSS] = vloss
    rec[r, REC_ELBOW] = m
    return sic


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _grow_rows(a, cap):
    """``a`` (rows, cols) copied into the first rows of a new (cap, cols) array."""
    out = np.zeros((cap, a.shape[1]))
    for i in range(a.shape[0]):
        for k in range(a.shape[1]):
            out[i, k] = a[i, k]
    return out


@jit(error_model="numpy", no_cfunc_wrapper=True)
def lambda_path_core(P, V, state_in, v_in, tau, lam_stop, lam_min, lam_min_ratio, max_steps,
                     refactor_every, store_path):
    """Exact regularisation path of the kernel quantile regression from ``lam = inf`` downwards.

    ``P`` is the :class:`~._elbow.Problem` (no test point): per-point boxes ``lo``/``hi`` (a
    point standing for ``w`` identical rows has the box ``w [lo, hi]``; its loss counts ``w``
    times). ``V`` the :class:`Validation` data (zero-sized to skip). ``state_in``/``v_in`` is the
    linear-quantile-regression (``lam -> inf``) solution whose elbow has zero residual. The path
    stops at ``max(lam_stop, lam_min, lam_min_ratio * lam_0)`` (lam_0 is the start of the first
    segment along which the duals move), when no event is left, or after ``max_steps`` events
    (status 1). A breakpoint is recorded at the start of every segment of positive length
    (zero-length degenerate steps are merged into one breakpoint) and at the stop.

    Returns ``(rec, best_state, best_v, best_u, state, v, u, v_path, u_path, info, lams)``:
    ``rec`` (n_rec, 5) the breakpoints (columns ``REC_*``), the sets, duals and ``u = lam eta``
    at the SIC minimum and at the end, ``v_path``/``u_path`` the duals and ``u / lam`` at every
    breakpoint (``store_path``), ``info = [n_rec, status, n_steps]`` and
    ``lams = [best_lam, final_lam]``.
    """
    K = P.K
    Phi = P.Phi
    S = P.S
    n, d = Phi.shape
    Kval = V.K
    nv = V.S.shape[0]
    E = new_state(state_in, v_in, d, np.int64(0), _rank(K))
    Eidx = E.Eidx
    state = E.state
    v = E.v
    u = E.u
    w = E.w
    q = E.q
    bal = E.bal
    rhs = E.rhs
    x = E.x
    h = E.dw
    m = E.ints[M]
    B = np.zeros((d + m + 32, d + m + 32))
    status = STATUS_OK
    if not refactor(B, P, E):
        status = STATUS_SINGULAR

    qv = np.zeros(nv)
    factored = K.shape[1] != n
    g = np.zeros(K.shape[1] if factored else 0)
    for j in range(n):
        if state[j] != SET_E:
            vj = v[j]
            if factored:
                factor_gather(K, j, vj, g)
            else:
                for i in range(n):
                    q[i] += vj * K[j, i]
            for k in range(d):
                bal[k] -= vj * Phi[j, k]
            for i in range(nv):
                qv[i] += vj * Kval[j, i]
    if factored:
        factor_expand(K, g, q)

    # records
    cap_rec = 64
    rec = np.zeros((cap_rec, 5))
    v_path = np.zeros((cap_rec if store_path else 0, n))
    u_path = np.zeros((cap_rec if store_path else 0, d))
    n_rec = np.int64(0)
    best_sic = np.inf
    best = new_state(state, v, d, np.int64(0), np.int64(0))
    best_lam = np.nan

    lam = np.inf
    n_eff = 0.0
    lo = P.lo
    hi = P.hi
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
        for k in range(d):
            rhs[k] = 0.0
        for a in range(m):
            rhs[d + a] = S[Eidx[a]]
        matvec(B, p, rhs, x)
        bu = np.zeros(d)
        bv = np.zeros(m)
        for k in range(d):
            bu[k] = x[k]
        for a in range(m):
            bv[a] = x[d + a]
        for k in range(d):
            rhs[k] = bal[k]
        for a in range(m):
            rhs[d + a] = -q[Eidx[a]]
        matvec(B, p, rhs, x)
        au = np.zeros(d)
        for k in range(d):
            au[k] = x[k]
        for a in range(m):
            v[Eidx[a]] = x[d + a]
        w0 = np.zeros(n)
        fit_from_coef(P, E, au, w0)
        for i in range(n):
            acc = 0.0
            for k in range(d):
                acc += Phi[i, k] * bu[k]
            h[i] = acc
        if factored:
            for k in range(g.shape[0]):
                g[k] = 0.0
            for a in range(m):
                factor_gather(K, Eidx[a], bv[a], g)
            factor_expand(K, g, h)
        else:
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
            tol = SLOPE_RTOL * (abs(S[i]) + abs(h[i]) + 1e-300)
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
        # ---- direction x = d(u, v_E)/dlam = B [0; S_E], h = dw/dlam, then the event scan
        m = E.ints[M]
        for k in range(d):
            rhs[k] = 0.0
        for a in range(m):
            rhs[d + a] = S[Eidx[a]]
        matvec(B, d + m, rhs, x)
        fit_dir(P, E, x, h)
        best_step, best_i, best_to = scan_events(P, E, lam, h, -1.0)
        if not anchored and m > d and best_step > 0.0:
            anchored = True
            lam_floor = max(lam_floor, lam_min_ratio * lam)
        delta_stop = lam - lam_floor
        stopping = (delta_stop <= best_step) or best_i < 0 or steps >= max_steps
        if stopping and steps >= max_steps and not (delta_stop <= best_step):
            status = STATUS_STEP_CAP
        # ---- record a breakpoint at the start of a positive-length segment
        if best_step > 0.0 or stopping:
            if n_rec == rec.shape[0]:
                rec = _grow_rows(rec, 2 * n_rec)
                if store_path:
                    v_path = _grow_rows(v_path, 2 * n_rec)
                    u_path = _grow_rows(u_path, 2 * n_rec)
            sic = _record(rec, n_rec, P, E, V, qv, tau, lam, logn_2n)
            if store_path:
                for i in range(n):
                    v_path[n_rec, i] = v[i]
                for k in range(d):
                    u_path[n_rec, k] = u[k] / lam
            n_rec += 1
            if sic < best_sic:
                best_sic = sic
                b_state = best.state
                b_v = best.v
                b_u = best.u
                for i in range(n):
                    b_state[i] = state[i]
                    b_v[i] = v[i]
                for k in range(d):
                    b_u[k] = u[k]
                best_lam = lam
        if stopping:
            if delta_stop <= best_step and delta_stop > 0.0 and lam_stop > 0.0:
                # advance exactly to lam_stop (the caller asked for the state there)
                advance(E, d, x, h, -delta_stop)
                lam = lam_floor
            break
        # ---- advance along the segment
        if best_step > 0.0:
            advance(E, d, x, h, -best_step)
            lam -= best_step
        if best_step <= 1e-13 * lam:
            zero_run += 1
            if zero_run > 4 * n + 50:
                status = STATUS_CYCLING
                break
        else:
            zero_run = np.int64(0)
        # ---- apply the event, then re-solve (u, v_E) exactly from the sets, refactorising
        # every refactor_every updates (or at once after a bad pivot)
        B, ok, dv = apply_event(B, P, E, best_i, best_to)
        for i in range(nv):
            qv[i] += dv * Kval[best_i, i]
        if not ok:
            updates = refactor_every
        steps += 1
        updates += 1
        if updates >= refactor_every:
            updates = np.int64(0)
            if not refactor(B, P, E):
                status = STATUS_SINGULAR
                break
            exact_state(B, P, E, lam)
            fit_from_coef(P, E, u, w)
        else:
            exact_state(B, P, E, lam)

    info = np.zeros(3, np.int64)
    info[0] = n_rec
    info[1] = status
    info[2] = steps
    lams = np.zeros(2)
    lams[0] = best_lam
    lams[1] = lam
    return (rec, best.state, best.v, best.u, state, v, u, v_path, u_path, info, lams)
