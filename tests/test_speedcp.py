"""SpeedCPRegressor and KernelQuantileRegressor: contract, coverage, determinism, bad input."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, QuantileRegressor
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_conformal import KernelQuantileRegressor, SpeedCPClassifier, SpeedCPRegressor
from sklearn_conformal._core import SmallCalibrationWarning
from sklearn_conformal.datasets import make_latent_mixture
from sklearn_conformal.datasets._latent_mixture import latent_features

from ._expected_failures import expected_failed_checks


@parametrize_with_checks(
    [
        SpeedCPRegressor(gamma=1.0, random_state=0),
        SpeedCPRegressor(gamma=1.0, lambda_=0.5, randomized=False, random_state=0),
        SpeedCPRegressor(conformity_score="normalized", gamma=1.0, random_state=0),
        SpeedCPRegressor(
            QuantileRegressor(alpha=0.0), conformity_score="cqr", gamma=1.0, lambda_=0.5,
            random_state=0,
        ),
        SpeedCPClassifier(gamma=1.0, random_state=0),
        SpeedCPClassifier(
            gamma=1.0, lambda_=0.5, phi="predicted_label", conformity_score="aps",
            randomized=False, random_state=0,
        ),
        KernelQuantileRegressor(gamma=1.0),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


def _hetero(rng, n):
    X = rng.uniform(-2, 2, size=(n, 1))
    return X, X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))


def test_group_conditional_coverage_latent_mixture():
    """Randomised SpeedCP with one-hot topics: exact coverage within every topic."""
    R, n_cal, n_test, level = 60, 120, 40, 0.9
    X0, y0, W0, t0 = make_latent_mixture(300, n_words=40, doc_length=100, random_state=123)
    # columns: word frequencies | latent embedding | dominant topic
    predictor = LinearRegression().fit(X0, y0)
    n_words = X0.shape[1]
    emb = ColumnTransformer([("z", "passthrough", slice(n_words, n_words + 3))])
    covered = {k: [] for k in range(3)}
    for r in range(R):
        X, y, W, topic = make_latent_mixture(n_cal + n_test, n_words=40, doc_length=100,
                                             random_state=1000 + r)
        Xf = np.column_stack([X, latent_features(W), topic])
        reg = SpeedCPRegressor(
            FrozenEstimator(_Cols(predictor, n_words)), embedding=emb, phi=n_words + 3,
            gamma=1.0, lambda_=1.0, confidence_level=level, random_state=r,
        ).fit(Xf[:n_cal], y[:n_cal])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallCalibrationWarning)
            iv = reg.predict_interval(Xf[n_cal:])
        hit = (y[n_cal:] >= iv[:, 0]) & (y[n_cal:] <= iv[:, 1])
        for k in range(3):
            covered[k].extend(hit[topic[n_cal:] == k])
    for k in range(3):
        c = np.asarray(covered[k])
        # binomial bound (4 sd) with a margin for the calibration-conditional variability
        sd = np.sqrt(level * (1 - level) / c.size)
        assert abs(c.mean() - level) <= 4 * sd + 0.02, (k, c.mean(), c.size)


class _Cols:
    """A fitted regressor applied to the first ``p`` columns (picklable, frozen-friendly)."""

    def __init__(self, model, p):
        self.model, self.p = model, p

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.model.predict(np.asarray(X)[:, : self.p])


def test_marginal_coverage_over_repeated_draws():
    rng0 = np.random.default_rng(1)
    X0, y0 = _hetero(rng0, 50)
    lr = LinearRegression().fit(X0, y0)
    hits = []
    for r in range(80):
        rng = np.random.default_rng(r)
        X, y = _hetero(rng, 80)
        Xt, yt = _hetero(rng, 25)
        reg = SpeedCPRegressor(FrozenEstimator(lr), gamma=1.0, random_state=r).fit(X, y)
        iv = reg.predict_interval(Xt)
        hits.extend((yt >= iv[:, 0]) & (yt <= iv[:, 1]))
    sd = np.sqrt(0.09 / len(hits))
    assert abs(np.mean(hits) - 0.9) <= 4 * sd + 0.02


def test_auto_tuning_pickle_and_determinism():
    rng = np.random.default_rng(0)
    X, y = _hetero(rng, 300)
    Xt, _ = _hetero(rng, 50)
    reg = SpeedCPRegressor(random_state=3).fit(X, y)
    assert reg.gamma_ > 0 and reg.lam_ > 0
    assert reg.cv_loss_.shape == reg.gamma_grid_.shape
    assert reg.path_lambdas_.shape == reg.path_sic_.shape == reg.path_elbow_sizes_.shape
    iv = reg.predict_interval(Xt)
    np.testing.assert_array_equal(iv, reg.predict_interval(Xt))
    again = SpeedCPRegressor(random_state=3).fit(X, y)
    np.testing.assert_array_equal(iv, again.predict_interval(Xt))
    loaded = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(iv, loaded.predict_interval(Xt))
    np.testing.assert_array_equal(reg.predict_set(Xt), iv)
    assert np.all(iv[:, 0] <= reg.predict(Xt)) and np.all(iv[:, 1] >= reg.predict(Xt))
    # another level without refitting; a lower level gives narrower intervals on average
    narrow = reg.predict_interval(Xt, confidence_level=0.6)
    assert np.mean(narrow[:, 1] - narrow[:, 0]) < np.mean(iv[:, 1] - iv[:, 0])
    assert np.isfinite(reg.score(Xt, Xt[:, 0]))
    # threads change nothing
    one = SpeedCPRegressor(random_state=3, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(iv, one.predict_interval(Xt))


def test_deterministic_rule_is_wider_than_randomised_on_average():
    rng = np.random.default_rng(5)
    X, y = _hetero(rng, 300)
    Xt, _ = _hetero(rng, 200)
    kw = dict(gamma=1.0, lambda_=1.0, random_state=0)
    rand = SpeedCPRegressor(**kw).fit(X, y).predict_cutoff(Xt)
    det = SpeedCPRegressor(randomized=False, **kw).fit(X, y).predict_cutoff(Xt)
    assert np.all(det >= rand - 1e-9)


def test_non_finite_input_rejected():
    rng = np.random.default_rng(0)
    X, y = _hetero(rng, 60)
    X[3, 0] = np.nan
    with pytest.raises(ValueError):
        SpeedCPRegressor(gamma=1.0).fit(X, y)
    X[3, 0] = 0.0
    y[4] = np.inf
    with pytest.raises(ValueError):
        SpeedCPRegressor(gamma=1.0).fit(X, y)


@pytest.mark.parametrize("param", [{"gamma": 0.0}, {"gamma": -1.0}, {"lambda_": 0.0},
                                   {"kernel": "poly"}])
def test_bad_parameters(param):
    rng = np.random.default_rng(0)
    X, y = _hetero(rng, 60)
    with pytest.raises(InvalidParameterError):
        SpeedCPRegressor(**param).fit(X, y)


@pytest.mark.parametrize("make", [
    lambda **kw: SpeedCPRegressor(random_state=0, **kw),
    lambda **kw: KernelQuantileRegressor(quantile=0.9, random_state=0, **kw),
])
def test_bad_gamma_grid_and_zero_phi_are_named(make):
    rng = np.random.default_rng(0)
    X, y = _hetero(rng, 60)
    for grid in ([], [1.0, -1.0], [np.nan]):
        with pytest.raises(ValueError, match="gamma_grid"):
            make(gamma="auto", gamma_grid=grid).fit(X, y)
    with pytest.raises(ValueError, match="phi"):
        make(gamma=1.0, phi=lambda Z: np.zeros(Z.shape[0])).fit(X, y)


def test_too_few_calibration_points_give_infinite_intervals():
    rng = np.random.default_rng(0)
    X, y = _hetero(rng, 30)
    lr = LinearRegression().fit(X, y)
    with pytest.warns(SmallCalibrationWarning):
        reg = SpeedCPRegressor(FrozenEstimator(lr), gamma=1.0).fit(X[:5], y[:5])
    with pytest.warns(SmallCalibrationWarning):
        iv = reg.predict_interval(X)
    assert np.all(np.isinf(iv))


def test_group_absent_from_calibration_is_infinite():
    rng = np.random.default_rng(0)
    X, y = _hetero(rng, 200)
    group = (X[:, 0] > 0).astype(float)
    Xg = np.column_stack([X, group])
    lr = LinearRegression().fit(Xg, y)
    reg = SpeedCPRegressor(FrozenEstimator(lr), phi=1, gamma=1.0, random_state=0).fit(Xg, y)
    Xt = np.array([[0.5, 1.0], [-0.5, 0.0], [0.1, 2.0]])  # group 2 never seen
    with pytest.warns(SmallCalibrationWarning, match="outside the span"):
        iv = reg.predict_interval(Xt)
    assert np.all(np.isfinite(iv[:2])) and np.all(np.isinf(iv[2]))


def test_kernel_quantile_regressor_path():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(200, 1))
    y = np.sin(X[:, 0]) + rng.normal(size=200) * 0.3
    kqr = KernelQuantileRegressor(quantile=0.8, gamma=0.5).fit(X, y)
    assert np.all(np.diff(kqr.lambdas_) <= 0)
    assert kqr.sic_.shape == kqr.elbow_sizes_.shape == kqr.lambdas_.shape
    np.testing.assert_allclose(kqr.lam_, kqr.lambdas_[kqr.best_index_])
    fit = kqr.predict(X)
    np.testing.assert_allclose(fit, kqr.predict_path(X)[:, kqr.best_index_], atol=1e-8)
    # a quantile fit leaves about q of the points below it
    assert abs(np.mean(y <= fit + 1e-9) - 0.8) < 0.05
    fixed = KernelQuantileRegressor(quantile=0.8, gamma=0.5, lambda_=kqr.lam_).fit(X, y)
    np.testing.assert_allclose(fixed.predict(X), fit, atol=1e-7)
    auto = KernelQuantileRegressor(quantile=0.5, gamma="auto", random_state=0).fit(X, y)
    assert auto.gamma_ > 0 and auto.cv_loss_.shape == (30,)


@pytest.mark.parametrize("kernel", ["laplacian", "matern32", "matern52", "imq"])
def test_other_kernels_and_callable_phi(kernel):
    rng = np.random.default_rng(2)
    X, y = _hetero(rng, 150)
    Xt, _ = _hetero(rng, 20)
    phi = lambda Z: np.column_stack([np.ones(len(Z)), Z[:, 0] > 0])  # noqa: E731
    reg = SpeedCPRegressor(kernel=kernel, phi=phi, gamma=1.0, random_state=0).fit(X, y)
    iv = reg.predict_interval(Xt)
    assert iv.shape == (20, 2) and np.all(iv[:, 1] >= iv[:, 0])
    assert np.all(np.isfinite(iv))


def test_gamma_early_stop_selects_the_full_grid_gamma():
    """The ascending search stops past the minimum of the U-shaped CV loss; same gamma, same
    intervals as the whole grid, with the large (expensive) candidates never evaluated."""
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(900, n_features=5, noise=1.0, random_state=0)
    early = SpeedCPRegressor(calibration_size=300, random_state=0).fit(X, y)
    full = SpeedCPRegressor(calibration_size=300, gamma_patience=None, random_state=0).fit(X, y)
    assert early.gamma_ == full.gamma_
    np.testing.assert_array_equal(early.predict_interval(X[:50]), full.predict_interval(X[:50]))
    evaluated = np.isfinite(early.cv_loss_)
    assert np.all(np.isfinite(full.cv_loss_))
    # evaluated candidates agree with the full search; the search stopped early
    np.testing.assert_array_equal(early.cv_loss_[evaluated], full.cv_loss_[evaluated])
    assert 3 < evaluated.sum() < evaluated.size
    last = np.flatnonzero(evaluated)[-1]
    assert np.all(early.cv_loss_[last - 2 : last + 1] > np.nanmin(early.cv_loss_))


def test_gamma_cross_validation_on_a_subsample_of_large_calibration_sets():
    """Above gamma_cv_size rows, gamma is tuned on a seeded subsample; the path uses all rows."""
    from sklearn_conformal._kqr import gamma_grid, select_gamma_cv

    from sklearn.datasets import make_regression

    X, y = make_regression(700, 3, noise=5.0, random_state=0)
    sub = SpeedCPRegressor(calibration_size=400, gamma_cv_size=150, random_state=0).fit(X, y)
    full = SpeedCPRegressor(calibration_size=400, gamma_cv_size=None, random_state=0).fit(X, y)
    same = SpeedCPRegressor(calibration_size=400, gamma_cv_size=400, random_state=0).fit(X, y)
    # at or above the calibration size nothing changes
    assert same.gamma_ == full.gamma_
    np.testing.assert_array_equal(same.predict_interval(X[:20]), full.predict_interval(X[:20]))
    # the subsample's gamma, recomputed independently on the same rows and folds
    assert sub.n_calibration_ == 400 and sub.path_lambdas_.size > 0
    seed, rows = sub._gamma_cv_seed, sub.gamma_cv_rows_
    assert full.gamma_cv_rows_ is None
    assert rows.shape == (150,) and np.all(np.diff(rows) > 0) and rows.max() < 400
    # the grid's scale comes from the same rows (the median over all pairs of a large
    # calibration set would need O(n^2) memory)
    grid = gamma_grid(sub._Z_cal[rows])
    np.testing.assert_array_equal(sub.gamma_grid_, grid)
    gamma, _, _ = select_gamma_cv(
        sub._Z_cal[rows], sub._Phi[rows], sub._S[rows], 0.1, grid, random_state=seed,
        lam_min_ratio=sub.lambda_min_ratio, max_steps=sub._max_steps, patience=3,
    )
    assert sub.gamma_ == gamma


def test_lambda_cv_is_the_scaled_geometric_mean_of_the_folds_best_lambdas():
    """lambda_="cv": each fold's lambda of least validation loss (recomputed here from the
    fold's own path with its validation kernel), geometric mean, scaled to all rows."""
    from sklearn.model_selection import KFold

    from sklearn_conformal._kqr import kernel_matrix, lambda_path

    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, size=(500, 2))
    y = X[:, 0] + rng.normal(size=500) * (0.2 + np.abs(X[:, 0]))
    reg = SpeedCPRegressor(gamma=0.7, lambda_="cv", n_folds=4, random_state=0).fit(X, y)
    n = reg.n_calibration_
    Z, Phi, S = reg._Z_cal, reg._Phi, reg._S
    kf = KFold(4, shuffle=True, random_state=reg._gamma_cv_seed)
    best = []
    for tr, va in kf.split(S):
        path = lambda_path(
            kernel_matrix(Z[tr], None, "rbf", 0.7), Phi[tr], S[tr], 0.1,
            K_val=kernel_matrix(Z[tr], Z[va], "rbf", 0.7), Phi_val=Phi[va], S_val=S[va],
            lam_min_ratio=reg.lambda_min_ratio, warn=False,
        )
        best.append(path.lambdas[np.nanargmin(path.val_loss)])
    np.testing.assert_allclose(reg.cv_lambdas_, best, rtol=1e-12)
    expected = np.exp(np.mean(np.log(best))) * n / (n * 3 / 4)
    assert reg.lam_ == pytest.approx(expected, rel=1e-12)
    assert reg.gamma_ == 0.7 and reg.gamma_grid_ is None
    # with gamma="auto" the folds' lambdas are those of the selected gamma
    auto = SpeedCPRegressor(lambda_="cv", random_state=0).fit(X, y)
    assert auto.cv_lambdas_.shape == (5,) and np.all(auto.cv_lambdas_ > 0)
    # too few rows to cross-validate: SIC, as "auto"
    small = SpeedCPRegressor(gamma=0.7, lambda_="cv", random_state=0, calibration_size=8)
    sic = SpeedCPRegressor(gamma=0.7, lambda_="auto", random_state=0, calibration_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert small.fit(X[:40], y[:40]).lam_ == sic.fit(X[:40], y[:40]).lam_
