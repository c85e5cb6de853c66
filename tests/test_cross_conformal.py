"""CrossConformalRegressor: CV+ / jackknife+ against their definitions, MAPIE and split CP."""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, QuantileRegressor, Ridge
from sklearn.model_selection import GroupKFold, KFold, LeaveOneOut

from sklearn_conformal import CrossConformalRegressor, SplitConformalRegressor
from sklearn_conformal.conformity_scores import CQRScore

LEVEL = 0.9


def data(n, seed=0, n_features=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    y = X[:, 0] - 0.5 * X[:, 1] + rng.normal(size=n)
    return X, y


def covered(intervals, y):
    return (y >= intervals[:, 0]) & (y <= intervals[:, 1])


# --------------------------------------------------------------------------------------------
# the definition
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cv", [KFold(5, shuffle=True, random_state=3), LeaveOneOut()])
def test_plus_intervals_are_the_cv_plus_order_statistics(cv):
    X, y = data(60)
    X_test = data(7, seed=1)[0]
    reg = CrossConformalRegressor(LinearRegression(), cv=cv).fit(X, y)
    n, alpha = len(y), 1 - LEVEL
    mu = np.empty((len(X_test), n))
    residuals = np.empty(n)
    for train, test in cv.split(X):
        model = LinearRegression().fit(X[train], y[train])
        mu[:, test] = model.predict(X_test)[:, None]
        residuals[test] = np.abs(y[test] - model.predict(X[test]))
    lower = np.sort(mu - residuals, axis=1)[:, int(np.floor(alpha * (n + 1))) - 1]
    upper = np.sort(mu + residuals, axis=1)[:, int(np.ceil((1 - alpha) * (n + 1))) - 1]
    np.testing.assert_allclose(reg.predict_interval(X_test), np.column_stack([lower, upper]))
    np.testing.assert_allclose(reg.conformity_scores_, residuals)


def test_minmax_interval_is_the_fold_range_widened_by_the_split_quantile():
    X, y = data(60)
    X_test = data(7, seed=1)[0]
    cv = KFold(4, shuffle=True, random_state=0)
    reg = CrossConformalRegressor(LinearRegression(), method="minmax", cv=cv).fit(X, y)
    mu = np.column_stack([m.predict(X_test) for m in reg.estimators_])
    q = np.sort(reg.conformity_scores_)[int(np.ceil(LEVEL * 61)) - 1]
    expected = np.column_stack([mu.min(axis=1) - q, mu.max(axis=1) + q])
    np.testing.assert_allclose(reg.predict_interval(X_test), expected)


@pytest.mark.filterwarnings("ignore::sklearn_conformal.exceptions.SmallCalibrationWarning")
def test_too_few_samples_give_infinite_intervals():
    X, y = data(8)
    intervals = CrossConformalRegressor(cv=4, random_state=0).fit(X, y).predict_interval(X)
    assert np.all(intervals[:, 0] == -np.inf) and np.all(intervals[:, 1] == np.inf)


def test_chunked_prediction_equals_one_chunk(monkeypatch):
    from sklearn_conformal.regression import _cross

    X, y = data(80)
    X_test = data(50, seed=1)[0]
    reg = CrossConformalRegressor(conformity_score="normalized", random_state=0).fit(X, y)
    whole = reg.predict_interval(X_test)
    monkeypatch.setattr(_cross, "_CHUNK_ELEMENTS", 80 * 7 * 3)  # 3 rows per chunk
    np.testing.assert_array_equal(reg.predict_interval(X_test), whole)


def test_several_levels_and_pandas_output():
    pd = pytest.importorskip("pandas")
    X, y = data(100)
    reg = CrossConformalRegressor(random_state=0).fit(X, y)
    both = reg.predict_interval(X[:5], confidence_level=[0.8, 0.9])
    np.testing.assert_array_equal(both[:, :, 0], reg.predict_interval(X[:5], 0.8))
    np.testing.assert_array_equal(both[:, :, 1], reg.predict_interval(X[:5]))
    X_frame = pd.DataFrame(X[:5], index=list("abcde"))
    frame = reg.set_output(predict="pandas").predict_interval(X_frame)
    assert list(frame.columns) == ["lower", "upper"] and list(frame.index) == list("abcde")


# --------------------------------------------------------------------------------------------
# MAPIE 1.6 on identical folds
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["plus", "minmax"])
@pytest.mark.parametrize("cv", [KFold(5, shuffle=True, random_state=1), LeaveOneOut()])
@pytest.mark.parametrize("n", [50, 100, 201])
def test_intervals_equal_mapie_on_identical_folds(method, cv, n):
    mapie = pytest.importorskip("mapie.regression")
    X, y = data(n)
    X_test = data(40, seed=1)[0]
    for level in (0.8, 0.9, 0.95):
        theirs = mapie.CrossConformalRegressor(
            Ridge(), confidence_level=level, method=method, cv=cv
        ).fit_conformalize(X, y)
        _, expected = theirs.predict_interval(X_test, allow_infinite_bounds=True)
        ours = CrossConformalRegressor(
            Ridge(), confidence_level=level, method=method, cv=cv
        ).fit(X, y)
        np.testing.assert_allclose(ours.predict_interval(X_test), expected[:, :, 0], atol=1e-10)
        if isinstance(cv, LeaveOneOut) or n % 5 == 0:
            # equal folds: MAPIE's fold-size weighted mean is our plain mean of the fold models
            np.testing.assert_allclose(ours.predict(X_test), theirs.predict(X_test), atol=1e-10)


