"""Several confidence levels in one call, and DataFrame output (``set_output(predict=...)``).

Every conformal estimator: a sequence of levels stacks the single-level answers on a last axis
(bit for bit), bad entries raise as a bad scalar does, and ``set_output(predict="pandas")``
labels the same numbers with the input's index and the bounds or classes.
"""

import copy
import pickle
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_conformal.metrics import coverage_scorer

from .test_guarantee_harness import (
    CLASSIFIERS,
    REGRESSORS,
    classification_data,
    regression_data,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn_conformal.exceptions.SmallCalibrationWarning"
)

LEVELS = [0.8, 0.9, 0.95]
ALL = [("classifier", name) for name in CLASSIFIERS] + [("regressor", name) for name in REGRESSORS]
# marginal calibration: one threshold per level, larger at larger levels, so nested sets
NESTED = [
    ("classifier", "lac-marginal"),
    ("classifier", "aps-marginal"),
    ("classifier", "aps-deterministic"),
    ("regressor", "absolute"),
    ("regressor", "normalized"),
    ("regressor", "cqr"),
]
_FITTED = {}


def _data(kind):
    X, y = classification_data(n=300) if kind == "classifier" else regression_data(n=300)
    return X[:240], y[:240], X[240:]


def _fitted(kind, name):
    """A fitted estimator (fitted once per module run; callers must not modify it)."""
    if (kind, name) not in _FITTED:
        build = CLASSIFIERS[name] if kind == "classifier" else REGRESSORS[name]
        X, y, _ = _data(kind)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITTED[kind, name] = build().fit(X, y)
    return _FITTED[kind, name]


def _predict(estimator, X, confidence_level=None):
    if hasattr(estimator, "predict_interval"):
        return estimator.predict_interval(X, confidence_level=confidence_level)
    return estimator.predict_set(X, confidence_level=confidence_level)


def _width(estimator):
    return 2 if hasattr(estimator, "predict_interval") else len(estimator.classes_)


@pytest.mark.parametrize("kind, name", ALL)
def test_several_levels_stack_the_single_level_answers(kind, name):
    est = _fitted(kind, name)
    _, _, X_test = _data(kind)
    out = _predict(est, X_test, LEVELS)
    assert isinstance(out, np.ndarray)
    assert out.shape == (len(X_test), _width(est), len(LEVELS))
    for j, level in enumerate(LEVELS):
        np.testing.assert_array_equal(out[:, :, j], _predict(est, X_test, level))
    # tuples, arrays and a single-entry list are sequences too; a scalar keeps the 2-d output
    np.testing.assert_array_equal(_predict(est, X_test, tuple(LEVELS)), out)
    np.testing.assert_array_equal(_predict(est, X_test, np.asarray(LEVELS)), out)
    one = _predict(est, X_test, [0.9])
    assert one.shape == (len(X_test), _width(est), 1)
    np.testing.assert_array_equal(one[:, :, 0], _predict(est, X_test, 0.9))
    assert _predict(est, X_test).shape == (len(X_test), _width(est))
    assert _predict(est, X_test, np.float64(0.9)).shape == (len(X_test), _width(est))


@pytest.mark.parametrize("kind, name", [ALL[0], ("regressor", "absolute"), ("regressor", "speedcp")])
@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, np.nan, "0.9", True])
def test_bad_entry_raises_as_a_bad_scalar(kind, name, bad):
    est = _fitted(kind, name)
    _, _, X_test = _data(kind)
    with pytest.raises((TypeError, ValueError)) as scalar:
        _predict(est, X_test, bad)
    with pytest.raises(scalar.type) as listed:
        _predict(est, X_test, [0.9, bad])
    assert str(listed.value) == str(scalar.value)


@pytest.mark.parametrize("bad", [[], [[0.8, 0.9]], np.ones((2, 2)) * 0.9])
def test_empty_or_nested_sequences_are_rejected(bad):
    est = _fitted("regressor", "absolute")
    _, _, X_test = _data("regressor")
    with pytest.raises(ValueError, match="confidence_level"):
        est.predict_interval(X_test, bad)


@pytest.mark.parametrize("kind, name", NESTED)
def test_marginal_sets_are_nested_in_the_level(kind, name):
    est = _fitted(kind, name)
    _, _, X_test = _data(kind)
    levels = [0.5, 0.7, 0.8, 0.9, 0.95]
    out = _predict(est, X_test, levels)
    for j in range(len(levels) - 1):
        small, large = out[:, :, j], out[:, :, j + 1]
        if kind == "classifier":
            assert np.all(large | ~small)  # small is a subset of large
        else:
            assert np.all(large[:, 0] <= small[:, 0]) and np.all(small[:, 1] <= large[:, 1])


def test_staged_intervals_take_several_levels():
    est = _fitted("regressor", "cocp")
    _, _, X_test = _data("regressor")
    for stage, several in zip(
        est.staged_predict_interval(X_test, 0.9), est.staged_predict_interval(X_test, LEVELS)
    ):
        assert several.shape == (len(X_test), 2, len(LEVELS))
        np.testing.assert_array_equal(several[:, :, 1], stage)
    with pytest.raises(ValueError, match="confidence_level"):
        next(est.staged_predict_interval(X_test, [0.9, 1.5]))


