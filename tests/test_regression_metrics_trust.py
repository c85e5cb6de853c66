"""Split conformal regression and the metrics: results that can be trusted.

Crossing quantile regressors, reproducible defaults, NaN-capable wrapped models, and metrics that
refuse input they would silently misread.
"""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor
from sklearn.exceptions import DataConversionWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

from sklearn_conformal import SplitConformalRegressor
from sklearn_conformal._core import check_confidence_level
from sklearn_conformal._estimator_utils import wrapped_allows_nan
from sklearn_conformal.metrics import (
    class_coverage_gap,
    class_coverages,
    coverage,
    excess_risk_target_coverage,
    interval_score,
    mean_interval_length,
    mean_set_size,
    mean_squared_conditional_error,
    size_stratified_coverage,
    worst_slab_coverage,
)
from sklearn_conformal.metrics._conditional import _min_window_mean

LEVEL = 0.9


class Band(RegressorMixin, BaseEstimator):
    """Fixed "quantile model": ``x0 + offset``, or ``x0 + narrow_offset`` where ``x1 > 1.5``.

    A lower model with ``narrow_offset > 0`` and an upper one with ``narrow_offset < 0`` cross
    on the rows with ``x1 > 1.5``.
    """

    def __init__(self, offset=0.0, narrow_offset=0.0):
        self.offset = offset
        self.narrow_offset = narrow_offset

    def fit(self, X, y):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        return X[:, 0] + np.where(X[:, 1] > 1.5, self.narrow_offset, self.offset)


