"""The exact S-path: for each test point, the path in its imputed score ``S`` at a fixed ``lam``.

The cutoff is ``S* = sup{S : v_t(S) <= U}`` (SpeedCP; Gibbs, Cherian & Candes). Stage 1 moves
the (fixed) test dual ``c`` from 0 to ``lo`` with exact event handling; the test point then
joins the elbow at ``S0 = g(x_t)`` and stage 2 increases its imputed score until ``v_t``
reaches ``U`` (interpolated inside the segment).
"""

import numpy as np

from .._numba import jit
from ._elbow import (
    M, QT, SET_E, SET_L, SET_R, SLOPE_RTOL, STATUS_CYCLING, STATUS_OK, STATUS_SINGULAR,
    STATUS_STEP_CAP, STEPS, UPDATES, Problem, advance, apply_event, elbow_add, exact_state,
    fit_dir, fit_from_coef, matvec, new_state, phi, refactor, factor_expand, factor_gather, flush_q, rank_of as _rank,
)
from ._events import absmax, scan_events

# columns of the per-test-point outputs of s_path_batch
OUT_CUT = 0
OUT_MEAN_ELBOW = 1
OUT_S0 = 2
OUT_STATUS = 0
OUT_STEPS = 1


@jit(error_model="numpy", no_cfunc_wrapper=True)
def prepare_state(P, lam, state_in, v_in):
    """Exact solution at ``lam`` for the sets ``state_in``: ``(ok, B, E)`` with ``E`` the
    :class:`~._elbow.PathState` (``u``, ``v``, ``q``, ``bal``, ``w`` solved from the sets)."""
    K = P.K
    Phi = P.Phi
    n, d = Phi.shape
    E = new_state(state_in, v_in, d, np.int64(0), _rank(K))
    m = E.ints[M]
    B = np.zeros((d + m + 8, d + m + 8))
    ok = refactor(B, P, E)
    state = E.state
    v = E.v
    q = E.q
    bal = E.bal
    factored = K.shape[1] != n
    g = np.zeros(K.shape[1] if factored else 0)
    for j in range(n):
        if state[j] != SET_E:
            vj = v[j]
            if vj != 0.0:
                if factored:
                    factor_gather(K, j, vj, g)
                else:
                    for i in range(n):
                        q[i] += vj * K[j, i]
            for k in range(d):
                bal[k] -= vj * Phi[j, k]
    if factored:
        factor_expand(K, g, q)
    if ok:
        exact_state(B, P, E, lam)
        fit_from_coef(P, E, E.u, E.w)
    return ok, B, E


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def critical_dir(P, E, j):
    """Whether removing elbow point ``j`` makes ``Phi_E`` rank deficient, and if so the
    direction ``delta`` with ``Phi_k delta = 0`` (k in E, k != j) and ``Phi_j delta = 1``
    (a Gram-Schmidt rank test over the other elbow rows)."""
    Phi = P.Phi
    phit = P.phit
    Eidx = E.Eidx
    d = Phi.shape[1]
    m = E.ints[M]
    Q = np.zeros((d, d))
    r = np.int64(0)
    row = np.zeros(d)
    delta = np.zeros(d)
    for a in range(m + 1):
        # the other elbow rows, then (a == m) the row of j itself into delta
        if a < m:
            k = Eidx[a]
            if k == j:
                continue
            vec = row
        else:
            if r == d:
                return False, delta
            k = j
            vec = delta
        nrm0 = 0.0
        for c in range(d):
            vec[c] = phi(Phi, phit, k, c)
            nrm0 += vec[c] * vec[c]
        for b in range(r):
            dot = 0.0
            for c in range(d):
                dot += Q[c, b] * vec[c]
            for c in range(d):
                vec[c] -= dot * Q[c, b]
        nrm = 0.0
        for c in range(d):
            nrm += vec[c] * vec[c]
        if a == m:
            pj = 0.0
            for c in range(d):
                pj += phi(Phi, phit, j, c) * delta[c]
            if nrm <= 1e-16 * nrm0 or pj == 0.0:
                return False, delta
            for c in range(d):
                delta[c] /= pj
            return True, delta
        if nrm > 1e-20 * nrm0 and nrm > 0.0 and r < d:
            nrm = np.sqrt(nrm)
            for c in range(d):
                Q[c, r] = row[c] / nrm
            r += 1
        if r == d:
            return False, delta
    return False, delta


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _exact_stage(B, P, E, lam, c, S_t):
    """Exact (u, v_E, w) of an S-path stage: test dual fixed at ``c`` (stage 1, test not in E)
    or test in E with imputed score ``S_t`` (stage 2, ``c`` ignored)."""
    flush_q(P, E)
    K = P.K
    Phi = P.Phi
    S = P.S
    kt = P.kt
    n, d = Phi.shape
    m = E.ints[M]
    Eidx = E.Eidx
    rhs = E.rhs
    x = E.x
    u = E.u
    v = E.v
    w = E.w
    q = E.q
    qt = E.flts[QT]
    t_in = E.pos[n] >= 0
    bal = E.bal
    phit = P.phit
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
    matvec(B, d + m, rhs, x)
    for k in range(d):
        u[k] = x[k]
    for a in range(m):
        v[Eidx[a]] = x[d + a]
    for i in range(n):
        acc = q[i]
        for k in range(d):
            acc += Phi[i, k] * u[k]
        w[i] = acc
    factored = K.shape[1] != n
    g = np.zeros(K.shape[1] if factored else 0)
    for a in range(m):
        j = Eidx[a]
        vj = v[j]
        if j == n:
            for i in range(n):
                w[i] += kt[i] * vj
        elif factored:
            factor_gather(K, j, vj, g)
        else:
            for i in range(n):
                w[i] += K[j, i] * vj
    if factored:
        factor_expand(K, g, w)
    if not t_in:
        for i in range(n):
            w[i] += c * kt[i]


