"""Dask: the package's parallel loops under ``joblib.parallel_backend("dask")`` and batch
prediction over Dask collections (:func:`sklearn_conformal.parallel.predict_blocks`), each
equal bit for bit to the in-process result, on a two-process local cluster (loopback only)."""

import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")

import joblib  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402

from sklearn_conformal import (  # noqa: E402
    SpeedCPRegressor,
    SplitConformalClassifier,
    SplitConformalRegressor,
)
from sklearn_conformal._parallel import run_task  # noqa: E402
from sklearn_conformal.parallel import predict_blocks  # noqa: E402

# more than one S-path chunk (2048 test points), so that predict_interval dispatches tasks
N_TEST = 2100


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(300, 2))
    y = X[:, 0] + rng.normal(size=300) * np.abs(X[:, 0])
    X_test = rng.uniform(-2, 2, size=(N_TEST, 2))
    Xc = rng.normal(size=(400, 3))
    yc = (Xc[:, 0] > 0).astype(int) + (Xc[:, 1] > 0)
    return X, y, X_test, Xc, yc


def _speedcp(**kw):
    return SpeedCPRegressor(random_state=0, n_jobs=2, gamma_grid=np.logspace(-1, 1, 4), **kw)


@pytest.fixture(scope="module")
def fitted(data):
    X, y, _, Xc, yc = data
    frame = pd.DataFrame(X, columns=["a", "b"])
    frame_c = pd.DataFrame(Xc, columns=["u", "v", "w"])
    return {
        "speedcp": (_speedcp().fit(X, y), _speedcp().fit(frame, y)),
        "split_regressor": (
            SplitConformalRegressor(LinearRegression(), random_state=0).fit(X, y),
            SplitConformalRegressor(LinearRegression(), random_state=0).fit(frame, y),
        ),
        "split_classifier": (
            SplitConformalClassifier(LogisticRegression(), random_state=0).fit(Xc, yc),
            SplitConformalClassifier(LogisticRegression(), random_state=0).fit(frame_c, yc),
        ),
    }


def test_speedcp_fit_and_predict_interval_distributed_equal_in_process(client, data):
    X, y, X_test, _, _ = data
    ref = _speedcp().fit(X, y)  # threads of this process (the default backend)
    with distributed.get_task_stream(client) as fit_stream, joblib.parallel_backend("dask"):
        dist = _speedcp().fit(X, y)
    assert len(fit_stream.data) > 0  # the cross-validation paths ran on the cluster
    assert dist.gamma_ == ref.gamma_ and dist.lam_ == ref.lam_
    np.testing.assert_array_equal(dist.cv_loss_, ref.cv_loss_)
    np.testing.assert_array_equal(dist.cv_n_breakpoints_, ref.cv_n_breakpoints_)
    np.testing.assert_array_equal(dist.cv_mean_elbow_, ref.cv_mean_elbow_)
    np.testing.assert_array_equal(dist.path_lambdas_, ref.path_lambdas_)
    expected = ref.predict_interval(X_test)
    with distributed.get_task_stream(client) as predict_stream, joblib.parallel_backend("dask"):
        got = dist.predict_interval(X_test)
    assert len(predict_stream.data) > 0  # the S-path chunks ran on the cluster
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(dist.predict_interval(X_test), expected)


def test_lowrank_speedcp_predict_interval_distributed_equal_in_process(client, data):
    """The Nystrom kernel's S-path chunks (the test rows' features against the calibration
    factor) as tasks of the cluster."""
    X, y, X_test, _, _ = data
    X_fit = np.vstack([X] * 4) + np.repeat(np.arange(4), 300)[:, None] * 1e-3
    y_fit = np.tile(y, 4)
    ref = _speedcp(gamma=1.0, n_components=20, keep_kernel=False).fit(X_fit, y_fit)
    expected = ref.predict_interval(X_test)
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        got = ref.predict_interval(X_test)
    assert len(stream.data) > 0
    np.testing.assert_array_equal(got, expected)


