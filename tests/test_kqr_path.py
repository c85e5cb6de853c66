"""Exact lambda-path and S-path solvers against an independent dense QP (cvxpy + CLARABEL)."""

import numpy as np
import pytest

from sklearn_conformal._kqr import (
    PathError,
    SPathSolver,
    break_ties,
    in_row_space,
    kernel_matrix,
    lambda_path,
    reduce_phi,
)

from ._qp_reference import bisect_cutoff, solve_dual, qp_test_dual

pytest.importorskip("cvxpy")

ALPHA = 0.1
GAMMA = 0.5


def onehot(groups, n_groups):
    cols = [np.ones(len(groups))] + [(groups == k).astype(float) for k in range(1, n_groups)]
    return np.column_stack(cols)


def make_problem(kind, seed=0):
    """(X, S, Phi_raw, X_test, Phi_test_raw) for the named test problem."""
    rng = np.random.default_rng(seed)
    n = 40
    if kind.startswith("n="):
        n = int(kind[2:])
    X = rng.normal(size=(n, 2))
    S = np.abs(rng.normal(size=n)) * (1 + 0.5 * X[:, 0] ** 2)
    groups = np.zeros(n, dtype=int)
    n_groups = 1
    X_test = rng.normal(size=(4, 2))
    g_test = np.zeros(4, dtype=int)
    if kind == "groups":
        n_groups = 3
        groups = rng.integers(0, 3, size=n)
        g_test = np.array([0, 1, 2, 1])
    elif kind == "ties":
        S = np.round(S, 1)
    elif kind == "duplicates":
        X[10:15] = X[0]
        S[10:12] = S[0]
        X_test[3] = X[20]
    elif kind == "singleton":
        n_groups = 3
        groups = rng.integers(0, 2, size=n)
        groups[5] = 2
        g_test = np.array([0, 1, 0, 1])
    elif kind == "constant":
        S = np.full(n, 0.7)
    return X, S, onehot(groups, n_groups), X_test, onehot(g_test, n_groups)


def reduced(Phi_raw, Phi_test_raw):
    V = reduce_phi(Phi_raw)
    return Phi_raw @ V, Phi_test_raw @ V, V


GENERIC = ["generic", "groups", "ties", "singleton", "n=2", "n=3", "n=5"]
DEGENERATE = ["duplicates", "constant"]  # duals not unique: compare fits


def fit_values(K, Phi, S, v, lam, alpha=ALPHA):
    """In-sample fit from duals alone (eta from the elbow by least squares)."""
    f = K @ v / lam
    elbow = (v > -alpha + 1e-7) & (v < 1 - alpha - 1e-7)
    if not np.any(elbow):
        return None
    eta = np.linalg.lstsq(Phi[elbow], S[elbow] - f[elbow], rcond=None)[0]
    return Phi @ eta + f


@pytest.mark.parametrize("kind", GENERIC + DEGENERATE)
def test_lambda_path_duals_match_qp(kind):
    X, S, Phi_raw, _, _ = make_problem(kind)
    K = kernel_matrix(X, X, "rbf", GAMMA)
    Phi, _, _ = reduced(Phi_raw, Phi_raw[:1])
    S2 = break_ties(S)
    path = lambda_path(K, Phi, S2, ALPHA, store_path=True, lam_min_ratio=1e-3)
    assert not path.truncated
    lams = path.lambdas
    assert np.all(np.diff(lams) <= 0)
    rng = np.random.default_rng(1)
    if kind == "constant":
        # every point fits exactly: the duals are not identified (the whole path lies at
        # lam ~ 1e9 and beyond, set by the tie-breaking perturbation); check the fit
        for k in range(lams.size):
            g = Phi @ path.eta_path[k] + K @ path.v_path[k] / lams[k]
            np.testing.assert_allclose(g, S, atol=1e-6)
        return
    # between breakpoints v is affine in lam: interpolate the path at random segment points and
    # compare with the QP there (at a breakpoint itself the entering point has zero residual,
    # strict complementarity fails and an interior-point QP is only ~sqrt(tol) accurate)
    n_seg = lams.size - 1
    pick = rng.choice(n_seg, size=min(4, n_seg), replace=False) if n_seg > 0 else []
    for k in pick:
        t = rng.uniform(0.2, 0.8)
        lam = (1 - t) * lams[k] + t * lams[k + 1]
        v = (1 - t) * path.v_path[k] + t * path.v_path[k + 1]
        ftol = 1e-9
        assert np.all(v >= -ALPHA - ftol) and np.all(v <= 1 - ALPHA + ftol)
        np.testing.assert_allclose(Phi.T @ v, 0, atol=100 * ftol)
        v_qp = solve_dual(K, Phi, S2, ALPHA, lam)
        if kind in DEGENERATE:
            obj = lambda z: S2 @ z - z @ K @ z / (2 * lam)  # noqa: E731
            assert obj(v) >= obj(v_qp) - 1e-7 * max(1.0, abs(obj(v_qp)))
        else:
            np.testing.assert_allclose(v, v_qp, atol=1e-6, err_msg=f"lambda={lam}")
    # at every breakpoint the recorded state satisfies the KKT conditions exactly
    for k in range(lams.size):
        _assert_kkt(K, Phi, S2, path.v_path[k], path.eta_path[k], lams[k])


