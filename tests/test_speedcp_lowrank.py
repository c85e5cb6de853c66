"""The low-rank (Nystrom) kernel of SpeedCP: exact paths of the approximate kernel.

The path solvers take a :class:`KernelFactor` ``F`` and must solve the problem of the kernel
``F F'`` exactly: the lambda path, the S-path cutoffs and the fitted estimators are checked
against the dense solver run on the explicit matrix ``F F'`` (itself checked against a QP in
``test_kqr_path.py``) and against the QP reference directly; then the estimator's contract
(landmarks that never calibrate, invariances, pickling, coverage).
"""

import pickle
import warnings

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression

from sklearn_conformal import SpeedCPClassifier, SpeedCPRegressor
from sklearn_conformal._core._row_keys import keyed_uniforms, row_keys
from sklearn_conformal._kqr import (
    KernelFactor,
    NystroemFeatures,
    SPathSolver,
    kernel_matrix,
    lambda_path,
)
from sklearn_conformal._kqr._kernels import row_products


def _problem(seed, n=300, r=25, groups=False, duplicates=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    S = np.abs(X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0])))
    if duplicates:
        X[-duplicates:] = X[:duplicates]
        S[-duplicates:] = S[:duplicates]
    if groups:
        g = (X[:, 1] > 0).astype(float)
        Phi = np.column_stack([np.ones(n), g])
    else:
        Phi = np.ones((n, 1))
    ny = NystroemFeatures(rng.uniform(-2, 2, (r, 2)), "rbf", 0.8)
    return X, S, Phi, ny


@pytest.mark.parametrize("seed, groups, duplicates", [(0, False, 0), (1, True, 0), (2, False, 30)])
@pytest.mark.parametrize("lam_stop", [None, 0.5])
def test_factor_lambda_path_equals_the_dense_path_of_its_kernel(seed, groups, duplicates, lam_stop):
    X, S, Phi, ny = _problem(seed, groups=groups, duplicates=duplicates)
    F = ny.transform(X)
    # the explicit kernel, entry for entry what the factored solver computes
    dense = lambda_path(row_products(F, F), Phi, S, 0.1, lam_stop=lam_stop)
    low = lambda_path(KernelFactor(F), Phi, S, 0.1, lam_stop=lam_stop)
    np.testing.assert_array_equal(low.state, dense.state)
    np.testing.assert_allclose(low.lam, dense.lam, rtol=1e-10)
    np.testing.assert_allclose(low.v, dense.v, atol=1e-9)
    # the same breakpoints (a degenerate zero-length step may round to a tiny positive one
    # in either solver and be recorded twice)
    # (the kernel F F' has rank 25 < n: its elbow systems are less well conditioned than a
    # full-rank kernel's, and combinations of columns are summed in another order)
    np.testing.assert_allclose(_distinct(low.lambdas), _distinct(dense.lambdas), rtol=1e-6)


def _distinct(lams, rtol=1e-9):
    lams = np.sort(lams)[::-1]
    keep = np.r_[True, np.abs(np.diff(lams)) > rtol * np.abs(lams[1:])]
    return lams[keep]


@pytest.mark.parametrize("seed, groups, duplicates", [(0, False, 0), (1, True, 0), (2, False, 30)])
def test_factor_cutoffs_equal_the_dense_cutoffs_of_its_kernel(seed, groups, duplicates):
    X, S, Phi, ny = _problem(seed, groups=groups, duplicates=duplicates)
    F = ny.transform(X)
    rng = np.random.default_rng(seed + 10)
    X_t = rng.uniform(-2, 2, (40, 2))
    F_t = ny.transform(X_t)
    Phi_t = Phi[:40]
    U = rng.uniform(-0.1, 0.9, 40)
    path = lambda_path(KernelFactor(F), Phi, S, 0.1)
    dense = SPathSolver(row_products(F, F), Phi, S, 0.1, path.lam, path.state, path.v)
    low = SPathSolver(KernelFactor(F), Phi, S, 0.1, path.lam, path.state, path.v)
    ref = dense.cutoffs(row_products(F_t, F), KernelFactor(F_t).self_kernel(), Phi_t, U)[0]
    cut = low.cutoffs(KernelFactor(F_t), None, Phi_t, U)[0]
    np.testing.assert_allclose(cut, ref, rtol=1e-9, atol=1e-9)
    # one point's trace ends at the same cutoff
    assert low.trace(KernelFactor(F_t[:1]), None, Phi_t[0], U[0])[0] == pytest.approx(ref[0])