def _data(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, X[:, 0] + rng.normal(size=n)


def _frozen_cqr(lower, upper, X, y, level=LEVEL):
    """CQR calibrated on all of (X, y), so the threshold can be recomputed by hand."""
    pair = (FrozenEstimator(lower.fit(X, y)), FrozenEstimator(upper.fit(X, y)))
    return SplitConformalRegressor(pair, conformity_score="cqr", confidence_level=level).fit(X, y)


def _hand_cqr(lower, upper, X_cal, y_cal, X_test, level=LEVEL):
    """Independent CQR: order the two predictions, score, take the ceil((n+1) level)-th score."""
    lo, hi = lower.predict(X_cal), upper.predict(X_cal)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    scores = np.sort(np.maximum(lo - y_cal, y_cal - hi))
    q = scores[int(np.ceil((len(y_cal) + 1) * level)) - 1]
    lo, hi = lower.predict(X_test), upper.predict(X_test)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return q, lo - q, hi + q, 0.5 * (lo + hi)


# --- 1. crossing quantile regressors -----------------------------------------------------------


def test_cqr_orders_crossing_quantile_predictions():
    X, y = _data(2000, 0)
    X_test, _ = _data(500, 1)
    lower, upper = Band(-1.645, 0.5), Band(1.645, -0.5)  # cross where x1 > 1.5
    assert np.any(lower.predict(X_test) > upper.predict(X_test))
    reg = _frozen_cqr(lower, upper, X, y)
    q, lo, hi, _ = _hand_cqr(lower, upper, X, y, X_test)
    intervals = reg.predict_interval(X_test)
    assert q > 0 and reg.quantile_ == q
    np.testing.assert_array_equal(intervals, np.column_stack([lo, hi]))
    assert np.all(intervals[:, 0] <= intervals[:, 1])
    # the model order does not matter: swapping the two regressors gives the same intervals
    swapped = _frozen_cqr(Band(1.645, -0.5), Band(-1.645, 0.5), X, y)
    np.testing.assert_array_equal(swapped.predict_interval(X_test), intervals)


def test_cqr_negative_correction_gives_a_point_not_a_crossing_interval():
    X, y = _data(2000, 2)
    X_test, _ = _data(500, 3)
    # too wide almost everywhere (so q < 0), 0.2 wide where x1 > 1.5: there the set is empty
    lower, upper = Band(-4.0, -0.1), Band(4.0, 0.1)
    reg = _frozen_cqr(lower, upper, X, y)
    q, lo, hi, middle = _hand_cqr(lower, upper, X, y, X_test)
    assert q < -0.1
    empty = lo > hi
    assert empty.any() and not empty.all()
    intervals = reg.predict_interval(X_test)
    np.testing.assert_array_equal(intervals[~empty], np.column_stack([lo, hi])[~empty])
    np.testing.assert_array_equal(intervals[empty], np.column_stack([middle, middle])[empty])
    # a lower level pushes q further down; intervals never cross at any level
    for level in (0.5, 0.2):
        low = reg.predict_interval(X_test, confidence_level=level)
        assert np.all(low[:, 0] <= low[:, 1])


def test_cqr_with_crossing_models_keeps_coverage_over_repeated_splits():
    # split CQR is valid for any fixed pair of models: mean coverage over draws lies in
    # [level, level + 1/(n_cal + 1)], checked to 4.5 Monte-Carlo standard errors
    n_draws, n_cal, n_test, z = 200, 100, 200, 4.5
    hits = []
    for draw in range(n_draws):
        X, y = _data(n_cal + n_test, 100 + draw)
        reg = _frozen_cqr(Band(-1.0, 0.8), Band(1.0, -0.8), X[:n_cal], y[:n_cal])
        hits.append(coverage(y[n_cal:], reg.predict_interval(X[n_cal:])))
    se = np.sqrt((LEVEL * (1 - LEVEL) / (n_cal + 2) + LEVEL * (1 - LEVEL) / n_test) / n_draws)
    assert LEVEL - z * se <= np.mean(hits) <= LEVEL + 1 / (n_cal + 1) + z * se


def test_crossing_models_do_not_win_a_grid_search():
    X, y = _data(3000, 4)
    crossing = (Band(-1.645, 1.0), Band(1.645, -1.0))
    ordered = (Band(-1.645, -1.0), Band(1.645, 1.0))
    search = GridSearchCV(
        SplitConformalRegressor(conformity_score="cqr", random_state=0),
        {"estimator": [crossing, ordered]},
        cv=3,
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    # the same model up to the order of its two regressors: the same score, not a bonus
    assert scores[0] == scores[1]


@pytest.mark.parametrize(
    "metric",
    [
        lambda iv: interval_score(np.zeros(3), iv, LEVEL),
        lambda iv: mean_interval_length(iv),
        lambda iv: coverage(np.zeros(3), iv),
    ],
)
def test_metrics_refuse_crossing_intervals_and_name_the_rows(metric):
    intervals = np.array([[0.0, 1.0], [2.0, 1.0], [-1.0, 1.0]])
    with pytest.raises(ValueError, match=r"lower > upper in 1 rows \(1\)"):
        metric(intervals)


# --- 2. reproducible defaults ------------------------------------------------------------------


def test_default_cqr_is_reproducible_above_the_early_stopping_size():
    # above 10,000 training samples the default boosting models early-stop on a random
    # validation split; calibration_size=0.1 leaves 10,800 of the 12,000 rows for training
    X, y = _data(12_000, 5)
    with threadpool_limits(1):  # one thread keeps this quick on shared CPUs
        fits = [
            SplitConformalRegressor(
                conformity_score="cqr", calibration_size=0.1, random_state=0
            ).fit(X, y)
            for _ in range(2)
        ]
    assert all(model.n_iter_ < model.max_iter for model in fits[0].estimator_)  # it stopped
    seeds = [model.random_state for model in fits[0].estimator_]
    assert all(isinstance(seed, (int, np.integer)) for seed in seeds)
    np.testing.assert_array_equal(fits[0].predict_interval(X), fits[1].predict_interval(X))
    assert fits[0].quantile_ == fits[1].quantile_


def test_user_models_keep_their_own_random_state():
    X, y = _data(300, 6)
    base = HistGradientBoostingRegressor(loss="quantile", max_iter=5)
    reg = SplitConformalRegressor(base, conformity_score="cqr", random_state=0).fit(X, y)
    assert all(model.random_state is None for model in reg.estimator_)


# --- 3. metrics validate their input -----------------------------------------------------------


def test_interval_score_reads_a_column_of_targets_as_targets():
    rng = np.random.default_rng(7)
    y = rng.normal(size=50)
    intervals = np.sort(rng.normal(size=(50, 2)), axis=1)
    expected = np.mean(
        intervals[:, 1]
        - intervals[:, 0]
        + 20 * (np.maximum(intervals[:, 0] - y, 0) + np.maximum(y - intervals[:, 1], 0))
    )
    assert interval_score(y, intervals, LEVEL) == pytest.approx(expected, rel=1e-14)
    assert interval_score(y[:, None], intervals, LEVEL) == interval_score(y, intervals, LEVEL)
    assert coverage(y[:, None], intervals) == coverage(y, intervals)
    with pytest.raises(ValueError, match="y_true must be 1-D"):
        interval_score(np.column_stack([y, y]), intervals, LEVEL)
    with pytest.raises(ValueError, match="49 rows but 50"):
        interval_score(y[:-1], intervals, LEVEL)


@pytest.mark.parametrize("level", [90, 0.0, 1.0, -0.1, np.nan])
def test_metrics_refuse_a_level_outside_the_open_unit_interval(level):
    intervals = np.array([[0.0, 1.0]])
    sets = np.array([[True, False]])
    with pytest.raises(ValueError, match="confidence_level must lie strictly between 0 and 1"):
        interval_score([0.5], intervals, level)
    with pytest.raises(ValueError, match="confidence_level must lie strictly between 0 and 1"):
        class_coverage_gap(np.array([0]), sets, level)


def test_integer_zero_one_arrays_are_neither_sets_nor_intervals():
    # a binary problem's 0/1 sets look exactly like (n, 2) integer intervals
    y_idx = np.array([0, 1, 1, 0])
    sets01 = np.array([[1, 0], [1, 0], [1, 1], [0, 1]])
    with pytest.raises(TypeError, match=r"astype\(bool\).*astype\(float\)"):
        coverage(y_idx, sets01)
    assert coverage(y_idx, sets01.astype(bool)) == 0.5  # rows 0 and 2 hold their label


def test_float_reading_of_zero_one_sets_is_refused_as_crossing():
    y_idx = np.array([0, 1, 1, 0])
    sets01 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="lower > upper in 2 rows"):
        coverage(y_idx, sets01)


@pytest.mark.parametrize(
    "metric",
    [mean_set_size, lambda s: size_stratified_coverage(np.zeros(len(s), int), s),
     lambda s: class_coverages(np.zeros(len(s), int), s)],
)
def test_set_metrics_require_boolean_sets(metric):
    with pytest.raises(TypeError, match=r"boolean array.*astype\(bool\)"):
        metric(np.array([[0.5, 1.5], [0.0, 2.0]]))
    with pytest.raises(TypeError, match=r"astype\(bool\)"):
        metric(np.array([[1, 0], [1, 1]]))


@pytest.mark.parametrize(
    "weights, match",
    [
        (np.zeros(4), "at least one non-zero"),
        (np.array([1.0, -0.5, 1.0, 1.0]), "(?i)negative"),
        (np.array([1.0, np.nan, 1.0, 1.0]), "NaN"),
        (np.array([1.0, np.inf, 1.0, 1.0]), "infinity"),
        (np.ones(3), "shape"),
    ],
)
def test_bad_sample_weight_is_refused(weights, match):
    y = np.array([0.0, 1.0, 2.0, 3.0])
    intervals = np.array([[-1.0, 1.0], [0.0, 0.5], [1.5, 2.5], [0.0, 9.0]])
    sets = np.ones((4, 2), dtype=bool)
    for call in (
        lambda: coverage(y, intervals, sample_weight=weights),
        lambda: mean_set_size(sets, sample_weight=weights),
        lambda: mean_interval_length(intervals, sample_weight=weights),
        lambda: interval_score(y, intervals, LEVEL, sample_weight=weights),
    ):
        with pytest.raises(ValueError, match=match):
            call()


def test_weights_act_as_repetitions():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    intervals = np.array([[-1.0, 1.0], [0.0, 0.5], [1.5, 2.5], [0.0, np.inf]])
    weights = np.array([2, 0, 1, 3])
    rows = np.repeat(np.arange(4), weights)
    assert coverage(y, intervals, sample_weight=weights) == coverage(y[rows], intervals[rows])
    # a zero weight on an unbounded interval does not turn the mean into nan
    finite = intervals[:3]
    assert mean_interval_length(finite, sample_weight=[1, 1, 0]) == pytest.approx(1.25)
    assert mean_interval_length(intervals, sample_weight=[1, 1, 1, 0]) == pytest.approx(
        (2.0 + 0.5 + 1.0) / 3
    )
    assert interval_score(y, intervals, LEVEL, sample_weight=weights) == pytest.approx(np.inf)
    assert interval_score(y[:3], finite, LEVEL, sample_weight=[2, 0, 1]) == pytest.approx(
        interval_score(y[[0, 0, 2]], finite[[0, 0, 2]], LEVEL), rel=1e-14
    )


def test_bounds_that_no_real_value_reaches_are_refused():
    # [inf, inf] would have length nan; [-inf, -inf] too
    for bad in ([np.inf, np.inf], [-np.inf, -np.inf], [0.0, np.nan]):
        with pytest.raises(ValueError, match=r"rows 1\b"):
            mean_interval_length(np.array([[0.0, 1.0], bad]))


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="empty"):
        coverage(np.array([]), np.empty((0, 2)))
    with pytest.raises(ValueError, match="empty"):
        mean_interval_length(np.empty((0, 2)))
    with pytest.raises(ValueError, match="empty"):
        mean_set_size(np.empty((0, 3), dtype=bool))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_conditional_metrics_refuse_non_finite_x(bad):
    X, _ = _data(100, 8)
    X[3, 1] = bad
    covered = np.ones(100)
    with pytest.raises(ValueError, match="X contains"):
        worst_slab_coverage(X, covered, n_directions=3)
    with pytest.raises(ValueError, match="X contains"):
        mean_squared_conditional_error(X, covered, n_clusters=2)