@jit(error_model="numpy", no_cfunc_wrapper=True)
def s_path_batch(P0, E0, B0, lam, lo, Kt, ktt, Phit, U, max_steps, refactor_every, t_lo, t_hi,
                 out_f, out_i, trace_S, trace_v):
    """Cutoffs ``S* = sup{S : v_t(S) <= U[t]}`` (``+inf`` if never reached) for the test rows
    ``t_lo <= t < t_hi`` of ``Kt`` (n_test, n), ``ktt``, ``Phit``, ``U``.

    ``P0`` is the calibration :class:`~._elbow.Problem` (boxes ``lo``/``hi``, no test point),
    ``E0``/``B0`` the solution at ``lam`` from :func:`prepare_state`, ``lo`` the lower bound of
    the test dual. Writes ``out_f[t] = (cutoff, mean elbow size, S0)`` and ``out_i[t] =
    (status, n_steps)`` (callers run disjoint ranges in threads; the function releases the
    GIL). ``trace_S``/``trace_v`` (length >= max_steps + 2, or 0 to skip) receive ``(S, v_t)``
    at every stage-2 breakpoint of the last row; returns how many.
    """
    n, d = P0.Phi.shape
    S = P0.S
    Phi = P0.Phi
    m0 = E0.ints[M]
    p0 = d + m0
    u0 = E0.u
    bal0 = E0.bal
    q0 = E0.q
    w0 = E0.w
    n_trace = np.int64(0)
    for t in range(t_lo, t_hi):
        P = Problem(P0.K, P0.Phi, S, P0.lo, P0.hi, Kt[t], ktt[t], Phit[t], P0.jitter)
        kt = P.kt
        phit = P.phit
        E = new_state(E0.state, E0.v, d, np.int64(1), E0.pend.shape[0])
        state = E.state
        v = E.v
        u = E.u
        w = E.w
        rhs = E.rhs
        x = E.x
        dw = E.dw
        Eidx = E.Eidx
        ints = E.ints
        bal = E.bal
        q = E.q
        for k in range(d):
            u[k] = u0[k]
            bal[k] = bal0[k]
        for i in range(n):
            q[i] = q0[i]
            w[i] = w0[i]
        B = np.zeros((p0 + 16, p0 + 16))
        for a in range(p0):
            for b in range(p0):
                B[a, b] = B0[a, b]
        qt = 0.0  # sum over L u R of kt_j v_j (q at the test point)
        for j in range(n):
            if state[j] != SET_E:
                qt += kt[j] * v[j]
        E.flts[QT] = qt
        status = STATUS_OK
        zero_run = np.int64(0)
        sum_m = np.int64(0)
        n_trace = np.int64(0)
        cutoff = np.nan
        S0 = np.nan
        S_cur = 0.0
        # stage 1: the test dual c goes from 0 to lo (t = -c from 0 to t_end = -lo), the test
        # point outside E; stage 2: the test point in E, its imputed score S_cur increasing
        stage2 = False
        t_done = 0.0
        t_end = -lo
        while True:
            m = ints[M]
            p = d + m
            # ---- direction of the segment (per unit t, or per unit S_t)
            if not stage2:
                for k in range(d):
                    rhs[k] = phit[k]
                for a in range(m):
                    rhs[d + a] = kt[Eidx[a]]
                matvec(B, p, rhs, x)
                fit_dir(P, E, x, dw)
                for i in range(n):
                    dw[i] -= kt[i]
            else:
                pt = E.pos[n]
                # a test point that alone carries a direction of Phi (e.g. the only elbow
                # point of its group) has its dual fixed by the balance constraint: then
                # exactly dv = 0 and only u moves, along that direction (computed directly,
                # free of round-off)
                t_crit, delta_t = critical_dir(P, E, n)
                if t_crit:
                    for k in range(d):
                        x[k] = lam * delta_t[k]
                    for a in range(m):
                        x[d + a] = 0.0
                else:
                    for a in range(p):
                        x[a] = lam * B[a, d + pt]
                fit_dir(P, E, x, dw)
                if n_trace < trace_S.shape[0]:
                    trace_S[n_trace] = S_cur
                    trace_v[n_trace] = v[n]
                    n_trace += 1
            best, best_i, best_to = scan_events(P, E, lam, dw, 1.0)
            sum_m += m
            # ---- advance to the next event (or the end of the stage)
            if not stage2:
                remaining = t_end - t_done
                step = remaining if remaining <= best else best
                if step > 0.0:
                    advance(E, d, x, dw, step)
                    t_done += step
                if remaining <= best:
                    # join: t enters E with v_t = lo at S0 = g(x_t)
                    acc = P.ktt * lo
                    for k in range(d):
                        acc += phit[k] * u[k]
                    for j in range(n):
                        acc += kt[j] * v[j]
                    S_cur = acc / lam
                    S0 = S_cur
                    B, _ = elbow_add(B, P, E, n)
                    v[n] = lo
                    zero_run = np.int64(0)
                    stage2 = True
                    continue
                is_zero = best <= 1e-13 * (abs(t_end) + 1.0)
                c = -t_done
            else:
                dvt = x[d + pt]
                if dvt > SLOPE_RTOL * absmax(x, p):
                    dU = (U[t] - v[n]) / dvt
                    if dU < 0.0:
                        dU = 0.0
                else:
                    dU = np.inf
                if dU <= best:
                    if np.isfinite(dU):
                        cutoff = S_cur + dU
                        if n_trace < trace_S.shape[0]:
                            trace_S[n_trace] = cutoff
                            trace_v[n_trace] = U[t]
                            n_trace += 1
                    else:
                        cutoff = np.inf
                    break
                step = best
                if step > 0.0:
                    advance(E, d, x, dw, step)
                    S_cur += step
                is_zero = not (step > 0.0)
                c = 0.0
            if is_zero:
                zero_run += 1
                if zero_run > 4 * n + 50:
                    status = STATUS_CYCLING
                    break
            else:
                zero_run = np.int64(0)
            # ---- the event. A rank-critical elbow point leaves through a dual-simplex pivot:
            # moving u along the freed linear direction, the first point of L u R whose
            # residual reaches zero enters E in its place
            pivot_i = np.int64(-1)
            if best_to != SET_E:
                crit, delta = critical_dir(P, E, best_i)
                if crit:
                    # ratio test: moving u by sigma * r * delta (r >= 0), the first point of
                    # L u R (other than best_i) whose residual reaches zero
                    sigma = -1.0 if best_to == SET_R else 1.0
                    r_best = np.inf
                    for i in range(n):
                        si = state[i]
                        if si == SET_E or i == best_i:
                            continue
                        pr = 0.0
                        for k in range(d):
                            pr += Phi[i, k] * delta[k]
                        sp = sigma * pr
                        psi = lam * S[i] - w[i]
                        if si == SET_L:
                            if sp >= -1e-14 * (abs(pr) + 1e-300):
                                continue
                        elif sp <= 1e-14 * (abs(pr) + 1e-300):
                            continue
                        r = psi / sp
                        if r < 0.0:
                            r = 0.0
                        if r < r_best:
                            r_best = r
                            pivot_i = i
                    if pivot_i < 0:
                        status = STATUS_SINGULAR
                        break
            ok = True
            for e in range(2 if pivot_i >= 0 else 1):
                if pivot_i >= 0 and e == 0:
                    jj = pivot_i
                    to = np.int64(SET_E)
                else:
                    jj = best_i
                    to = best_to
                B, ok_e, _ = apply_event(B, P, E, jj, to)
                ok = ok and ok_e
            # ---- bookkeeping: step cap, refactorisation every refactor_every updates (or at
            # once after a bad pivot), exact re-solve after a pivot or a refactorisation
            ints[STEPS] += 1
            ints[UPDATES] += 1
            if not ok:
                ints[UPDATES] = refactor_every
            if ints[STEPS] >= max_steps:
                status = STATUS_STEP_CAP
                break
            resolve = pivot_i >= 0 and ok
            if ints[UPDATES] >= refactor_every:
                ints[UPDATES] = 0
                if not refactor(B, P, E):
                    status = STATUS_SINGULAR
                    break
                resolve = True
            if resolve:
                _exact_stage(B, P, E, lam, c, S_cur if stage2 else 0.0)
        steps = ints[STEPS]
        if status != STATUS_OK:
            cutoff = np.nan
        out_f[t, OUT_CUT] = cutoff
        out_f[t, OUT_MEAN_ELBOW] = sum_m / max(steps + 2, 1)
        out_f[t, OUT_S0] = S0
        out_i[t, OUT_STATUS] = status
        out_i[t, OUT_STEPS] = steps
    return n_trace
