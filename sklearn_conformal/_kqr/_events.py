"""The event scan shared by the lambda path and both stages of the S-path."""

import numpy as np

from .._numba import jit
from ._elbow import M, SET_E, SET_L, SET_R, SLOPE_RTOL


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def absmax(x, p):
    """max(0, |x[0]|, ..., |x[p-1]|): the scale of a direction, for relative slope tolerances."""
    xmax = 0.0
    for a in range(p):
        xmax = max(xmax, abs(x[a]))
    return xmax


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def scan_events(P, E, lam, dw, sign):
    """Smallest step (>= 0) along the current segment to the next calibration event: an elbow
    dual reaching its bound (``to`` L or R) or a residual of L u R reaching zero (``to`` E).
    Returns ``(step, point, to)``; ``(inf, -1, SET_E)`` when no event is ahead.

    Along a step, elbow duals move by ``sign * x_v`` (``E.x``) and the residual numerators
    ``lam S_i - w_i`` by ``-slope_i``. S-path (``sign = 1``): ``slope = dw``, the rate of ``w``.
    Lambda path (``sign = -1``, the step a decrease of lam): ``slope = S - dw`` with ``dw`` the
    rate of ``w`` per unit increase of lam. The test point (index ``n``) is never an event.
    """
    S = P.S
    lo = P.lo
    hi = P.hi
    n, d = P.Phi.shape
    m = E.ints[M]
    Eidx = E.Eidx
    v = E.v
    w = E.w
    state = E.state
    x = E.x
    lam_path = sign < 0.0
    best = np.inf
    best_i = np.int64(-1)
    best_to = SET_E
    tol_e = SLOPE_RTOL * absmax(x, d + m)
    for a in range(m):
        j = Eidx[a]
        if j == n:
            continue
        rate = sign * x[d + a]
        if rate > tol_e:
            st = (hi[j] - v[j]) / rate
            to = SET_R
        elif rate < -tol_e:
            st = (lo[j] - v[j]) / rate
            to = SET_L
        else:
            continue
        if st < 0.0:
            st = 0.0
        if st < best:
            best = st
            best_i = j
            best_to = to
    for i in range(n):
        si = state[i]
        if si == SET_E:
            continue
        if lam_path:
            slope = S[i] - dw[i]
            tol = SLOPE_RTOL * (abs(S[i]) + abs(dw[i]) + 1e-300)
        else:
            slope = dw[i]
            tol = SLOPE_RTOL * (abs(w[i]) + abs(lam * S[i]) + abs(slope) + 1e-300)
        if si == SET_L:
            if slope >= -tol:
                continue
        elif slope <= tol:
            continue
        st = (lam * S[i] - w[i]) / slope
        if st < 0.0:
            st = 0.0
        if st < best:
            best = st
            best_i = i
            best_to = SET_E
    return best, best_i, best_to
