"""Score and calibrator protocols: user subclasses, the new built-ins, Mondrian calibration.

Each user extension is checked against an independent computation (a built-in it must equal, or
numpy written out here), and each new score or calibrator against its coverage guarantee over
repeated draws.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_conformal import SplitConformalClassifier, SplitConformalRegressor
from sklearn_conformal._core import ClassificationConformalizer, conformal_quantile
from sklearn_conformal.calibrators import BaseCalibrator, MondrianCalibrator
from sklearn_conformal.conformity_scores import (
    BaseClassificationScore,
    BaseRegressionScore,
    CQRScore,
    MarginScore,
    RAPSScore,
    SAPSScore,
    SpreadScore,
    TopKScore,
)
from sklearn_conformal.exceptions import SmallCalibrationWarning, UnseenGroupWarning
from sklearn_conformal.metrics import group_coverage_gap, group_coverages

LEVEL = 0.9
Z = 4.5


# --- what a user writes -------------------------------------------------------------------


class UserLAC(BaseClassificationScore):
    """LAC written by a user: two lines."""

    def label_scores(self, proba, u=None):
        return 1.0 - proba


class UserMarginal(BaseCalibrator):
    """Marginal calibration written by a user."""

    def fit(self, data):
        self.data_ = data
        return self

    def thresholds(self, X, confidence_level, groups=None):
        return self.data_.threshold(self.data_.scores, confidence_level)


class UserAbsolute(BaseRegressionScore):
    predictions = ("center",)

    def conformity_scores(self, y, parts):
        return np.abs(y - parts["center"])

    def intervals(self, threshold, parts):
        return np.column_stack([parts["center"] - threshold, parts["center"] + threshold])


def _digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def _classifier(**params):
    return SplitConformalClassifier(LogisticRegression(max_iter=300), random_state=0, **params)


def test_user_score_and_calibrator_equal_the_builtins_in_the_classifier():
    X, y = _digits()
    reference = _classifier().fit(X, y).predict_set(X)
    assert np.array_equal(_classifier(conformity_score=UserLAC()).fit(X, y).predict_set(X), reference)
    assert np.array_equal(_classifier(mode=UserMarginal()).fit(X, y).predict_set(X), reference)


def test_user_score_objects_in_grid_search():
    X, y = _digits()
    search = GridSearchCV(
        _classifier(),
        {"conformity_score": ["lac", UserLAC(), SAPSScore(weight=0.05)]},
        cv=3,
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 3
    # UserLAC gives LAC's sets fold by fold, hence the same cross-validated score
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] == scores[1]
    nested = GridSearchCV(
        _classifier(conformity_score=SAPSScore()), {"conformity_score__weight": [0.02, 0.3]}, cv=3
    ).fit(X, y)
    assert nested.best_estimator_.conformalizer_.score_.weight in (0.02, 0.3)
    # the estimator clones the object it is given: the user's instance is never fitted
    score = RAPSScore(k_reg="auto", lambda_reg="auto")
    _classifier(conformity_score=score).fit(X, y)
    assert score.k_reg == "auto"


def test_bad_scores_and_modes_are_refused_naming_the_parameter():
    X, y = _digits()
    with pytest.raises(InvalidParameterError, match="conformity_score"):
        _classifier(conformity_score="nonsense").fit(X, y)
    with pytest.raises(InvalidParameterError, match="conformity_score"):
        _classifier(conformity_score=object()).fit(X, y)
    with pytest.raises(InvalidParameterError, match="mode"):
        _classifier(mode=object()).fit(X, y)
    with pytest.raises(NotImplementedError, match="label_scores"):
        _classifier(conformity_score=BaseClassificationScore()).fit(X, y)

    class Wrong(BaseClassificationScore):
        def label_scores(self, proba, u=None):
            return np.full(proba.shape, np.nan)

    with pytest.raises(ValueError, match="NaN calibration scores"):
        _classifier(conformity_score=Wrong()).fit(X, y)
    X_r, y_r = make_regression(200, 3, noise=1.0, random_state=0)
    with pytest.raises(InvalidParameterError, match="conformity_score"):
        SplitConformalRegressor(conformity_score="nonsense").fit(X_r, y_r)
    with pytest.raises(InvalidParameterError, match="mode"):
        SplitConformalRegressor(mode="class").fit(X_r, y_r)


# --- the new classification scores against numpy written out ---------------------------


def _ranks(proba):
    """1-based rank of each label, decreasing probability, ties by the smaller index."""
    n, k = proba.shape
    ranks = np.empty((n, k), dtype=int)
    for i in range(n):
        order = sorted(range(k), key=lambda j: (-proba[i, j], j))
        for r, j in enumerate(order):
            ranks[i, j] = r + 1
    return ranks


def _proba(seed, n=50, k=6, ties=True):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(k), size=n)
    if ties:
        proba = np.round(proba, 1)
        proba /= proba.sum(axis=1, keepdims=True)
    return proba


def test_top_k_saps_margin_scores_equal_their_definitions():
    proba = _proba(0)
    ranks = _ranks(proba)
    assert np.array_equal(TopKScore().label_scores(proba), ranks.astype(float))
    u = np.random.default_rng(1).uniform(size=len(proba))
    p_max = proba.max(axis=1)
    saps = np.array(
        [
            [u[i] * p_max[i] if ranks[i, j] == 1 else p_max[i] + (ranks[i, j] - 2 + u[i]) * 0.2
             for j in range(proba.shape[1])]
            for i in range(len(proba))
        ]
    )
    np.testing.assert_allclose(SAPSScore(weight=0.2).label_scores(proba, u), saps, rtol=0, atol=1e-15)
    margin = np.array(
        [
            [np.delete(proba[i], j).max() - proba[i, j] for j in range(proba.shape[1])]
            for i in range(len(proba))
        ]
    )
    np.testing.assert_array_equal(MarginScore().label_scores(proba), margin)


def _dirichlet_draw(rng, n, k=6):
    proba = rng.dirichlet(np.linspace(0.3, 2.0, k), size=n)
    labels = (rng.uniform(size=(n, 1)) > np.cumsum(proba, axis=1)).sum(axis=1)
    return proba, np.minimum(labels, k - 1)


@pytest.mark.parametrize(
    "score, continuous",
    [
        (TopKScore(), False),
        (SAPSScore(), True),
        (MarginScore(), True),
        (RAPSScore(k_reg="auto", lambda_reg="auto"), True),
    ],
    ids=["top_k", "saps", "margin", "raps_auto"],
)
def test_new_scores_cover_within_binomial_bounds(score, continuous):
    """Coverage over 200 draws lies in [level, level + 1/(n+1)] up to 4.5 standard errors."""
    rng = np.random.default_rng(7)
    n_cal, n_test, n_draws = 100, 100, 200
    hits, n_used = [], []
    for _ in range(n_draws):
        proba_cal, y_cal = _dirichlet_draw(rng, n_cal)
        proba_test, y_test = _dirichlet_draw(rng, n_test)
        conformalizer = ClassificationConformalizer(clone(score)).fit(
            proba_cal, y_cal, 6, LEVEL, random_state=int(rng.integers(2**31 - 1))
        )
        sets = conformalizer.predict_set(proba_test)
        hits.append(sets[np.arange(n_test), y_test].mean())
        n_used.append(len(conformalizer.conformity_scores_))
    n = int(np.mean(n_used))
    se = np.sqrt((LEVEL * (1 - LEVEL) / (n + 2) + LEVEL * (1 - LEVEL) / n_test) / n_draws)
    assert np.mean(hits) >= LEVEL - Z * se
    if continuous:
        assert np.mean(hits) <= LEVEL + 1.0 / (n + 1) + Z * se


def test_raps_auto_tunes_on_rows_it_leaves_out_of_calibration():
    rng = np.random.default_rng(3)
    proba, y = _dirichlet_draw(rng, 500)
    conformalizer = ClassificationConformalizer(RAPSScore(k_reg="auto", lambda_reg="auto")).fit(
        proba, y, 6, LEVEL, random_state=0
    )
    assert len(conformalizer.conformity_scores_) == 400
    # k_reg: the level quantile of the true label's rank on the 100 tuning rows
    tune = np.random.RandomState(0).permutation(500)[:100]
    ranks = _ranks(proba[tune])[np.arange(100), y[tune]]
    assert conformalizer.score_.k_reg == conformal_quantile(ranks, LEVEL)
    assert conformalizer.score_.lambda_reg in (0.001, 0.01, 0.1, 0.2, 0.5)


# --- regression scores ----------------------------------------------------------------------


def _regression(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = X[:, 0] + (1.0 + np.abs(X[:, 0])) * rng.normal(size=n)
    return X, y


def test_user_regression_score_and_calibrator_equal_the_builtins():
    X, y = _regression()
    reference = SplitConformalRegressor(random_state=0).fit(X, y).predict_interval(X)
    for params in ({"conformity_score": UserAbsolute()}, {"mode": UserMarginal()}):
        got = SplitConformalRegressor(random_state=0, **params).fit(X, y).predict_interval(X)
        np.testing.assert_array_equal(got, reference)
    search = GridSearchCV(
        SplitConformalRegressor(random_state=0),
        {"conformity_score": ["absolute", UserAbsolute(), SpreadScore(lambda X: 1 + np.abs(X[:, 0]))]},
        cv=3,
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] == scores[1]
    # the known spread fits these data: it wins on the interval score
    assert isinstance(search.best_params_["conformity_score"], SpreadScore)


def test_spread_score_equals_its_definition():
    X, y = _regression()
    spread = lambda X: 1.0 + np.abs(np.asarray(X)[:, 0])  # noqa: E731
    model = LinearRegression().fit(X, y)
    reg = SplitConformalRegressor(
        FrozenEstimator(model), conformity_score=SpreadScore(spread)
    ).fit(X[:300], y[:300])
    q = np.sort(np.abs(y[:300] - model.predict(X[:300])) / spread(X[:300]))[
        int(np.ceil(301 * LEVEL)) - 1
    ]
    expected = np.column_stack(
        [model.predict(X[300:]) - q * spread(X[300:]), model.predict(X[300:]) + q * spread(X[300:])]
    )
    np.testing.assert_allclose(reg.predict_interval(X[300:]), expected, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="positive"):
        SplitConformalRegressor(conformity_score=SpreadScore(lambda X: -np.ones(len(X)))).fit(X, y)


def test_asymmetric_cqr_controls_each_tail():
    """Each tail is missed with probability at most (1 - level) / 2 (up to 4.5 s.e.)."""
    rng = np.random.default_rng(11)
    # deliberately biased quantile models: the symmetric score would miss one tail far more
    lower = FrozenEstimator(LinearRegression().fit(np.array([[0.0], [1.0]]), [-0.5, -0.5]))
    upper = FrozenEstimator(LinearRegression().fit(np.array([[0.0], [1.0]]), [3.0, 3.0]))
    n_cal, n_test, n_draws = 200, 200, 200
    below, above, widths = [], [], []
    for _ in range(n_draws):
        X = rng.uniform(size=(n_cal + n_test, 1))
        y = rng.normal(size=n_cal + n_test)
        reg = SplitConformalRegressor(
            (lower, upper), conformity_score=CQRScore(symmetric=False)
        ).fit(X[:n_cal], y[:n_cal])
        lo_scores, hi_scores = reg.conformity_scores_.T
        tail = 1 - (1 - LEVEL) / 2
        np.testing.assert_array_equal(
            reg.quantile_, [conformal_quantile(lo_scores, tail), conformal_quantile(hi_scores, tail)]
        )
        intervals = reg.predict_interval(X[n_cal:])
        below.append(np.mean(y[n_cal:] < intervals[:, 0]))
        above.append(np.mean(y[n_cal:] > intervals[:, 1]))
    alpha_tail = (1 - LEVEL) / 2
    se = np.sqrt(alpha_tail * (1 - alpha_tail) * (1 / (n_cal + 2) + 1 / n_test) / n_draws)
    for missed in (below, above):
        assert np.mean(missed) <= alpha_tail + Z * se
        # exact, not grossly conservative: at least alpha_tail - 1/(n+1)
        assert np.mean(missed) >= alpha_tail - 1.0 / (n_cal + 1) - Z * se


# --- Mondrian calibration ---------------------------------------------------------------------


def _grouped(n, seed):
    """Three groups whose noise differs tenfold: marginal calibration under-covers the noisy one."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, size=n)
    x = rng.uniform(size=n)
    y = x + np.array([0.1, 1.0, 3.0])[group] * rng.normal(size=n)
    return pd.DataFrame({"x": x, "group": group}), y, group