# --------------------------------------------------------------------------------------------
# set_output(predict="pandas")
# --------------------------------------------------------------------------------------------
def test_set_output_api():
    est = _fitted("regressor", "absolute")
    assert not hasattr(est, "_sklearn_output_config")
    est = copy.deepcopy(est)
    assert est.set_output(transform="pandas") is est  # accepted, ignored
    assert not hasattr(est, "_sklearn_output_config")
    assert est.set_output(predict="pandas") is est
    assert est._sklearn_output_config == {"predict": "pandas"}
    assert est.set_output() is est and est._sklearn_output_config == {"predict": "pandas"}
    with pytest.raises(ValueError, match="predict must be one of"):
        est.set_output(predict="polars")
    assert clone(est)._sklearn_output_config == {"predict": "pandas"}
    assert pickle.loads(pickle.dumps(est))._sklearn_output_config == {"predict": "pandas"}
    _, _, X_test = _data("regressor")
    assert isinstance(est.predict_interval(X_test), pd.DataFrame)
    est.set_output(predict="default")
    assert isinstance(est.predict_interval(X_test), np.ndarray)


def test_clone_keeps_the_output_setting_and_refits():
    X, y, X_test = _data("classifier")
    est = CLASSIFIERS["lac-marginal"]().set_output(predict="pandas")
    fitted = clone(est).fit(X, y)
    assert isinstance(fitted.predict_set(X_test), pd.DataFrame)


def test_missing_pandas_gives_an_actionable_error(monkeypatch):
    est = copy.deepcopy(_fitted("regressor", "absolute"))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        est.set_output(predict="pandas")
    est.set_output(predict="default")  # needs no pandas


def _labels(est):
    return ["lower", "upper"] if hasattr(est, "predict_interval") else list(est.classes_)


@pytest.mark.parametrize("kind, name", ALL)
def test_pandas_output_labels_the_array_output(kind, name):
    est = copy.deepcopy(_fitted(kind, name))
    _, _, X_test = _data(kind)
    index = pd.Index([f"row{i}" for i in range(len(X_test))], name="id")
    frame = pd.DataFrame(X_test, index=index)
    expected_one = _predict(est, X_test, 0.9)
    expected_many = _predict(est, X_test, LEVELS)
    est.set_output(predict="pandas")

    one = _predict(est, frame, 0.9)
    assert isinstance(one, pd.DataFrame)
    assert one.index.equals(index)
    assert list(one.columns) == _labels(est)
    np.testing.assert_array_equal(one.to_numpy(), expected_one)
    if kind == "classifier":
        assert (one.dtypes == bool).all()

    many = _predict(est, frame, LEVELS)
    assert many.index.equals(index)
    assert isinstance(many.columns, pd.MultiIndex)
    assert list(many.columns) == [(lv, lab) for lv in LEVELS for lab in _labels(est)]
    for j, level in enumerate(LEVELS):
        np.testing.assert_array_equal(many[level].to_numpy(), expected_many[:, :, j])
        assert list(many[level].columns) == _labels(est)

    # an array input has no index: a RangeIndex
    plain = _predict(est, X_test)
    assert isinstance(plain.index, pd.RangeIndex) and len(plain) == len(X_test)

    # predict_set of a regressor is its interval, in the same container
    np.testing.assert_array_equal(np.asarray(est.predict_set(frame, 0.9)), expected_one)


@pytest.mark.parametrize("kind, name", [("classifier", "lac-marginal"), ("regressor", "cqr")])
def test_score_is_the_same_with_pandas_output(kind, name):
    est = copy.deepcopy(_fitted(kind, name))
    X, y, _ = _data(kind)
    expected = est.score(X, y)
    est.set_output(predict="pandas")
    assert est.score(X, y) == expected


@pytest.mark.parametrize("kind, name", [("classifier", "aps-marginal"), ("regressor", "normalized")])
def test_pandas_output_through_a_pipeline(kind, name):
    build = CLASSIFIERS[name] if kind == "classifier" else REGRESSORS[name]
    X, y, X_test = _data(kind)
    frame = pd.DataFrame(X, columns=["a", "b", "c"][: X.shape[1]])
    test = pd.DataFrame(X_test, columns=frame.columns, index=np.arange(1000, 1000 + len(X_test)))
    pipe = make_pipeline(StandardScaler(), build().set_output(predict="pandas"))
    pipe.set_output(transform="pandas")  # reaches every step without error
    pipe = clone(pipe).fit(frame, y)
    assert pipe[-1]._sklearn_output_config == {"predict": "pandas"}
    out = _predict(pipe[-1], pipe[:-1].transform(test), LEVELS)
    assert isinstance(out, pd.DataFrame) and out.index.equals(test.index)
    assert list(out.columns.get_level_values(0).unique()) == LEVELS
    # scikit-learn workflows read arrays whatever the container
    array_pipe = make_pipeline(StandardScaler(), build()).fit(frame, y)
    assert pipe.score(test, _y_test(kind)) == array_pipe.score(test, _y_test(kind))
    assert coverage_scorer(pipe, test, _y_test(kind)) == coverage_scorer(
        array_pipe, test, _y_test(kind)
    )


def _y_test(kind):
    _, y = classification_data(n=300) if kind == "classifier" else regression_data(n=300)
    return y[240:]
