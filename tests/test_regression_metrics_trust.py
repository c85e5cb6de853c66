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
from sklearn.ensemble import HistGradientBoostingRegressor
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
        with pytest.raises(ValueError, match="NaN"):
            reg.fit(X, y)


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