def _assert_kkt(K, Phi, S, v, eta, lam, tol=1e-8):
    g = Phi @ eta + K @ v / lam
    r = S - g
    scale = 1.0 + np.max(np.abs(S))
    at_lo = np.isclose(v, -ALPHA, atol=1e-9)
    at_hi = np.isclose(v, 1 - ALPHA, atol=1e-9)
    inside = ~(at_lo | at_hi)
    assert np.all(np.abs(r[inside]) <= tol * scale)
    assert np.all(r[at_lo] <= tol * scale)
    assert np.all(r[at_hi] >= -tol * scale)
    np.testing.assert_allclose(Phi.T @ v, 0, atol=1e-7)


@pytest.mark.parametrize("kind", GENERIC)
def test_fixed_lambda_state_matches_qp(kind):
    X, S, Phi_raw, _, _ = make_problem(kind, seed=3)
    K = kernel_matrix(X, X, "rbf", GAMMA)
    Phi, _, _ = reduced(Phi_raw, Phi_raw[:1])
    S2 = break_ties(S)
    first = lambda_path(K, Phi, S2, ALPHA).lambdas[0]
    for frac in (0.7, 0.05):
        res = lambda_path(K, Phi, S2, ALPHA, lam_stop=frac * first)
        assert res.lam == pytest.approx(frac * first)
        np.testing.assert_allclose(res.v, solve_dual(K, Phi, S2, ALPHA, res.lam), atol=1e-6)


def _augmented(K, Kt_row, Phi, phi_t):
    K_aug = np.block([[K, Kt_row[:, None]], [Kt_row[None, :], np.ones((1, 1))]])
    return K_aug, np.vstack([Phi, phi_t])


@pytest.mark.parametrize("kind", ["generic", "groups"])
def test_cutoffs_match_qp_bisection(kind):
    X, S, Phi_raw, X_test, Phi_test_raw = make_problem(kind, seed=5)
    K = kernel_matrix(X, X, "rbf", GAMMA)
    Phi, Phi_t, _ = reduced(Phi_raw, Phi_test_raw)
    first = lambda_path(K, Phi, S, ALPHA).lambdas[0]
    res = lambda_path(K, Phi, S, ALPHA, lam_stop=0.1 * first)
    solver = SPathSolver(K, Phi, S, ALPHA, res.lam, res.state, res.v)
    Kt = kernel_matrix(X_test, X, "rbf", GAMMA)
    U = np.random.default_rng(7).uniform(-ALPHA, 1 - ALPHA, size=len(X_test))
    cut, _, _, _ = solver.cutoffs(Kt, np.ones(len(X_test)), Phi_t, U)
    for t in range(len(X_test)):
        assert np.isfinite(cut[t])
        K_aug, Phi_aug = _augmented(K, Kt[t], Phi, Phi_t[t])
        lo, hi = cut[t] - 1.0, cut[t] + 1.0
        assert qp_test_dual(K_aug, Phi_aug, S, lo, ALPHA, res.lam) <= U[t]
        assert qp_test_dual(K_aug, Phi_aug, S, hi, ALPHA, res.lam) >= U[t]
        ref = bisect_cutoff(K_aug, Phi_aug, S, ALPHA, res.lam, U[t], lo, hi, tol=1e-11)
        assert abs(cut[t] - ref) <= 1e-6 * max(1.0, abs(ref)), (cut[t], ref)


