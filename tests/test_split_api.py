"""Split estimators in scikit-learn workflows, determinism, and bad input."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from sklearn_conformal import SplitConformalClassifier, SplitConformalRegressor, metrics
from sklearn_conformal._core import SmallCalibrationWarning


@pytest.fixture
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture
def regression_data():
    return make_regression(n_samples=300, n_features=4, noise=10.0, random_state=0)


def test_pipeline_exposes_predict_set(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), SplitConformalClassifier(random_state=0)).fit(X, y)
    sets = pipe[-1].predict_set(pipe[:-1].transform(X))
    assert sets.shape == (150, 3) and sets.dtype == bool


def test_grid_search_tunes_the_conformal_score(iris):
    X, y = iris
    search = GridSearchCV(
        SplitConformalClassifier(random_state=0),
        {"conformity_score": ["lac", "aps"], "estimator": [LogisticRegression(C=0.01),
                                                          LogisticRegression(C=10.0)]},
        cv=3,
    ).fit(X, y)
    assert search.best_params_["estimator"].C == 10.0  # the sharper model gives smaller sets
    search = GridSearchCV(SplitConformalRegressor(random_state=0),
                          {"calibration_size": [0.2, 0.5]}, cv=3,
                          scoring=metrics.neg_interval_score_scorer)
    search.fit(*make_regression(n_samples=200, random_state=0))
    assert np.isfinite(search.best_score_)


def test_clone_pickle_and_determinism(iris):
    X, y = iris
    clf = SplitConformalClassifier(conformity_score="raps", random_state=7).fit(X, y)
    again = clone(clf).fit(X, y)
    np.testing.assert_array_equal(clf.predict_set(X), again.predict_set(X))
    np.testing.assert_array_equal(clf.predict_set(X), clf.predict_set(X))
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf.predict_set(X), restored.predict_set(X))
    other = SplitConformalClassifier(conformity_score="raps", random_state=8).fit(X, y)
    assert not np.array_equal(clf.conformity_scores_, other.conformity_scores_)


def test_string_labels_and_dataframes_round_trip():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"num": rng.normal(size=300), "cat": rng.choice(["a", "b", "c"], 300)})
    y = np.where(frame["num"] + (frame["cat"] == "a") > 0.5, "high", "low")
    model = make_pipeline(
        ColumnTransformer([("oh", OneHotEncoder(), ["cat"])], remainder="passthrough"),
        LogisticRegression(),
    )
    clf = SplitConformalClassifier(model, random_state=0).fit(frame, pd.Series(y))
    assert list(clf.classes_) == ["high", "low"]
    assert set(clf.predict(frame)) <= {"high", "low"}
    assert clf.predict_set(frame).shape == (300, 2)
    assert list(clf.feature_names_in_) == ["num", "cat"]
    y_idx = np.searchsorted(clf.classes_, y)
    assert metrics.coverage(y_idx, clf.predict_set(frame)) > 0.8


def test_frozen_estimator_calibrates_on_all_data(iris, regression_data):
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    clf = SplitConformalClassifier(FrozenEstimator(model)).fit(X, y)
    assert clf.conformity_scores_.shape == (150,)
    np.testing.assert_allclose(clf.predict_proba(X), model.predict_proba(X))
    X, y = regression_data
    reg = SplitConformalRegressor(FrozenEstimator(LinearRegression().fit(X, y))).fit(X, y)
    assert reg.conformity_scores_.shape == (300,)


def test_confidence_level_override_is_monotone(iris, regression_data):
    X, y = iris
    clf = SplitConformalClassifier(random_state=0).fit(X, y)
    small, large = clf.predict_set(X, confidence_level=0.5), clf.predict_set(X, 0.99)
    assert np.all(small <= large)
    X, y = regression_data
    reg = SplitConformalRegressor(random_state=0).fit(X, y)
    width = lambda level: np.diff(reg.predict_interval(X, level), axis=1)  # noqa: E731
    assert np.all(width(0.5) <= width(0.95))


def test_too_small_calibration_gives_trivial_sets_and_warns(iris, regression_data):
    X, y = iris
    with pytest.warns(SmallCalibrationWarning, match="confidence_level=0.99"):
        clf = SplitConformalClassifier(confidence_level=0.99, calibration_size=30,
                                       random_state=0).fit(X, y)
    assert clf.predict_set(X).all()
    X, y = regression_data
    with pytest.warns(SmallCalibrationWarning):
        reg = SplitConformalRegressor(confidence_level=0.99, calibration_size=20).fit(X, y)
    assert np.all(np.isinf(reg.predict_interval(X)))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, np.nan])
def test_confidence_level_outside_the_open_interval(iris, bad):
    X, y = iris
    with pytest.raises(ValueError, match="confidence_level"):
        SplitConformalClassifier(confidence_level=bad).fit(X, y)
    clf = SplitConformalClassifier(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="confidence_level"):
        clf.predict_set(X, confidence_level=bad)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_inputs_are_rejected(iris, regression_data, value):
    X, y = iris
    X = X.copy()
    X[3, 1] = value
    with pytest.raises(ValueError, match="NaN|infinity"):
        SplitConformalClassifier().fit(X, y)
    X, y = regression_data
    y = y.copy()
    y[5] = value
    with pytest.raises(ValueError, match="NaN|infinity"):
        SplitConformalRegressor().fit(X, y)


def test_shape_errors_and_unfitted(iris):
    X, y = iris
    with pytest.raises(NotFittedError):
        SplitConformalClassifier().predict_set(X)
    with pytest.raises(NotFittedError):
        SplitConformalRegressor().predict_interval(X)
    clf = SplitConformalClassifier(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict_set(X[:, :2])
    with pytest.raises(ValueError):
        SplitConformalClassifier().fit(X, y[:-1])


def test_unseen_labels_at_score_time(iris):
    X, y = iris
    clf = SplitConformalClassifier(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="not seen during fit"):
        clf.score(X, np.where(y == 2, 9, y))


def test_estimator_without_predict_proba(iris):
    X, y = iris
    with pytest.raises(ValueError, match="estimator"):
        SplitConformalClassifier(LinearSVC()).fit(X, y)


def test_cqr_needs_a_quantile_regressor(regression_data):
    with pytest.raises(ValueError, match="quantile"):
        SplitConformalRegressor(LinearRegression(), conformity_score="cqr").fit(*regression_data)