def test_mondrian_regression_covers_within_every_group():
    grid = pd.DataFrame({"x": np.linspace(0, 1, 5), "group": np.zeros(5)})
    model = FrozenEstimator(LinearRegression().fit(grid, grid["x"]))
    n_cal, n_test, n_draws = 150, 150, 150
    per_group = np.zeros((3, 2))
    marginal = np.zeros((3, 2))
    rng = np.random.default_rng(5)
    for _ in range(n_draws):
        X, y, group = _grouped(n_cal + n_test, int(rng.integers(2**31 - 1)))
        cal, test = slice(0, n_cal), slice(n_cal, None)
        for counts, mode in ((per_group, MondrianCalibrator("group")), (marginal, "marginal")):
            reg = SplitConformalRegressor(model, mode=mode).fit(X.iloc[cal], y[cal])
            intervals = reg.predict_interval(X.iloc[test])
            covered = (intervals[:, 0] <= y[test]) & (y[test] <= intervals[:, 1])
            np.add.at(counts, (group[test], 0), covered)
            np.add.at(counts, (group[test], 1), 1)
    coverage = per_group[:, 0] / per_group[:, 1]
    n_group = n_cal / 3
    se = np.sqrt(LEVEL * (1 - LEVEL) * (1 / (n_group + 2) + 3 / n_test) / n_draws)
    assert np.all(coverage >= LEVEL - Z * se), coverage
    assert np.all(coverage <= LEVEL + 1 / (n_group + 1) + Z * se), coverage
    # the marginal threshold under-covers the noisiest group: that is what Mondrian fixes
    assert marginal[2, 0] / marginal[2, 1] < LEVEL - 0.05


