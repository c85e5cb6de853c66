"""Invariances and degenerate data of the exact KQR path solvers and their estimators."""

import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.frozen import FrozenEstimator

from sklearn_conformal import KernelQuantileRegressor, SpeedCPRegressor
from sklearn_conformal._kqr import kernel_matrix, lambda_path
from sklearn_conformal.exceptions import DegenerateDataWarning, PathStepCapWarning


def _hetero(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 1))
    return X, X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))


X_TEST = np.linspace(-2, 2, 7)[:, None]


@pytest.mark.parametrize("c", [1e-12, 1e-6, 1e6, 1e11, 1e12])
def test_speedcp_cutoffs_scale_equivariant(c):
    """y -> c y gives cutoffs c S*(x) (lambda_="auto" follows the scale)."""
    X, y = _hetero(150)
    base = SpeedCPRegressor(gamma=1.0, random_state=0).fit(X, y).predict_cutoff(X_TEST)
    cut = SpeedCPRegressor(gamma=1.0, random_state=0).fit(X, c * y).predict_cutoff(X_TEST)
    np.testing.assert_allclose(cut / c, base, rtol=1e-6)


@pytest.mark.parametrize("c", [1e-12, 1e11, 1e12])
def test_kqr_scale_and_shift_equivariant(c):
    X, y = _hetero(120, seed=1)
    base = KernelQuantileRegressor(quantile=0.9, gamma=1.0).fit(X, y).predict(X_TEST)
    scaled = KernelQuantileRegressor(quantile=0.9, gamma=1.0).fit(X, c * y).predict(X_TEST)
    np.testing.assert_allclose(scaled / c, base, rtol=1e-6, atol=1e-9 * np.abs(base).max())
    for b in (1e3, -1e6):
        shifted = KernelQuantileRegressor(quantile=0.9, gamma=1.0).fit(X, y + b).predict(X_TEST)
        np.testing.assert_allclose(shifted - b, base, atol=1e-9 * abs(b))


@pytest.mark.parametrize("value", [0.0, 3.0, -1e9])
@pytest.mark.parametrize("gamma", [1.0, "auto"])
def test_kqr_constant_target_is_predicted_exactly(value, gamma):
    X, _ = _hetero(60, seed=2)
    kqr = KernelQuantileRegressor(quantile=0.9, gamma=gamma, random_state=0)
    pred = kqr.fit(X, np.full(60, value)).predict(X_TEST)
    assert np.all(pred == value), pred


@pytest.mark.parametrize("gamma", [1.0, "auto"])
def test_speedcp_all_zero_scores_give_zero_cutoffs(gamma):
    """A predictor that fits the calibration data exactly: zero-width intervals, with a
    public warning naming the property."""
    X, _ = _hetero(120, seed=3)
    y = np.zeros(120)
    est = FrozenEstimator(DummyRegressor(strategy="constant", constant=0.0).fit(X, y))
    with pytest.warns(DegenerateDataWarning, match="calibration scores are equal"):
        reg = SpeedCPRegressor(est, gamma=gamma, random_state=0).fit(X, y)
        cut = reg.predict_cutoff(X_TEST)
    assert np.all(cut == 0.0), cut
    iv = reg.predict_interval(X_TEST)
    assert np.all(iv == 0.0)


@pytest.mark.parametrize("shift, scale", [(1e8, 1.0), (0.0, 1e8), (-1e9, 1e8), (0.0, 1e-8)])
def test_kqr_linear_phi_affine_equivariant_in_a_feature(shift, scale):
    """phi="linear" spans {1, x}: an affine change of x (the kernel kept equal through gamma)
    must not drop the intercept or change the fit."""
    X, y = _hetero(80, seed=4)
    y = y + 3.0 * X[:, 0]
    kw = dict(quantile=0.7, lambda_=0.5, phi="linear")
    base = KernelQuantileRegressor(gamma=1.0, **kw).fit(X, y).predict(X_TEST)
    kqr = KernelQuantileRegressor(gamma=1.0 / scale**2, **kw).fit(X * scale + shift, y)
    pred = kqr.predict(X_TEST * scale + shift)
    np.testing.assert_allclose(pred, base, atol=1e-6 * np.abs(base).max())


def test_reduce_phi_keeps_the_intercept_next_to_a_large_feature():
    from sklearn_conformal._kqr import in_row_space, reduce_phi

    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    for big in (1e8, 1e12):
        Phi = np.column_stack([np.ones(50), x + big])
        V = reduce_phi(Phi)
        assert V.shape == (2, 2)
        # orthonormal up to the rounding of x + big
        np.testing.assert_allclose((Phi @ V).T @ (Phi @ V), np.eye(2), atol=1e-14 * big)
        # rank deficient: the rank and the row space survive
        Phi = np.column_stack([Phi, 2 * (x + big) - 1])
        V = reduce_phi(Phi)
        assert V.shape == (3, 2)
        assert in_row_space(np.array([[1.0, big, 2 * big - 1]]), V).all()
        assert not in_row_space(np.array([[1.0, big, 0.0]]), V).any()