@pytest.mark.parametrize("kind", GENERIC + DEGENERATE)
def test_cutoffs_bracketed_by_qp(kind):
    """v_t from the QP is <= U just below our cutoff and >= U just above it."""
    X, S, Phi_raw, X_test, Phi_test_raw = make_problem(kind, seed=11)
    K = kernel_matrix(X, X, "rbf", GAMMA)
    Phi, Phi_t, V = reduced(Phi_raw, Phi_test_raw)
    S2 = break_ties(S)
    first = lambda_path(K, Phi, S2, ALPHA).lambdas[0]
    res = lambda_path(K, Phi, S2, ALPHA, lam_stop=0.2 * first)
    solver = SPathSolver(K, Phi, S2, ALPHA, res.lam, res.state, res.v)
    Kt = kernel_matrix(X_test, X, "rbf", GAMMA)
    U = np.random.default_rng(2).uniform(-ALPHA, 1 - ALPHA, size=len(X_test))
    cut, _, _, _ = solver.cutoffs(Kt, np.ones(len(X_test)), Phi_t, U)
    # the QP's own accuracy on v_t is ~1e-8 (1e-5 with duplicated covariates)
    v_tol = 1e-5 if kind in DEGENERATE else 1e-7
    for t in range(len(X_test)):
        K_aug, Phi_aug = _augmented(K, Kt[t], Phi, Phi_t[t])
        if not np.isfinite(cut[t]):
            # v_t never reaches U: it stays below U however large the score
            assert qp_test_dual(K_aug, Phi_aug, S2, 1e4, ALPHA, res.lam) <= U[t] + 1e-7
            continue
        delta = 1e-6 * max(1.0, abs(cut[t]))
        assert qp_test_dual(K_aug, Phi_aug, S2, cut[t] - delta, ALPHA, res.lam) <= U[t] + v_tol
        assert qp_test_dual(K_aug, Phi_aug, S2, cut[t] + delta, ALPHA, res.lam) >= U[t] - v_tol


def test_singleton_group_gives_infinite_cutoff_above_alpha():
    """A test point whose group has one calibration member has v_t <= alpha for every S."""
    X, S, Phi_raw, X_test, _ = make_problem("singleton")
    Phi_test_raw = onehot(np.array([2, 2]), 3)
    K = kernel_matrix(X, X, "rbf", GAMMA)
    Phi, Phi_t, _ = reduced(Phi_raw, Phi_test_raw)
    res = lambda_path(K, Phi, S, ALPHA, lam_stop=0.5)
    solver = SPathSolver(K, Phi, S, ALPHA, res.lam, res.state, res.v)
    Kt = kernel_matrix(X_test[:2], X, "rbf", GAMMA)
    cut, _, _, _ = solver.cutoffs(Kt, np.ones(2), Phi_t, np.array([0.5, 0.05]))
    assert np.isinf(cut[0]) and np.isfinite(cut[1])


def test_absent_group_is_outside_row_space():
    _, _, Phi_raw, _, _ = make_problem("generic")
    Phi_raw = np.column_stack([Phi_raw, np.zeros(len(Phi_raw))])  # group 1 never observed
    V = reduce_phi(Phi_raw)
    assert V.shape[1] == 1
    assert list(in_row_space(np.array([[1.0, 0.0], [1.0, 1.0]]), V)) == [True, False]