def test_a_factor_that_becomes_square_after_merging_is_still_a_factor():
    """The numba kernels tell a factor (n, r) from a kernel matrix (n, n) by its shape: with
    r equal to the number of distinct rows left after merging duplicates, the factor gets a
    zero column instead of being read as a 10 x 10 kernel matrix."""
    X, S, Phi, ny = _problem(3, n=40, r=10, duplicates=0)
    X = np.vstack([X[:10]] * 4)
    S = np.concatenate([S[:10]] * 4)
    F = ny.transform(X)
    assert KernelFactor(F).solver_array(np.arange(10)).shape == (10, 11)
    dense = lambda_path(row_products(F, F), Phi, S, 0.2, lam_stop=0.3)
    low = lambda_path(KernelFactor(F), Phi, S, 0.2, lam_stop=0.3)
    np.testing.assert_allclose(low.v, dense.v, atol=1e-10)


# --------------------------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------------------------
def _hetero(seed, n):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    y = X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))
    return X, y


def _reg(**kw):
    params = dict(gamma=0.8, random_state=0, calibration_size=0.5, n_components=30)
    params.update(kw)
    return SpeedCPRegressor(LinearRegression(), **params)


def test_regressor_cutoffs_match_the_qp_of_the_nystrom_kernel():
    pytest.importorskip("cvxpy")
    from . import _qp_reference as qp

    X, y = _hetero(0, 300)
    reg = _reg().fit(X, y)
    X_t, _ = _hetero(1, 3)
    alpha = 1.0 - reg.confidence_level_
    F = reg._nystroem.transform(reg._Z_cal)
    F_t = reg._nystroem.transform(reg._embed(X_t))
    Phi_t = reg._phi_transform(X_t) @ reg._phi_basis
    U = keyed_uniforms(row_keys(X_t), reg._u_seed) - alpha
    cut = reg.predict_cutoff(X_t)
    for t in range(len(X_t)):
        f = F_t[t]
        K_aug = np.block([[F @ F.T, (F @ f)[:, None]], [(F @ f)[None, :], np.array([[f @ f]])]])
        Phi_aug = np.vstack([reg._Phi, Phi_t[t]])
        delta = 1e-6 * max(1.0, abs(cut[t]))
        v_lo = qp.qp_test_dual(K_aug, Phi_aug, reg._S, cut[t] - delta, alpha, reg.lam_)
        v_hi = qp.qp_test_dual(K_aug, Phi_aug, reg._S, cut[t] + delta, alpha, reg.lam_)
        assert v_lo <= U[t] + 1e-7 and v_hi >= U[t] - 1e-7


def test_regressor_landmarks_come_from_training_rows_and_never_calibrate():
    X, y = _hetero(0, 400)
    reg = _reg().fit(X, y)
    assert reg.n_calibration_ == 200 and reg.n_components_ <= 30
    # a frozen model has no training rows: the landmarks are set aside from calibration
    lr = LinearRegression().fit(*_hetero(5, 200))
    frozen = SpeedCPRegressor(FrozenEstimator(lr), gamma=0.8, n_components=30,
                              random_state=0).fit(X, y)
    assert frozen.n_calibration_ == 400 - 30
    assert frozen.conformity_scores_.shape == (370,)
    landmarks = frozen._nystroem.landmarks
    calib = {tuple(row) for row in frozen._Z_cal}
    assert not any(tuple(row) in calib for row in landmarks)


def test_frozen_model_with_more_landmarks_than_rows_is_a_clear_error():
    X, y = _hetero(0, 50)
    lr = LinearRegression().fit(X, y)
    with pytest.raises(ValueError, match="n_components=50 landmarks"):
        SpeedCPRegressor(FrozenEstimator(lr), gamma=0.8, n_components=50).fit(X, y)