def _constant_predictor(n):
    return FrozenEstimator(DummyRegressor(strategy="constant", constant=0.0).fit(
        np.zeros((n, 1)), np.zeros(n)))


@pytest.mark.parametrize("spread", [0.0, 2.0])
def test_near_constant_kernel_gives_the_intercept_only_answer(spread):
    """All X equal (kernel exactly constant) or a huge lengthscale: the automatic lambda must
    not interpolate the jitter; the answer is the intercept-only one (split conformal
    quantile / sample quantile), with a public warning."""
    rng = np.random.default_rng(0)
    n = 199
    y = rng.normal(size=n)
    X = rng.uniform(-spread, spread, size=(n, 1))
    gamma = 1.0 if spread == 0.0 else 1e-12
    S = np.sort(np.abs(y))
    k = int(np.ceil(0.9 * (n + 1)))
    with pytest.warns(DegenerateDataWarning, match="numerically constant"):
        reg = SpeedCPRegressor(_constant_predictor(n), gamma=gamma, randomized=False)
        reg.fit(X, y)
    cut = reg.predict_cutoff(np.zeros((1, 1)))
    # the intercept-only S-path stops where the test point would join R: at S_(k+1)
    np.testing.assert_allclose(cut, S[k], rtol=1e-3)
    with pytest.warns(DegenerateDataWarning, match="numerically constant"):
        kqr = KernelQuantileRegressor(quantile=0.9, gamma=gamma).fit(X, y)
    # the linear quantile regression with an intercept: the ceil(0.9 n)-th order statistic
    np.testing.assert_allclose(kqr.predict(np.zeros((1, 1))), np.sort(y)[int(np.ceil(0.9 * n)) - 1],
                               rtol=1e-3)