def test_mapie_rounds_an_integer_rank_up_where_ours_is_exact():
    """n = 59, level 0.95: (n + 1) * 0.95 = 57 exactly.

    MAPIE's lower bound uses the level ``(1 - 2 alpha) + alpha = 0.9500000000000001`` and takes
    ``ceil(60 * 0.9500000000000001) = 58``; the CV+ theorem needs the smallest rank ``k`` with
    ``k >= (1 - alpha)(n + 1)``, i.e. 57. MAPIE's lower bound is one order statistic further
    down (its upper bound equals ours): ours is the finite-sample one.
    """
    mapie = pytest.importorskip("mapie.regression")
    X, y = data(59)
    X_test = data(20, seed=1)[0]
    cv = KFold(5, shuffle=True, random_state=1)
    _, theirs = mapie.CrossConformalRegressor(
        Ridge(), confidence_level=0.95, cv=cv
    ).fit_conformalize(X, y).predict_interval(X_test)
    ours = CrossConformalRegressor(Ridge(), confidence_level=0.95, cv=cv).fit(X, y)
    intervals = ours.predict_interval(X_test)
    np.testing.assert_allclose(theirs[:, 1, 0], intervals[:, 1], atol=1e-10)
    assert np.all(theirs[:, 0, 0] < intervals[:, 0])
    # the candidates mu_{-k(i)}(x) - R_i, sorted: ours is rank 60 - 57 + 1 = 4 from below,
    # MAPIE's rank 60 - 58 + 1 = 3
    mu = np.column_stack([m.predict(X_test) for m in ours.estimators_])
    fold = np.argmax(ours.oof_weights_, axis=1)
    lows = np.sort(mu[:, fold] - ours.conformity_scores_, axis=1)
    np.testing.assert_allclose(intervals[:, 0], lows[:, 59 - 57])
    np.testing.assert_allclose(theirs[:, 0, 0], lows[:, 59 - 58], atol=1e-10)


