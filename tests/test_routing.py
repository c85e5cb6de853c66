"""Metadata routing of fit (and score) metadata through the split conformal estimators."""

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_conformal import SplitConformalClassifier, SplitConformalRegressor


class RecordingLogisticRegression(LogisticRegression):
    """Logistic regression that keeps the rows and weights its fit received."""

    def fit(self, X, y, sample_weight=None):
        self.seen_X_ = np.asarray(X)
        self.seen_rows_ = np.rint(self.seen_X_[:, 0]).astype(int)
        self.seen_weight_ = None if sample_weight is None else np.asarray(sample_weight)
        return super().fit(X, y, sample_weight=sample_weight)


class RecordingLinearRegression(LinearRegression):
    """Linear regression that keeps the rows and weights its fit received."""

    def fit(self, X, y, sample_weight=None):
        self.seen_rows_ = np.asarray(X)[:, 0].astype(int)
        self.seen_weight_ = None if sample_weight is None else np.asarray(sample_weight)
        return super().fit(X, y, sample_weight=sample_weight)


def _data(n=120, regression=False):
    """Column 0 is the row number, so a model's training rows can be read off its X."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, 2))
    X = np.column_stack([np.arange(n), features])
    if regression:
        y = features[:, 0] + 0.3 * rng.normal(size=n)
    else:
        y = (features[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    w = rng.uniform(0.1, 3.0, size=n)
    return X, y, w


def test_classifier_routes_training_part_of_weights():
    X, y, w = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        model = RecordingLogisticRegression().set_fit_request(sample_weight=True)
        clf = SplitConformalClassifier(model, random_state=0).fit(X, y, sample_weight=w)
    rows = clf.estimator_.seen_rows_
    assert len(rows) == len(y) - len(clf.conformity_scores_)
    np.testing.assert_array_equal(clf.estimator_.seen_weight_, w[rows])


def test_classifier_weighted_equals_hand_fit():
    X, y, w = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        model = RecordingLogisticRegression().set_fit_request(sample_weight=True)
        clf = SplitConformalClassifier(model, random_state=0).fit(X, y, sample_weight=w)
    rows = clf.estimator_.seen_rows_
    by_hand = LogisticRegression().fit(X[rows], y[rows], sample_weight=w[rows])
    np.testing.assert_allclose(clf.estimator_.coef_, by_hand.coef_)
    np.testing.assert_allclose(clf.predict_proba(X), by_hand.predict_proba(X))


def test_calibration_is_unweighted():
    """Weights that differ only on calibration rows give the same thresholds."""
    X, y, w = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        model = RecordingLogisticRegression().set_fit_request(sample_weight=True)
        first = SplitConformalClassifier(model, random_state=0).fit(X, y, sample_weight=w)
        calibration = np.setdiff1d(np.arange(len(y)), first.estimator_.seen_rows_)
        w_other = w.copy()
        w_other[calibration] = 100.0
        second = SplitConformalClassifier(model, random_state=0).fit(
            X, y, sample_weight=w_other
        )
    np.testing.assert_array_equal(first.thresholds_, second.thresholds_)
    np.testing.assert_array_equal(first.conformity_scores_, second.conformity_scores_)


def test_regressor_routes_weights_and_equals_hand_fit():
    X, y, w = _data(regression=True)
    with sklearn.config_context(enable_metadata_routing=True):
        model = RecordingLinearRegression().set_fit_request(sample_weight=True)
        reg = SplitConformalRegressor(model, random_state=0).fit(X, y, sample_weight=w)
    rows = reg.estimator_.seen_rows_
    np.testing.assert_array_equal(reg.estimator_.seen_weight_, w[rows])
    by_hand = LinearRegression().fit(X[rows], y[rows], sample_weight=w[rows])
    np.testing.assert_allclose(reg.estimator_.coef_, by_hand.coef_)
    calibration = np.setdiff1d(np.arange(len(y)), rows)
    np.testing.assert_allclose(
        np.sort(reg.conformity_scores_),
        np.sort(np.abs(y[calibration] - by_hand.predict(X[calibration]))),
    )


def test_regressor_normalized_routes_to_scale_estimator():
    X, y, w = _data(regression=True)
    with sklearn.config_context(enable_metadata_routing=True):
        model = RecordingLinearRegression().set_fit_request(sample_weight=True)
        scale = RecordingLinearRegression().set_fit_request(sample_weight=True)
        reg = SplitConformalRegressor(
            model, conformity_score="normalized", scale_estimator=scale, random_state=0
        ).fit(X, y, sample_weight=w)
    rows = reg.estimator_.seen_rows_
    np.testing.assert_array_equal(reg.scale_estimator_.seen_rows_, rows)
    np.testing.assert_array_equal(reg.scale_estimator_.seen_weight_, w[rows])


def test_regressor_cqr_pair_routes_per_role():
    from sklearn.linear_model import QuantileRegressor

    class RecordingQuantile(QuantileRegressor):
        def fit(self, X, y, sample_weight=None):
            self.seen_rows_ = np.asarray(X)[:, 0].astype(int)
            self.seen_weight_ = None if sample_weight is None else np.asarray(sample_weight)
            return super().fit(X, y, sample_weight=sample_weight)

    X, y, w = _data(n=60, regression=True)
    lower = RecordingQuantile(quantile=0.05, alpha=0.0)
    upper = RecordingQuantile(quantile=0.95, alpha=0.0)
    with sklearn.config_context(enable_metadata_routing=True):
        reg = SplitConformalRegressor(
            (lower.set_fit_request(sample_weight=True), upper.set_fit_request(sample_weight=False)),
            conformity_score="cqr",
            random_state=0,
        )
        routing = reg.get_metadata_routing()
        assert {"lower_estimator", "upper_estimator"} <= set(routing._route_mappings)
        reg.fit(X, y, sample_weight=w)
    fitted_lower, fitted_upper = reg.estimator_
    np.testing.assert_array_equal(fitted_lower.seen_weight_, w[fitted_lower.seen_rows_])
    assert fitted_upper.seen_weight_ is None


@pytest.mark.parametrize("make", ["classifier", "regressor"])
def test_wrong_length_names_the_parameter(make):
    X, y, w = _data(regression=make == "regressor")

    def make_estimator(request):
        model = RecordingLogisticRegression() if make == "classifier" else (
            RecordingLinearRegression()
        )
        if request:
            model.set_fit_request(sample_weight=True)
        if make == "classifier":
            return SplitConformalClassifier(model, random_state=0)
        return SplitConformalRegressor(model, random_state=0)

    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match="sample_weight has 5 samples"):
            make_estimator(request=True).fit(X, y, sample_weight=w[:5])
    with pytest.raises(ValueError, match="sample_weight has 5 samples"):
        make_estimator(request=False).fit(X, y, sample_weight=w[:5])


def test_unrequested_metadata_is_an_error_with_routing():
    X, y, w = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(UnsetMetadataPassedError, match="sample_weight"):
            SplitConformalClassifier(LogisticRegression(), random_state=0).fit(
                X, y, sample_weight=w
            )


def test_without_routing_sample_weight_reaches_a_model_that_takes_it():
    X, y, w = _data()
    clf = SplitConformalClassifier(RecordingLogisticRegression(), random_state=0)
    clf.fit(X, y, sample_weight=w)
    rows = clf.estimator_.seen_rows_
    np.testing.assert_array_equal(clf.estimator_.seen_weight_, w[rows])
    with sklearn.config_context(enable_metadata_routing=True):
        model = RecordingLogisticRegression().set_fit_request(sample_weight=True)
        routed = SplitConformalClassifier(model, random_state=0).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(clf.thresholds_, routed.thresholds_)


def test_without_routing_unsupported_or_other_metadata_is_an_error():
    X, y, w = _data()
    # Pipeline.fit takes **params, not sample_weight: only routing can tell which step wants it
    clf = SplitConformalClassifier(make_pipeline(StandardScaler(), LogisticRegression()))
    with pytest.raises(ValueError, match="enable_metadata_routing=True"):
        clf.fit(X, y, sample_weight=w)
    with pytest.raises(TypeError, match="only sample_weight is accepted"):
        SplitConformalClassifier().fit(X, y, colour=np.arange(len(y)))
    # groups without a group splitter or a Mondrian calibrator to read them
    with pytest.raises(ValueError, match="calibration_size=0.3 is a size, which ignores groups"):
        SplitConformalClassifier().fit(X, y, groups=np.arange(len(y)))
    reg = SplitConformalRegressor(make_pipeline(StandardScaler(), LinearRegression()))
    X_reg, y_reg, _ = _data(regression=True)
    with pytest.raises(ValueError, match="enable_metadata_routing=True"):
        reg.fit(X_reg, y_reg, sample_weight=w)


def test_routing_into_a_pipeline_step():
    X, y, w = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline(
            [
                ("scale", StandardScaler().set_fit_request(sample_weight=False)),
                ("model", RecordingLogisticRegression().set_fit_request(sample_weight=True)),
            ]
        )
        clf = SplitConformalClassifier(pipe, random_state=0).fit(X, y, sample_weight=w)
    model = clf.estimator_[-1]
    # the model saw scaled rows: undo the scaling to read the row numbers
    rows = np.rint(clf.estimator_[0].inverse_transform(model.seen_X_)[:, 0]).astype(int)
    assert len(rows) == len(y) - len(clf.conformity_scores_)
    np.testing.assert_array_equal(model.seen_weight_, w[rows])


def test_frozen_model_ignores_routed_fit_metadata():
    X, y, w = _data()
    trained = LogisticRegression().fit(X, y)
    plain = SplitConformalClassifier(FrozenEstimator(trained)).fit(X, y)
    with sklearn.config_context(enable_metadata_routing=True):
        frozen = FrozenEstimator(trained)
        frozen.set_fit_request(sample_weight=True)
        routed = SplitConformalClassifier(frozen).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(plain.thresholds_, routed.thresholds_)
    unrouted = SplitConformalClassifier(FrozenEstimator(trained)).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(plain.thresholds_, unrouted.thresholds_)


def test_gridsearch_routes_fit_weights_through_a_pipeline():
    X, y, w = _data()
    with sklearn.config_context(enable_metadata_routing=True):
        model = RecordingLogisticRegression().set_fit_request(sample_weight=True)
        pipe = Pipeline(
            [
                ("scale", StandardScaler().set_fit_request(sample_weight=False)),
                (
                    "conformal",
                    SplitConformalClassifier(model, random_state=0).set_score_request(
                        sample_weight=True
                    ),
                ),
            ]
        )
        search = GridSearchCV(
            pipe, {"conformal__confidence_level": [0.8, 0.9]}, cv=3
        ).fit(X, y, sample_weight=w)
    best = search.best_estimator_
    fitted = best[-1].estimator_
    # the model saw scaled rows: undo the scaling to read the row numbers
    rows = np.rint(best[0].inverse_transform(fitted.seen_X_)[:, 0]).astype(int)
    np.testing.assert_array_equal(fitted.seen_weight_, w[rows])


@pytest.mark.parametrize("make", ["classifier", "regressor"])
def test_gridsearch_routes_score_weights(make):
    X, y, w = _data(regression=make == "regressor")
    w = np.where(np.arange(len(y)) % 2 == 0, 0.0, w)  # weights that change the score

    def search(request_score):
        if make == "classifier":
            model = RecordingLogisticRegression().set_fit_request(sample_weight=True)
            est = SplitConformalClassifier(model, random_state=0)
            grid = {"confidence_level": [0.8, 0.9]}
        else:
            model = RecordingLinearRegression().set_fit_request(sample_weight=True)
            est = SplitConformalRegressor(model, random_state=0)
            grid = {"confidence_level": [0.8, 0.9]}
        est.set_score_request(sample_weight=request_score)
        return GridSearchCV(est, grid, cv=3).fit(X, y, sample_weight=w)

    with sklearn.config_context(enable_metadata_routing=True):
        weighted = search(True).cv_results_["mean_test_score"]
        unweighted = search(False).cv_results_["mean_test_score"]
    assert not np.allclose(weighted, unweighted)


def test_regressor_routing_of_an_invalid_pair_says_what_is_wrong():
    reg = SplitConformalRegressor((LinearRegression(), LinearRegression()))
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match="only valid with conformity_score='cqr'"):
            reg.get_metadata_routing()
