"""Independent dense QP reference for the kernel quantile regression dual (cvxpy + CLARABEL).

Solves  max_v S'v - v'(K + jitter I)v / (2 lam)  s.t.  -alpha <= v <= 1 - alpha,  Phi'v = 0
directly, with no path logic, so it can check both the lambda path and the S path.
"""

import cvxpy as cp
import numpy as np


def _sqrt_psd(K, jitter):
    w, V = np.linalg.eigh((K + K.T) / 2 + jitter * np.eye(K.shape[0]))
    return V * np.sqrt(np.clip(w, 0.0, None))


def solve_dual(K, Phi, S, alpha, lam, jitter=1e-10):
    """Dual solution ``v`` of the kernel quantile regression at ``lam``."""
    n = S.shape[0]
    R = _sqrt_psd(K, jitter)
    v = cp.Variable(n)
    cons = [v >= -alpha, v <= 1 - alpha]
    if Phi.shape[1]:
        cons.append(Phi.T @ v == 0)
    obj = cp.Maximize(S @ v - cp.sum_squares(R.T @ v) / (2 * lam))
    prob = cp.Problem(obj, cons)
    prob.solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12,
        tol_ktratio=1e-10, max_iter=500,
    )
    return np.asarray(v.value, dtype=float)


def qp_test_dual(K_aug, Phi_aug, S_cal, S_test, alpha, lam, jitter=1e-10):
    """Dual weight of the test point (last row) when its imputed score is ``S_test``."""
    S = np.append(S_cal, S_test)
    return solve_dual(K_aug, Phi_aug, S, alpha, lam, jitter)[-1]


def bisect_cutoff(K_aug, Phi_aug, S_cal, alpha, lam, U, lo, hi, jitter=1e-10, tol=1e-9,
                  max_iter=80):
    """``sup{S : v_t(S) <= U}`` by bisection on ``[lo, hi]`` (``v_t`` is non-decreasing)."""
    for _ in range(max_iter):
        if hi - lo <= tol * max(1.0, abs(hi)):
            break
        mid = 0.5 * (lo + hi)
        if qp_test_dual(K_aug, Phi_aug, S_cal, mid, alpha, lam, jitter) <= U:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