# --------------------------------------------------------------------------------------------
# coverage and efficiency
# --------------------------------------------------------------------------------------------
def _coverage(make, n_fits, n, n_test=500):
    hits = []
    for seed in range(n_fits):
        X, y = data(n + n_test, seed=100 + seed)
        reg = make(seed).fit(X[:n], y[:n])
        hits.append(covered(reg.predict_interval(X[n:]), y[n:]).mean())
    return np.asarray(hits)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: CrossConformalRegressor(LinearRegression(), cv=10, random_state=s),
        lambda s: CrossConformalRegressor(LinearRegression(), cv=LeaveOneOut()),
        lambda s: CrossConformalRegressor(
            LinearRegression(), cv="bootstrap", n_resamplings=20, random_state=s
        ),
        lambda s: CrossConformalRegressor(
            LinearRegression(), conformity_score="normalized", random_state=s
        ),
        lambda s: CrossConformalRegressor(
            QuantileRegressor(alpha=0.0), conformity_score="cqr", random_state=s
        ),
    ],
    ids=["cv+", "jackknife+", "j+ab", "normalized", "cqr"],
)
def test_coverage_over_repeated_draws(make):
    n_fits, n, n_test = 8, 60, 500
    hits = _coverage(make, n_fits, n, n_test)
    # guarantee 1 - 2 alpha; the mean of ~ 1 - alpha must not fall 4 standard errors below it
    se = np.sqrt((LEVEL * (1 - LEVEL) / (n + 2) + LEVEL * (1 - LEVEL) / n_test) / n_fits)
    assert hits.mean() >= 1 - 2 * (1 - LEVEL)
    assert hits.mean() >= LEVEL - 4 * se, hits.mean()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["plus", "minmax"])
def test_coverage_is_about_one_minus_alpha_over_many_draws(method):
    n_fits, n, n_test = 200, 100, 200
    hits = _coverage(
        lambda s: CrossConformalRegressor(LinearRegression(), method=method, random_state=s),
        n_fits, n, n_test,
    )
    se = np.sqrt((LEVEL * (1 - LEVEL) / (n + 2) + LEVEL * (1 - LEVEL) / n_test) / n_fits)
    print(f"{method}: mean coverage {hits.mean():.4f} (se {se:.4f})")
    assert LEVEL - 4 * se <= hits.mean() <= LEVEL + 1 / (n + 1) + 4 * se + 0.02


def test_cv_plus_is_shorter_than_split_at_n_200():
    lengths = []
    # 20 features: the 10 % of data split CP holds out for calibration costs its model
    for seed in range(10):
        X, y = data(700, seed=seed, n_features=20)
        cross = CrossConformalRegressor(LinearRegression(), cv=10, random_state=seed)
        split = SplitConformalRegressor(LinearRegression(), random_state=seed)
        widths = [
            np.mean(np.diff(est.fit(X[:200], y[:200]).predict_interval(X[200:]), axis=1))
            for est in (cross, split)
        ]
        lengths.append(widths)
    lengths = np.asarray(lengths)
    assert lengths[:, 0].mean() < lengths[:, 1].mean(), lengths.mean(axis=0)


# --------------------------------------------------------------------------------------------
# folds, groups, determinism
# --------------------------------------------------------------------------------------------
def test_group_splitter_keeps_groups_together():
    X, y = data(120)
    groups = np.repeat(np.arange(12), 10)
    reg = CrossConformalRegressor(cv=GroupKFold(4)).fit(X, y, groups=groups)
    for train, test in reg.folds_:
        assert not set(groups[train]) & set(groups[test])
    assert np.isfinite(reg.predict_interval(X[:3])).all()


def test_group_splitter_without_groups_names_groups():
    X, y = data(40)
    with pytest.raises(ValueError, match="groups"):
        CrossConformalRegressor(cv=GroupKFold(4)).fit(X, y)