def test_mondrian_groups_by_column_callable_or_metadata_agree():
    X, y, group = _grouped(900, 0)
    fits = {
        "column name": SplitConformalRegressor(mode=MondrianCalibrator("group"), random_state=0).fit(X, y),
        "column index": SplitConformalRegressor(mode=MondrianCalibrator(1), random_state=0).fit(X, y),
        "callable": SplitConformalRegressor(
            mode=MondrianCalibrator(lambda X: X["group"].to_numpy()), random_state=0
        ).fit(X, y),
        "metadata": SplitConformalRegressor(mode=MondrianCalibrator(), random_state=0).fit(
            X, y, groups=group
        ),
    }
    reference = fits["column name"].predict_interval(X)
    for name, reg in fits.items():
        groups = group if name == "metadata" else None
        np.testing.assert_array_equal(reg.predict_interval(X, groups=groups), reference, err_msg=name)
    with pytest.raises(ValueError, match="groups="):
        fits["metadata"].predict_interval(X)
    with pytest.raises(ValueError, match="groups must hold one group per row"):
        SplitConformalRegressor(mode=MondrianCalibrator()).fit(X, y, groups=group[:-1])


def test_mondrian_thresholds_equal_per_group_quantiles_and_crepes():
    crepes = pytest.importorskip("crepes")
    X, y, group = _grouped(690, 1)
    model = LinearRegression().fit(X, y)
    reg = SplitConformalRegressor(FrozenEstimator(model), mode=MondrianCalibrator("group")).fit(X, y)
    residuals = np.abs(y - model.predict(X))
    for g in range(3):
        r = np.sort(residuals[group == g])
        k = int(np.ceil((len(r) + 1) * LEVEL - 1e-9))
        assert reg.calibrator_.thresholds_[g] == r[k - 1]
    # crepes' Mondrian regressor on the same residuals and bins. Its index
    # int((1 - c) * (n + 1)) - 1 agrees with ceil((n + 1) c) except where (n + 1)(1 - c) is an
    # integer, where float rounding makes it take the next larger residual; the group sizes
    # here avoid that case (checked below).
    assert all(((group == g).sum() + 1) % 10 != 0 for g in range(3))
    reference = crepes.ConformalRegressor().fit(residuals=residuals, bins=group)
    X_test, _, group_test = _grouped(300, 2)
    expected = reference.predict_int(model.predict(X_test), bins=group_test, confidence=LEVEL)
    np.testing.assert_array_equal(reg.predict_interval(X_test), expected)
    # where (n + 1)(1 - c) is an integer (n = 99, c = 0.9) crepes takes the 91st smallest of
    # 99 scores; the 90th already has coverage 90 / 100 = 0.9 exactly, so ours is the smallest
    # valid threshold
    residuals = np.arange(1.0, 100.0)
    crepes_half = crepes.ConformalRegressor().fit(residuals=residuals).predict_int(
        np.zeros(1), confidence=LEVEL
    )[0, 1]
    assert (crepes_half, conformal_quantile(residuals, LEVEL)) == (91.0, 90.0)


