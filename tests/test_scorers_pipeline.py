"""The package's scorers accept a pipeline whose last step is a conformal estimator."""

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_conformal import SplitConformalClassifier, SplitConformalRegressor
from sklearn_conformal.metrics import (
    coverage_scorer,
    neg_interval_score_scorer,
    neg_mean_interval_length_scorer,
    neg_mean_set_size_scorer,
)


def _iris_with_names():
    X, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    return X[order] * 100.0, np.array(["a", "b", "c"])[y][order]


def test_classifier_scorers_on_a_pipeline_equal_those_on_its_steps():
    X, y = _iris_with_names()
    pipe = make_pipeline(
        StandardScaler(), SplitConformalClassifier(LogisticRegression(), random_state=0)
    ).fit(X[:100], y[:100])
    conformal, X_test = pipe[-1], pipe[:-1].transform(X[100:])
    assert coverage_scorer(pipe, X[100:], y[100:]) == coverage_scorer(conformal, X_test, y[100:])
    assert neg_mean_set_size_scorer(pipe, X[100:], y[100:]) == (
        neg_mean_set_size_scorer(conformal, X_test, y[100:])
    )


def test_regressor_scorers_on_a_pipeline_and_in_grid_search():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)) * 1000.0
    y = X[:, 0] / 1000.0 + rng.normal(size=400)
    pipe = make_pipeline(StandardScaler(), SplitConformalRegressor(LinearRegression(),
                                                                   random_state=0))
    pipe.fit(X[:300], y[:300])
    conformal, X_test = pipe[-1], pipe[:-1].transform(X[300:])
    for scorer in (coverage_scorer, neg_mean_interval_length_scorer, neg_interval_score_scorer):
        assert scorer(pipe, X[300:], y[300:]) == scorer(conformal, X_test, y[300:])
    search = GridSearchCV(
        pipe, {"splitconformalregressor__calibration_size": [0.2, 0.4]},
        scoring={"coverage": coverage_scorer, "length": neg_mean_interval_length_scorer},
        refit="length", cv=3,
    ).fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_coverage"]))


def test_a_pipeline_without_a_conformal_last_step_is_named():
    X, y = _iris_with_names()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match="LogisticRegression is not a conformal estimator"):
        coverage_scorer(pipe, X, y)