def test_worst_slab_coverage_needs_a_feature():
    with pytest.raises(ValueError, match="0 feature"):
        worst_slab_coverage(np.empty((50, 0)), np.ones(50), n_directions=3)


def test_conditional_metrics_refuse_booleans_as_counts_and_non_classifiers():
    X, _ = _data(60, 14)
    covered = np.ones(60)
    with pytest.raises(ValueError, match="n_directions"):
        worst_slab_coverage(X, covered, n_directions=True)
    with pytest.raises(ValueError, match="delta"):
        worst_slab_coverage(X, covered, delta=True)
    with pytest.raises(ValueError, match="n_clusters"):
        mean_squared_conditional_error(X, covered, n_clusters=True)
    with pytest.raises(ValueError, match="n_splits"):
        excess_risk_target_coverage(X, covered, n_splits=True)
    with pytest.raises(TypeError, match="predict_proba"):
        excess_risk_target_coverage(X, covered, estimator=LinearRegression())


def _brute_min_window_mean(covered, min_size):
    n = len(covered)
    return min(
        covered[i:j].mean() for i in range(n) for j in range(i + min_size, n + 1)
    )


@pytest.mark.parametrize("seed", range(6))
def test_min_window_mean_is_exact(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    covered = (rng.random(n) < rng.uniform(0.3, 1.0)).astype(float)
    for min_size in {1, max(n // 10, 1), max(n // 3, 1), n}:
        # exact: the minimum is a fraction count / length, returned as its correctly rounded
        # double; brute force computes the same division
        assert _min_window_mean(covered, min_size) == _brute_min_window_mean(covered, min_size)
    assert _min_window_mean(np.ones(n), max(n // 10, 1)) == 1.0
    assert _min_window_mean(np.zeros(n), max(n // 10, 1)) == 0.0


@pytest.mark.slow
def test_worst_slab_kernel_ends_at_fifty_million_rows():
    # a bisection on a float threshold with tolerance 0.25 / n**2 never ends once that is below
    # the spacing of doubles near the answer (n >~ 4e7 for coverage near 1)
    code = textwrap.dedent(
        """
        import numpy as np
        from sklearn_conformal.metrics._conditional import _min_window_mean
        covered = np.ones(50_000_000, dtype=np.int8)
        covered[::10] = 0
        print(_min_window_mean(covered, 5_000_000))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    # a slab starting and ending on a zero: 500,001 zeros in 5,000,001 rows
    assert float(out.stdout) == 4_500_000 / 5_000_001


# --- 4. confidence levels as numpy scalars -----------------------------------------------------


def test_confidence_level_accepts_numpy_scalars_and_0d_arrays():
    assert check_confidence_level(np.array(0.8)) == 0.8
    assert check_confidence_level(np.float64(0.8)) == 0.8
    with pytest.raises(TypeError, match="confidence_level must be a float"):
        check_confidence_level(np.array([0.8]))
    with pytest.raises(TypeError, match="confidence_level must be a float"):
        check_confidence_level(np.array(True))
    with pytest.raises(ValueError, match="strictly between"):
        check_confidence_level(np.array(80))
    X, y = _data(300, 9)
    reg = SplitConformalRegressor(random_state=0).fit(X, y)
    np.testing.assert_array_equal(
        reg.predict_interval(X, confidence_level=np.array(0.8)),
        reg.predict_interval(X, confidence_level=0.8),
    )


# --- 5. score() validates y --------------------------------------------------------------------


def test_score_flattens_a_column_of_targets_with_a_warning():
    X, y = _data(300, 10)
    reg = SplitConformalRegressor(random_state=0).fit(X, y)
    with pytest.warns(DataConversionWarning):
        column = reg.score(X, y[:, None])
    assert column == reg.score(X, y)
    with pytest.raises(ValueError, match="y should be a 1d array"):
        reg.score(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        reg.score(X, y[:-1])


def test_score_uses_sample_weight():
    X, y = _data(300, 11)
    reg = SplitConformalRegressor(random_state=0).fit(X, y)
    weights = np.arange(300) % 3
    rows = np.repeat(np.arange(300), weights)
    assert reg.score(X, y, sample_weight=weights) == pytest.approx(
        reg.score(X[rows], y[rows]), rel=1e-12
    )


def test_normalized_score_names_its_training_size_need():
    X, y = _data(6, 15)  # 2 calibration rows leave 4 training rows for 5 folds
    with pytest.raises(ValueError, match="at least 5 training samples; got 4.*calibration_size"):
        SplitConformalRegressor(conformity_score="normalized").fit(X, y)


# --- 6. NaN in X around NaN-capable models -----------------------------------------------------


@pytest.mark.parametrize(
    "score, model",
    [
        ("absolute", HistGradientBoostingRegressor(max_iter=20, random_state=0)),
        ("normalized", HistGradientBoostingRegressor(max_iter=20, random_state=0)),
        ("cqr", HistGradientBoostingRegressor(loss="quantile", max_iter=20, random_state=0)),
    ],
)
def test_nan_in_x_reaches_nan_capable_models(score, model):
    X, y = _data(1000, 12)
    X[::5, 1] = np.nan
    reg = SplitConformalRegressor(model, conformity_score=score, random_state=0)
    assert reg.__sklearn_tags__().input_tags.allow_nan
    intervals = reg.fit(X, y).predict_interval(X)
    assert np.all(np.isfinite(intervals)) and np.all(intervals[:, 0] <= intervals[:, 1])
    assert np.all(np.isfinite(reg.predict(X)))
    X[0, 0] = np.inf  # the allow_nan tag promises NaN support, not infinities
    with pytest.raises(ValueError, match="infinity"):
        reg.predict_interval(X)


def test_nan_in_x_is_refused_when_a_wrapped_model_cannot_take_it():
    X, y = _data(200, 13)
    X[0, 0] = np.nan
    nan_capable = HistGradientBoostingRegressor(max_iter=5)
    for reg in (
        SplitConformalRegressor(LinearRegression()),
        # the spread model sees X too
        SplitConformalRegressor(
            nan_capable, conformity_score="normalized", scale_estimator=LinearRegression()
        ),
    ):
        assert not reg.__sklearn_tags__().input_tags.allow_nan
        # the message names the model that refuses NaN, not one that is wrapped already
        with pytest.raises(ValueError, match=r"NaN, which the wrapped model\(s\) LinearRegr"):
            reg.fit(X, y)
    fitted = SplitConformalRegressor(LinearRegression()).fit(X[1:], y[1:])
    with pytest.raises(ValueError, match="LinearRegression do not accept"):
        fitted.predict_interval(X)


class _BrokenTags(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.zeros(len(X))

    def __sklearn_tags__(self):
        raise RuntimeError("no tags here")


def test_tags_never_raise():
    assert not wrapped_allows_nan([_BrokenTags()])
    assert not wrapped_allows_nan([object()])
    for reg in (
        SplitConformalRegressor(_BrokenTags()),
        SplitConformalRegressor((LinearRegression(), LinearRegression())),  # invalid pair
        SplitConformalRegressor(LinearRegression(), conformity_score="cqr"),  # no quantile
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tags = reg.__sklearn_tags__()
        assert tags.input_tags.allow_nan is False


@pytest.mark.parametrize(
    "model", [HistGradientBoostingRegressor(), GradientBoostingRegressor(loss="squared_error")]
)
def test_cqr_refuses_a_model_whose_loss_is_not_quantile(model):
    """The unused 'quantile'/'alpha' of a squared-error model used to give constant widths."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = X[:, 0] + rng.normal(size=200)
    with pytest.raises(ValueError, match=r"loss='quantile'"):
        SplitConformalRegressor(model, conformity_score="cqr", random_state=0).fit(X, y)


def test_nan_reaches_an_imputing_pipeline_and_a_frozen_nan_capable_model():
    """The regressor reads NaN capability as the classifier does: a pipeline by its first step,
    a frozen model by the model it wraps (a pipeline's own tag is always False)."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = X[:, 0] + rng.normal(size=300)
    X[rng.random(X.shape) < 0.1] = np.nan
    imputing = make_pipeline(SimpleImputer(), LinearRegression())
    reg = SplitConformalRegressor(imputing, random_state=0).fit(X, y)
    assert np.all(np.isfinite(reg.predict_interval(X)))
    assert reg.__sklearn_tags__().input_tags.allow_nan
    frozen = FrozenEstimator(HistGradientBoostingRegressor(max_iter=20).fit(X[:150], y[:150]))
    reg = SplitConformalRegressor(frozen).fit(X[150:], y[150:])
    assert np.all(np.isfinite(reg.predict_interval(X)))