def test_mondrian_unseen_and_small_groups_get_infinite_intervals_with_a_warning():
    X, y, group = _grouped(300, 3)
    keep = group != 2
    reg = SplitConformalRegressor(
        FrozenEstimator(LinearRegression().fit(X, y)), mode=MondrianCalibrator("group")
    ).fit(X[keep], y[keep])
    with pytest.warns(UnseenGroupWarning, match=r"\[2\]"):
        intervals = reg.predict_interval(X)
    assert np.all(np.isinf(intervals[group == 2]))
    assert np.all(np.isfinite(intervals[group != 2]))
    tiny = group.copy()
    tiny[:3] = 7  # a group of three rows cannot certify 0.9
    with pytest.warns(SmallCalibrationWarning, match="7"):
        SplitConformalRegressor(
            FrozenEstimator(LinearRegression().fit(X, y)), mode=MondrianCalibrator()
        ).fit(X, y, groups=tiny)


def test_mondrian_classifier_covers_within_groups_of_rows():
    X, y = _digits()
    rng = np.random.default_rng(0)
    frozen = FrozenEstimator(LogisticRegression(max_iter=300).fit(X[::4], y[::4]))
    # groups of rows by ink: the model is less sure on some, and marginal sets under-cover them
    ink = np.digitize(X.sum(axis=1), np.quantile(X.sum(axis=1), [1 / 3, 2 / 3]))
    rest = np.setdiff1d(np.arange(len(y)), np.arange(0, len(y), 4))
    counts = np.zeros((3, 2))
    n_draws = 60
    for _ in range(n_draws):
        perm = rng.permutation(rest)
        cal, test = perm[:600], perm[600:]
        clf = SplitConformalClassifier(
            frozen, mode=MondrianCalibrator(), random_state=int(rng.integers(1000))
        )
        clf.fit(X[cal], y[cal], groups=ink[cal])
        sets = clf.predict_set(X[test], groups=ink[test])
        covered = sets[np.arange(len(test)), y[test]]
        np.add.at(counts, (ink[test], 0), covered)
        np.add.at(counts, (ink[test], 1), 1)
    coverage = counts[:, 0] / counts[:, 1]
    n_test = len(rest) - 600
    se = np.sqrt(LEVEL * (1 - LEVEL) * (1 / (200 + 2) + 3 / n_test) / n_draws)
    assert np.all(coverage >= LEVEL - Z * se), coverage
    assert np.all(coverage <= LEVEL + 1 / 201 + Z * se), coverage


