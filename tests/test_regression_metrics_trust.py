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


# --- 2. reproducible defaults ------------------------------------------------------------------


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