def test_regressor_lowrank_invariances():
    X, y = _hetero(0, 400)
    X_t, _ = _hetero(1, 25)
    reg = _reg().fit(X, y)
    batch = reg.predict_interval(X_t)
    # the cutoffs (SpeedCP's part; the point model's BLAS predictions may differ by an ulp
    # between one row and a batch) are the same one row at a time and in any order
    cut = reg.predict_cutoff(X_t)
    rows = np.concatenate([reg.predict_cutoff(X_t[i:i + 1]) for i in range(len(X_t))])
    np.testing.assert_array_equal(rows, cut)
    np.testing.assert_array_equal(reg.predict_cutoff(X_t[::-1]), cut[::-1])
    np.testing.assert_array_equal(_reg().fit(X, y).predict_interval(X_t), batch)
    np.testing.assert_array_equal(_reg(n_jobs=2).fit(X, y).predict_interval(X_t), batch)
    loaded = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(loaded.predict_interval(X_t), batch)
    # no kept solver (keep_kernel=False) and another level: the same as the kept one
    lean = _reg(keep_kernel=False).fit(X, y)
    assert lean._kept_solver is None and reg._kept_solver is not None
    np.testing.assert_array_equal(lean.predict_interval(X_t), batch)
    np.testing.assert_array_equal(lean.predict_interval(X_t, confidence_level=0.8),
                                  reg.predict_interval(X_t, confidence_level=0.8))


def test_regressor_with_full_rank_landmarks_matches_the_exact_kernel_closely():
    """With as many landmarks as calibration rows span, the Nystrom kernel is the exact
    kernel on those rows up to rounding; with few landmarks it differs."""
    X, y = _hetero(0, 240)
    X_t, _ = _hetero(1, 20)
    exact = SpeedCPRegressor(LinearRegression(), gamma=0.3, lambda_=1.0, random_state=0,
                             calibration_size=0.5).fit(X, y)
    # landmarks = the calibration rows themselves (frozen model, no training rows): the
    # Nystrom kernel on them is exact, but those rows no longer calibrate, so use the embedding
    # of the exact estimator's calibration rows as training rows instead
    full = SpeedCPRegressor(LinearRegression(), gamma=0.3, lambda_=1.0, random_state=0,
                            calibration_size=0.5, n_components=120).fit(X, y)
    assert full.n_components_ <= 120
    a, b = exact.predict_interval(X_t), full.predict_interval(X_t)
    assert np.all(np.isfinite(b))
    assert np.median(np.abs((b[:, 1] - b[:, 0]) / (a[:, 1] - a[:, 0]) - 1.0)) < 0.1


def test_default_gamma_grid_scale_comes_from_the_cross_validation_rows():
    """The median heuristic needs all pairs of rows (O(n^2) memory: 37 GiB at n = 100,000):
    above gamma_cv_size it uses the rows gamma is cross-validated on."""
    from sklearn_conformal._kqr import gamma_grid

    X, y = _hetero(0, 1200)
    lr = LinearRegression().fit(X, y)
    reg = SpeedCPRegressor(FrozenEstimator(lr), gamma_cv_size=300, random_state=0,
                           gamma_grid=None, lambda_=1.0).fit(X, y)
    rows = reg.gamma_cv_rows_
    assert rows is not None and rows.size == 300
    np.testing.assert_array_equal(reg.gamma_grid_, gamma_grid(reg._Z_cal[rows]))


def test_lowrank_regressor_covers_within_binomial_bounds():
    n_rep, n_test = 8, 400
    hits = 0
    for rep in range(n_rep):
        X, y = _hetero(100 + rep, 900)
        X_t, y_t = _hetero(200 + rep, n_test)
        reg = SpeedCPRegressor(LinearRegression(), n_components=40, random_state=rep,
                               calibration_size=0.6).fit(X, y)
        iv = reg.predict_interval(X_t)
        hits += int(np.sum((y_t >= iv[:, 0]) & (y_t <= iv[:, 1])))
    total = n_rep * n_test
    # conservative bounds: the per-split coverage varies, so use a wide binomial band
    lo = binom.ppf(1e-4, total, 0.9) - 0.02 * total
    hi = binom.ppf(1 - 1e-4, total, 0.9 + 1 / 541) + 0.02 * total
    assert lo <= hits <= hi, hits / total


