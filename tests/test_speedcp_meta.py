"""SpeedCPRegressor as a meta-estimator: fit metadata routing and data delegation."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import get_tags

from sklearn_conformal.classification import CaCTClassifier
from sklearn_conformal.regression import CoCPRegressor, SpeedCPRegressor

KW = dict(gamma=1.0, lambda_=0.5, randomized=False, random_state=0)


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 3))
    y = X[:, 0] + rng.normal(size=n) * (0.5 + np.abs(X[:, 1]))
    return X, y


def _predefined(n, cal):
    test_fold = np.full(n, -1)
    test_fold[cal] = 0
    return PredefinedSplit(test_fold)


class _Recorder(RegressorMixin, BaseEstimator):
    """Linear model that records what its fit received."""

    def fit(self, X, y, sample_weight=None):
        self.X_type_ = type(X)
        self.sample_weight_ = None if sample_weight is None else np.asarray(sample_weight)
        Z = X.to_numpy(dtype=float) if hasattr(X, "iloc") else X
        Z = Z.toarray() if sp.issparse(Z) else np.asarray(Z, dtype=float)
        self.model_ = LinearRegression().fit(Z, y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        Z = X.to_numpy(dtype=float) if hasattr(X, "iloc") else X
        Z = Z.toarray() if sp.issparse(Z) else np.asarray(Z, dtype=float)
        return self.model_.predict(Z)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


# ------------------------------------------------------------------------------ metadata
def test_sample_weight_reaches_the_point_model_on_its_training_rows():
    X, y = _data()
    w = np.random.default_rng(1).uniform(0.1, 3, size=len(y))
    cal = np.arange(0, 240, 3)
    train = np.setdiff1d(np.arange(240), cal)
    reg = SpeedCPRegressor(calibration_size=_predefined(240, cal), **KW)
    reg.fit(X, y, sample_weight=w)
    ref = LinearRegression().fit(X[train], y[train], sample_weight=w[train])
    np.testing.assert_allclose(reg.estimator_.coef_, ref.coef_, rtol=1e-12)
    # the calibration itself is unweighted: the same scores as the weighted model's residuals
    np.testing.assert_allclose(
        reg.conformity_scores_, np.abs(y[cal] - ref.predict(X[cal])), rtol=1e-12
    )
    unweighted = SpeedCPRegressor(calibration_size=_predefined(240, cal), **KW).fit(X, y)
    assert not np.allclose(unweighted.estimator_.coef_, reg.estimator_.coef_)


def test_wrong_length_or_unknown_metadata_is_a_clear_error():
    X, y = _data()
    with pytest.raises(ValueError, match="sample_weight has 239 samples, but X has 240"):
        SpeedCPRegressor(**KW).fit(X, y, sample_weight=np.ones(239))
    with pytest.raises(TypeError, match=r"\['foo'\].*enable_metadata_routing"):
        SpeedCPRegressor(**KW).fit(X, y, foo=np.ones(240))
    with pytest.raises(ValueError, match="sample_weight.*KNeighborsRegressor does not take"):
        SpeedCPRegressor(KNeighborsRegressor(), **KW).fit(X, y, sample_weight=np.ones(240))


def test_routed_sample_weight_in_grid_search_and_pipeline():
    X, y = _data()
    w = np.random.default_rng(2).uniform(0.1, 3, size=len(y))
    with sklearn.config_context(enable_metadata_routing=True):
        inner = _Recorder().set_fit_request(sample_weight=True)
        est = SpeedCPRegressor(inner, **KW).set_score_request(sample_weight=False)
        search = GridSearchCV(est, {"confidence_level": [0.8, 0.9]}, cv=2)
        search.fit(X, y, sample_weight=w)
        assert search.best_estimator_.estimator_.sample_weight_ is not None
        scaler = StandardScaler().set_fit_request(sample_weight=False)
        pipe = make_pipeline(scaler, SpeedCPRegressor(inner, **KW))
        pipe.fit(X, y, sample_weight=w)
        fitted = pipe[-1].estimator_
        assert fitted.sample_weight_ is not None and len(fitted.sample_weight_) < len(w)
        assert set(np.round(fitted.sample_weight_, 12)) <= set(np.round(w, 12))
        # metadata nobody requested is an error, as in scikit-learn's meta-estimators
        with pytest.raises(UnsetMetadataPassedError):
            SpeedCPRegressor(_Recorder(), **KW).fit(X, y, sample_weight=w)


@pytest.mark.parametrize("est", [CoCPRegressor(), CaCTClassifier()], ids=type)
def test_networks_refuse_sample_weight_naming_it_and_the_remedy(est):
    X, y = _data(60)
    y = y if isinstance(est, CoCPRegressor) else (y > 0).astype(int)
    with pytest.raises(TypeError, match="does not take sample_weight.*[Rr]esample"):
        est.fit(X, y, sample_weight=np.ones(60))
    with pytest.raises(TypeError, match="does not take foo"):
        est.fit(X, y, foo=1)


# ---------------------------------------------------------------------------- delegation
def _frame(n=240, seed=0):
    X, y = _data(n, seed)
    season = np.array(["winter", "spring", "summer", "autumn"])[np.arange(n) % 4]
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "season": season})
    return df, y + (season == "summer") * 2.0


def _column_model():
    cols = ColumnTransformer(
        [("num", "passthrough", ["a", "b"]), ("cat", OneHotEncoder(), ["season"])]
    )
    return make_pipeline(cols, LinearRegression())


def test_dataframes_reach_the_point_model_and_the_embedding():
    df, y = _frame()
    embedding = ColumnTransformer([("num", StandardScaler(), ["a", "b"])])
    reg = SpeedCPRegressor(_column_model(), embedding=embedding, phi="season", **KW).fit(df, y)
    iv = reg.predict_interval(df.iloc[:30])
    assert iv.shape == (30, 2) and np.all(np.isfinite(iv))
    rec = SpeedCPRegressor(_Recorder(), embedding=embedding, **KW).fit(df[["a", "b"]], y)
    assert rec.estimator_.X_type_ is pd.DataFrame


def test_phi_by_column_name_equals_phi_by_position():
    df, y = _frame()
    embedding = ColumnTransformer([("num", "passthrough", ["a", "b"])])
    by_name = SpeedCPRegressor(_column_model(), embedding=embedding, phi="season", **KW)
    by_pos = SpeedCPRegressor(_column_model(), embedding=embedding, phi=2, **KW)
    by_name.fit(df, y)
    by_pos.fit(df, y)
    np.testing.assert_array_equal(by_name.phi_categories_, by_pos.phi_categories_)
    np.testing.assert_array_equal(by_name.predict_interval(df), by_pos.predict_interval(df))
    assert set(by_name.phi_categories_) == {"winter", "spring", "summer", "autumn"}


def test_phi_name_needs_a_dataframe_with_that_column():
    df, y = _frame()
    embedding = ColumnTransformer([("num", "passthrough", ["a", "b"])])
    with pytest.raises(ValueError, match="phi='month' names a column.*'season'"):
        SpeedCPRegressor(_column_model(), embedding=embedding, phi="month", **KW).fit(df, y)
    X, y = _data()
    with pytest.raises(ValueError, match="phi='season'.*ndarray, which has no column names"):
        SpeedCPRegressor(phi="season", **KW).fit(X, y)


def test_nan_passes_when_the_point_model_and_embedding_accept_it():
    X, y = _data()
    X[::7, 1] = np.nan
    reg = SpeedCPRegressor(
        HistGradientBoostingRegressor(max_iter=20),
        embedding=make_pipeline(SimpleImputer(), StandardScaler()),
        **KW,
    )
    assert get_tags(reg).input_tags.allow_nan
    iv = reg.fit(X, y).predict_interval(X[:20])
    assert np.all(np.isfinite(iv))
    assert not get_tags(SpeedCPRegressor()).input_tags.allow_nan


def test_sparse_x_reaches_a_model_that_accepts_it():
    X, y = _data()
    Xs = sp.csr_matrix(np.where(np.abs(X) < 0.5, 0.0, X))
    reg = SpeedCPRegressor(_Recorder(), **KW)
    assert get_tags(reg).input_tags.sparse
    reg.fit(Xs, y)
    assert sp.issparse(reg.estimator_.X_type_((1, 1)))
    dense = SpeedCPRegressor(_Recorder(), **KW).fit(Xs.toarray(), y)
    np.testing.assert_allclose(reg.predict_interval(Xs[:20]), dense.predict_interval(Xs[:20]))
    refusing = SpeedCPRegressor(HistGradientBoostingRegressor(), **KW)
    assert not get_tags(refusing).input_tags.sparse
    with pytest.raises(TypeError, match="[Ss]parse"):
        refusing.fit(Xs, y)


class _BrokenTags(Ridge):
    def __sklearn_tags__(self):
        raise RuntimeError("broken tags")


def test_tags_never_raise():
    for reg in (
        SpeedCPRegressor(_BrokenTags()),
        SpeedCPRegressor(embedding=_BrokenTags()),
        SpeedCPRegressor("not a model"),
    ):
        tags = get_tags(reg)
        assert not tags.input_tags.sparse and not tags.input_tags.allow_nan