@pytest.mark.parametrize("kind", ["generic", "groups", "ties"])
def test_test_dual_monotone_in_S(kind):
    X, S, Phi_raw, X_test, Phi_test_raw = make_problem(kind, seed=4)
    K = kernel_matrix(X, X, "rbf", GAMMA)
    Phi, Phi_t, _ = reduced(Phi_raw, Phi_test_raw)
    S2 = break_ties(S)
    res = lambda_path(K, Phi, S2, ALPHA, lam_stop=0.3)
    solver = SPathSolver(K, Phi, S2, ALPHA, res.lam, res.state, res.v)
    Kt = kernel_matrix(X_test, X, "rbf", GAMMA)
    for t in range(len(X_test)):
        cut, S_bp, v_bp, S0 = solver.trace(Kt[t], 1.0, Phi_t[t], 1 - ALPHA)
        assert S_bp[0] == pytest.approx(S0)
        assert v_bp[0] == pytest.approx(-ALPHA)
        assert np.all(np.diff(S_bp) >= -1e-12)
        assert np.all(np.diff(v_bp) >= -1e-12)
        # cutoffs are non-decreasing in U
        us = np.linspace(-ALPHA, 1 - ALPHA, 7)
        cuts = solver.cutoffs(np.repeat(Kt[t:t + 1], 7, 0), np.ones(7),
                              np.repeat(Phi_t[t:t + 1], 7, 0), us)[0]
        assert np.all(cuts[1:] >= cuts[:-1] - 1e-12)


def test_step_cap_raises_naming_the_cap():
    X, S, Phi_raw, X_test, Phi_test_raw = make_problem("generic")
    K = kernel_matrix(X, X, "rbf", GAMMA)
    Phi, Phi_t, _ = reduced(Phi_raw, Phi_test_raw)
    res = lambda_path(K, Phi, S, ALPHA, lam_stop=0.05)
    truncated = lambda_path(K, Phi, S, ALPHA, max_steps=2)
    assert truncated.truncated
    solver = SPathSolver(K, Phi, S, ALPHA, res.lam, res.state, res.v, max_steps=1)
    Kt = kernel_matrix(X_test, X, "rbf", GAMMA)
    with pytest.raises(PathError, match="max_steps=1"):
        solver.cutoffs(Kt, np.ones(4), Phi_t, np.full(4, 1 - ALPHA))


def test_break_ties_only_touches_ties():
    S = np.array([0.3, 0.1, 0.3, 0.2, 0.3])
    out = break_ties(S)
    assert np.unique(out).size == S.size
    np.testing.assert_allclose(out, S, atol=1e-8)
    assert out[1] == S[1] and out[3] == S[3]
    S_free = np.array([0.1, 0.2, 0.3])
    assert np.array_equal(break_ties(S_free), S_free)


@pytest.mark.parametrize("groups", [False, True])
def test_linear_start_of_a_large_problem_is_the_exact_vertex(groups, monkeypatch):
    """Above _HIGHS_ROWS rows HiGHS solves a subsample (on the whole LP it took 10 s at 20,000
    rows and 370 s at 100,000) and the dual simplex finishes: the same vertex as HiGHS on all
    rows, and an optimal one (every residual's sign matches its bound)."""
    from sklearn_conformal._kqr import _path

    rng = np.random.default_rng(1)
    n = 3000
    X = rng.uniform(-2, 2, size=(n, 2))
    S = np.abs(rng.normal(size=n) * (0.2 + np.abs(X[:, 0])))
    Phi = np.column_stack([np.ones(n), X[:, 0] > 0]) if groups else np.ones((n, 1))
    lo, hi = np.full(n, -0.1), np.full(n, 0.9)
    full = _path.linear_qr_start(S, Phi, lo, hi)
    monkeypatch.setattr(_path, "_HIGHS_ROWS", 500)
    sub = _path.linear_qr_start(S, Phi, lo, hi)
    np.testing.assert_array_equal(sub[0], full[0])
    np.testing.assert_allclose(sub[1], full[1], atol=1e-12)
    state, v = sub
    E = state == 1
    assert E.sum() == Phi.shape[1]
    eta = np.linalg.solve(Phi[E], S[E])
    r = S - Phi @ eta
    assert np.all(r[state == 2] > 0) and np.all(r[state == 0] < 0)
    np.testing.assert_allclose(Phi.T @ v, 0.0, atol=1e-9)