@pytest.mark.slow
def test_lowrank_regressor_covers_within_each_group_over_splits():
    cover = {0: [], 1: []}
    for rep in range(20):
        X, y = _hetero(300 + rep, 1500)
        X_t, y_t = _hetero(400 + rep, 1000)
        phi = lambda Z: np.column_stack([np.ones(len(Z)), Z[:, 0] > 0])  # noqa: E731
        reg = SpeedCPRegressor(LinearRegression(), n_components=40, phi=phi, random_state=rep,
                               calibration_size=0.6).fit(X, y)
        iv = reg.predict_interval(X_t)
        hit = (y_t >= iv[:, 0]) & (y_t <= iv[:, 1])
        for g in (0, 1):
            cover[g].append(np.mean(hit[(X_t[:, 0] > 0) == g]))
    for g in (0, 1):
        # mean over 20 splits of ~450 calibration rows per group: sd about 0.004
        assert 0.88 <= np.mean(cover[g]) <= 0.93, (g, np.mean(cover[g]))


def test_lowrank_classifier_sets_cut_the_label_scores_at_the_cutoffs():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    clf = SpeedCPClassifier(LogisticRegression(max_iter=500), phi="predicted_label",
                            gamma=0.02, lambda_=50.0, n_components=60, random_state=0,
                            calibration_size=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X[:1200], y[:1200])
    X_t = X[1200:1300]
    sets = clf.predict_set(X_t)
    cut = clf.predict_cutoff(X_t)
    assert sets.shape == (100, 10) and np.all(np.isfinite(cut))
    assert clf.n_components_ <= 60
    # the dense solver on the explicit Nystrom kernel gives the same cutoffs
    F = clf._nystroem.transform(clf._Z_cal)
    F_t = clf._nystroem.transform(clf._embed(X_t))
    alpha = 1.0 - clf.confidence_level_
    dense = SPathSolver(row_products(F, F), clf._Phi, clf._S, alpha, clf.lam_,
                        clf._path_state, clf._path_v)
    Phi_t = clf._phi_transform(X_t) @ clf._phi_basis
    U = keyed_uniforms(row_keys(X_t), clf._u_seed) - alpha
    ref = dense.cutoffs(row_products(F_t, F), KernelFactor(F_t).self_kernel(), Phi_t, U)[0]
    np.testing.assert_allclose(cut, ref, rtol=1e-8, atol=1e-10)


def test_kernel_matrix_of_nystroem_features_reproduces_the_kernel_on_landmarks():
    rng = np.random.default_rng(0)
    C = rng.normal(size=(15, 3))
    ny = NystroemFeatures(C, "laplacian", 0.5)
    F = ny.transform(C)
    np.testing.assert_allclose(F @ F.T, kernel_matrix(C, None, "laplacian", 0.5), atol=1e-8)


@pytest.mark.parametrize("params", [
    {"n_components": 30, "gamma": 0.8},
    {"n_components": 30, "lambda_": "cv"},
    {"lambda_": "cv", "gamma": 0.8},
])
def test_rescaled_target_rescales_the_intervals(params):
    """y -> c y: the Nystrom kernel and lambda_="cv" (its folds' lambdas carry the units of
    1 / S) give the intervals times c."""
    X, y = _hetero(0, 400)
    X_t, _ = _hetero(1, 20)
    base = dict(random_state=0, calibration_size=0.5, gamma_grid=[0.3, 1.0, 3.0])
    base.update(params)
    ref = SpeedCPRegressor(LinearRegression(), **base).fit(X, y).predict_interval(X_t)
    for c in (1e-3, 1e3):
        got = SpeedCPRegressor(LinearRegression(), **base).fit(X, c * y).predict_interval(X_t)
        np.testing.assert_allclose(got, c * ref, rtol=1e-6, atol=1e-9 * c)