def _thread_limits():
    import numba
    from threadpoolctl import threadpool_info

    return os.getpid(), numba.get_num_threads(), [p["num_threads"] for p in threadpool_info()]


def test_tasks_in_worker_processes_cap_their_threads(client):
    pid, numba_threads, pools = client.submit(
        run_task, os.getpid(), 1, _thread_limits, pure=False
    ).result()
    assert pid != os.getpid()
    assert numba_threads == 1
    assert all(n == 1 for n in pools)
    # in the dispatching process nothing is capped
    assert run_task(os.getpid(), 1, _thread_limits)[1] == _thread_limits()[1]


CASES = [
    ("speedcp", "predict_interval", {}),
    ("speedcp", "predict_interval", {"confidence_level": [0.8, 0.9]}),
    ("speedcp", "predict_cutoff", {}),
    ("split_regressor", "predict_interval", {}),
    ("split_regressor", "predict", {}),
    ("split_classifier", "predict_set", {}),
    ("split_classifier", "predict_set", {"confidence_level": [0.8, 0.95]}),
]


@pytest.mark.parametrize("name, method, kwargs", CASES)
def test_predict_blocks_dask_array_equal_in_process(client, data, fitted, name, method, kwargs):
    X_test = data[2] if name != "split_classifier" else data[3]
    estimator = fitted[name][0]
    lazy = predict_blocks(estimator, da.from_array(X_test, chunks=(700, 1)), method, **kwargs)
    expected = getattr(estimator, method)(X_test, **kwargs)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    assert lazy.chunks[0] == da.from_array(X_test, chunks=700).chunks[0]
    np.testing.assert_array_equal(lazy.compute(), expected)


@pytest.mark.parametrize("name, method, kwargs", CASES)
def test_predict_blocks_dask_dataframe_equal_in_process(client, data, fitted, name, method,
                                                       kwargs):
    if name == "split_classifier":
        frame = pd.DataFrame(data[3], columns=["u", "v", "w"])
    else:
        frame = pd.DataFrame(data[2], columns=["a", "b"])
    frame.index = frame.index * 10 + 3  # an index that is not a RangeIndex travels through
    estimator = fitted[name][1]
    lazy = predict_blocks(estimator, dd.from_pandas(frame, npartitions=3), method, **kwargs)
    got = lazy.compute()
    expected = getattr(estimator, method)(frame, **kwargs)
    assert got.index.equals(frame.index)
    if np.ndim(expected) == 1:
        assert isinstance(got, pd.Series)
        np.testing.assert_array_equal(got.to_numpy(), expected)
    elif np.ndim(expected) == 2:
        np.testing.assert_array_equal(got.to_numpy(), expected)
        if method == "predict_interval":
            assert list(got.columns) == ["lower", "upper"]
        else:
            assert list(got.columns) == list(estimator.classes_)
    else:
        # the columns of set_output(predict="pandas"): (confidence_level, bound or class)
        framed = estimator.set_output(predict="pandas")
        try:
            pd.testing.assert_frame_equal(got, getattr(framed, method)(frame, **kwargs))
        finally:
            estimator.set_output(predict="default")


def test_predict_blocks_keeps_pandas_output(client, data, fitted):
    frame = pd.DataFrame(data[2][:500], columns=["a", "b"])
    estimator = fitted["split_regressor"][1]
    estimator.set_output(predict="pandas")
    try:
        got = predict_blocks(estimator, dd.from_pandas(frame, npartitions=2)).compute()
        pd.testing.assert_frame_equal(got, estimator.predict_interval(frame))
    finally:
        estimator.set_output(predict="default")


def test_predict_blocks_rejects_other_inputs(fitted, data):
    estimator = fitted["split_regressor"][0]
    with pytest.raises(TypeError, match="dask.array.Array or a dask.dataframe.DataFrame"):
        predict_blocks(estimator, data[2])
    with pytest.raises(AttributeError, match="no_such_method"):
        predict_blocks(estimator, da.from_array(data[2]), "no_such_method")