def test_fixed_lambda_is_reached_beyond_the_step_cap():
    """A fixed lambda_ is never silently replaced: the cap grows until the path gets there."""
    X, y = _hetero(80, seed=5)
    ref = KernelQuantileRegressor(quantile=0.8, gamma=2.0, lambda_=1e-3, store_path=False)
    ref.fit(X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kqr = KernelQuantileRegressor(quantile=0.8, gamma=2.0, lambda_=1e-3, max_steps=2,
                                      store_path=False, lambda_min_ratio=0.5)
        kqr.fit(X, y)
    # the full path (lambdas_) may be capped, and says so; the fixed lambda is reached
    assert not [w for w in caught if "requested lambda_" in str(w.message)]
    assert kqr.lam_ == 1e-3
    np.testing.assert_allclose(kqr.predict(X_TEST), ref.predict(X_TEST), rtol=1e-9, atol=1e-9)


def test_step_cap_without_growth_warns_naming_the_cap_and_the_value_used():
    X, y = _hetero(80, seed=5)
    K = kernel_matrix(X, X, "rbf", 2.0)
    Phi = np.ones((80, 1))
    with pytest.warns(PathStepCapWarning, match=r"max_steps=2 before the requested lambda_=0.001"):
        res = lambda_path(K, Phi, y, 0.2, lam_stop=1e-3, max_steps=2, grow_cap=False)
    assert res.lam > 1e-3
    with pytest.warns(PathStepCapWarning, match=r"max_steps=2 before its end"):
        lambda_path(K, Phi, y, 0.2, max_steps=2)


def _cases():
    """(name, X, y, params): duplicated rows, binary targets, extreme gamma and lambda."""
    out = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(25, 1))
        y = X[:, 0] + rng.normal(size=25)
        reps = rng.integers(1, 4, size=25)  # every row 1 to 3 times
        out.append((f"duplicates-{seed}", np.repeat(X, reps, 0), np.repeat(y, reps), {}))
    rng = np.random.default_rng(100)
    X = rng.normal(size=(60, 2))
    y_bin = (rng.uniform(size=60) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
    y = X[:, 0] + rng.normal(size=60)
    out += [
        ("binary", X, y_bin, {}),
        ("binary-discrete-x", np.round(X, 0), y_bin, {}),
        ("gamma=1e-6", X, y, {"gamma": 1e-6}),
        ("gamma=1e6", X, y, {"gamma": 1e6}),
        ("lambda=1e-6", X, y, {"gamma": 1.0, "lambda_": 1e-6}),
        ("lambda=1e6", X, y, {"gamma": 1.0, "lambda_": 1e6}),
    ]
    return out


@pytest.mark.parametrize("name, X, y, params", _cases(), ids=[c[0] for c in _cases()])
def test_speedcp_survives_degenerate_paths_and_matches_the_qp(name, X, y, params):
    """Duplicated (x, y) rows, binary targets, extreme gamma / lambda: fit and predict succeed
    and the cutoffs are those of the dense QP (v_t crosses U = 1 - alpha there)."""
    pytest.importorskip("cvxpy")
    from ._qp_reference import qp_test_dual

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        reg = SpeedCPRegressor(randomized=False, random_state=0, calibration_size=0.5,
                               **params).fit(X, y)
        cut = reg.predict_cutoff(X)
    assert np.all(np.isfinite(cut))
    # sane coverage on the fitted data (deterministic rule: at least the level, roughly)
    assert np.mean(np.abs(y - reg.predict(X)) <= cut + 1e-9) >= 0.8
    alpha = 1 - reg.confidence_level
    Z, Phi, S = reg._Z_cal, reg._Phi, reg._S
    K = kernel_matrix(Z, Z, reg.kernel, reg.gamma_)
    for t in (0, 1, 2):
        if np.isinf(reg.lam_):  # constant scores: exact constant cutoffs (checked elsewhere)
            break
        kt = kernel_matrix(X[t:t + 1], Z, reg.kernel, reg.gamma_)[0]
        K_aug = np.block([[K, kt[:, None]], [kt[None, :], np.ones((1, 1))]])
        Phi_aug = np.vstack([Phi, Phi[:1]])
        delta = 1e-5 * max(1.0, abs(cut[t]))
        v_below = qp_test_dual(K_aug, Phi_aug, S, cut[t] - delta, alpha, reg.lam_)
        v_above = qp_test_dual(K_aug, Phi_aug, S, cut[t] + delta, alpha, reg.lam_)
        assert v_below <= 1 - alpha + 1e-5, (t, cut[t], v_below)
        # just above the cutoff the test point has joined R (v_t = 1 - alpha)
        assert v_above >= 1 - alpha - 1e-4, (t, cut[t], v_above)


def test_kqr_on_doubled_rows_equals_half_the_penalty():
    """Every row twice: sum rho counts twice, i.e. the original problem at lambda / 2."""
    X, y = _hetero(50, seed=6)
    X2, y2 = np.repeat(X, 2, axis=0), np.repeat(y, 2)
    kw = dict(quantile=0.8, gamma=1.5)
    ref = KernelQuantileRegressor(lambda_=0.05, **kw).fit(X, y).predict(X_TEST)
    pred = KernelQuantileRegressor(lambda_=0.1, **kw).fit(X2, y2).predict(X_TEST)
    np.testing.assert_allclose(pred, ref, rtol=1e-7, atol=1e-7)
    for seed in range(3):  # and the automatic choices survive repeated rows
        rng = np.random.default_rng(seed)
        reps = rng.integers(1, 4, size=50)
        kqr = KernelQuantileRegressor(quantile=0.9, gamma="auto", random_state=0)
        assert np.all(np.isfinite(kqr.fit(np.repeat(X, reps, 0), np.repeat(y, reps)).predict(X)))


def test_row_space_test_is_relative_for_tiny_features():
    """A group absent from calibration is outside the span however small phi's scale."""
    from sklearn_conformal._kqr import in_row_space, reduce_phi

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 2, size=30)
    for scale in (1.0, 1e-9):
        Phi = scale * np.column_stack([np.ones(30), groups == 1, np.zeros(30)])  # group 2 absent
        V = reduce_phi(Phi)
        test = scale * np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
        assert list(in_row_space(test, V)) == [True, False]


@pytest.mark.parametrize("c", [1e-12, 1e11])
def test_kqr_auto_gamma_scale_equivariant_at_a_degenerate_median(c):
    """tau * n integer (the median of an even sample) makes the linear start degenerate; the
    path's end (lambda_min_ratio) must still be intrinsic, so y -> c y changes nothing."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(120, 1))
    y = X[:, 0] + rng.normal(size=120) * (0.2 + np.abs(X[:, 0]))
    kw = dict(quantile=0.5, gamma="auto", random_state=0)
    base = KernelQuantileRegressor(**kw).fit(X, y)
    scaled = KernelQuantileRegressor(**kw).fit(X, c * y)
    assert scaled.gamma_ == base.gamma_
    np.testing.assert_allclose(scaled.predict(X_TEST) / c, base.predict(X_TEST), rtol=1e-6,
                               atol=1e-9)


def test_capped_cross_validation_paths_warn():
    X, y = _hetero(80, seed=7)
    with pytest.warns(PathStepCapWarning, match="cross-validation lambda paths reached"):
        reg = SpeedCPRegressor(gamma="auto", max_steps=3, random_state=0).fit(X, y)
    assert reg.path_truncated_


def test_fixed_lambda_below_the_numerical_floor_warns_with_the_remedy():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(200, 1))
    y = X[:, 0] + rng.normal(size=200)
    with pytest.warns(DegenerateDataWarning, match=r"lambda_=1e-08.*lambda_='auto'"):
        SpeedCPRegressor(gamma=1.0, lambda_=1e-8, random_state=0).fit(X, y)
    # the same lambda on a target 1e9 times larger is a strong penalty: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDataWarning)
        SpeedCPRegressor(gamma=1.0, lambda_=1e-8, random_state=0).fit(X, y * 1e9)