def test_group_coverage_metrics_equal_their_definitions():
    y = np.array([0, 1, 2, 0, 1, 2])
    sets = np.eye(3, dtype=bool)[[0, 1, 0, 0, 2, 2]]
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    names, coverages, counts = group_coverages(y, sets, groups)
    assert names.tolist() == ["a", "b"]
    np.testing.assert_allclose(coverages, [2 / 3, 2 / 3])
    assert counts.tolist() == [3, 3]
    assert group_coverage_gap(y, sets, groups, 0.9) == pytest.approx(100 * (0.9 - 2 / 3))
    with pytest.raises(ValueError, match="one group per row"):
        group_coverages(y, sets, groups[:-1])


def test_raps_auto_on_too_few_rows_falls_back_to_the_defaults_with_a_warning():
    rng = np.random.default_rng(4)
    proba, y = _dirichlet_draw(rng, 30)
    with pytest.warns(SmallCalibrationWarning, match="tuning rows"):
        conformalizer = ClassificationConformalizer(RAPSScore(k_reg="auto")).fit(
            proba, y, 6, LEVEL, random_state=0
        )
    assert (conformalizer.score_.k_reg, conformalizer.score_.lambda_reg) == (1, 0.1)
    assert len(conformalizer.conformity_scores_) == 30