@pytest.mark.parametrize("cv", [5, "bootstrap"])
@pytest.mark.parametrize("score", ["absolute", "cqr"])
def test_same_seed_same_results_whatever_n_jobs(cv, score):
    X, y = data(150)
    results = []
    # a small boosting model: the CQR default with few iterations, seeded by random_state
    estimator = None
    if score == "cqr":
        estimator = HistGradientBoostingRegressor(loss="quantile", max_iter=10)
    for n_jobs in (1, 2):
        reg = CrossConformalRegressor(
            estimator,
            conformity_score=score, cv=cv, n_resamplings=6, n_jobs=n_jobs, random_state=7
        ).fit(X, y)
        results.append((reg.predict(X[:20]), reg.predict_interval(X[:20])))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_bootstrap_scores_each_sample_with_the_models_that_left_it_out():
    X, y = data(80)
    reg = CrossConformalRegressor(
        LinearRegression(), cv="bootstrap", n_resamplings=15, random_state=0
    ).fit(X, y)
    assert len(reg.estimators_) == 15
    preds = np.column_stack([m.predict(X) for m in reg.estimators_])
    for i in np.flatnonzero(reg.calibration_mask_)[:10]:
        left_out = [k for k, (train, _) in enumerate(reg.folds_) if i not in train]
        expected = abs(y[i] - preds[i, left_out].mean())
        j = np.flatnonzero(reg.calibration_mask_).tolist().index(i)
        np.testing.assert_allclose(reg.conformity_scores_[j], expected)


def test_predict_is_the_mean_of_the_fold_models():
    X, y = data(50)
    reg = CrossConformalRegressor(LinearRegression(), random_state=0).fit(X, y)
    mean = np.mean([m.predict(X) for m in reg.estimators_], axis=0)
    np.testing.assert_allclose(reg.predict(X), mean)


# --------------------------------------------------------------------------------------------
# errors name the parameter
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, match",
    [
        ({"method": "naive"}, "method"),
        ({"cv": 1}, "cv"),
        ({"cv": "loo"}, "cv"),
        ({"n_resamplings": 1}, "n_resamplings"),
        ({"confidence_level": 1.5}, "confidence_level"),
        ({"conformity_score": "gamma"}, "conformity_score"),
        ({"conformity_score": CQRScore(symmetric=False), "estimator": QuantileRegressor()},
         "conformity_score"),
        ({"n_jobs": "two"}, "n_jobs"),
    ],
)
def test_bad_parameters_name_the_parameter(params, match):
    X, y = data(40)
    with pytest.raises(ValueError, match=match):
        CrossConformalRegressor(**params).fit(X, y)


def test_more_folds_than_samples_names_cv():
    X, y = data(4)
    with pytest.raises(ValueError, match="cv=5"):
        CrossConformalRegressor().fit(X, y)


def test_frozen_estimator_is_refused():
    from sklearn.frozen import FrozenEstimator

    X, y = data(40)
    with pytest.raises(ValueError, match="FrozenEstimator"):
        CrossConformalRegressor(FrozenEstimator(LinearRegression().fit(X, y))).fit(X, y)


def test_too_few_samples_warn():
    from sklearn_conformal.exceptions import SmallCalibrationWarning

    X, y = data(8)
    with pytest.warns(SmallCalibrationWarning):
        CrossConformalRegressor(cv=4, random_state=0).fit(X, y)


def test_sample_weight_reaches_each_fold_model_for_its_training_rows():
    X, y = data(60)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=60)
    reg = CrossConformalRegressor(LinearRegression(), cv=4, random_state=0)
    reg.fit(X, y, sample_weight=weights)
    for model, (train, _) in zip(reg.estimators_, reg.folds_):
        expected = LinearRegression().fit(X[train], y[train], sample_weight=weights[train])
        np.testing.assert_allclose(model.coef_, expected.coef_)


def test_metadata_routing_sends_requested_metadata_to_the_fold_models():
    import sklearn

    X, y = data(60)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=60)
    with sklearn.config_context(enable_metadata_routing=True):
        model = LinearRegression().set_fit_request(sample_weight=True)
        reg = CrossConformalRegressor(model, cv=3, random_state=0)
        reg.fit(X, y, sample_weight=weights)
    train = reg.folds_[0][0]
    expected = LinearRegression().fit(X[train], y[train], sample_weight=weights[train])
    np.testing.assert_allclose(reg.estimators_[0].coef_, expected.coef_)
