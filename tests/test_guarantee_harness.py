"""The guarantee harness: every estimator, in every ordinary way it is used.

A conformal estimator is worth its guarantee only if the guarantee survives how it is served.
For each estimator this module checks, with hypothesis drawing the usage:

* **batching** -- one row at a time, shuffled, or split in arbitrary chunks gives exactly the
  batch answer (randomised sets and cutoffs belong to a row, not to its position);
* **representation** -- float32 vs float64 input of the same numbers, a DataFrame vs its array,
  a pickled vs a fresh estimator, a clone refitted with the same seed: identical outputs;
* **equivariance** (regressors) -- a target scaled by ``c`` in 1e-12 .. 1e12 gives intervals
  scaled by ``c``;
* **processes** -- threads and ``fork()``ed workers give the parent's answer (and do not hang);
* **coverage** (slow lane) -- served one row at a time, coverage over repeated fits lies within
  binomial bounds of the target, with ties and duplicated rows in the data.
"""

import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression, QuantileRegressor

from sklearn_conformal import (
    CrossConformalClassifier,
    CrossConformalRegressor,
    KernelQuantileRegressor,
    SpeedCPRegressor,
    SplitConformalClassifier,
    SplitConformalRegressor,
)
pytestmark = pytest.mark.filterwarnings("ignore::sklearn_conformal.exceptions.SmallCalibrationWarning")

HYPOTHESIS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --------------------------------------------------------------------------------------------
# data and the estimators under test (small, so that the quick lane stays quick)
# --------------------------------------------------------------------------------------------
def classification_data(n=400, n_classes=4, seed=0):
    """Gaussian classes in 3-d, values rounded to float32 so dtype changes lose nothing."""
    rng = np.random.default_rng(seed)
    y = rng.integers(n_classes, size=n)
    centres = rng.normal(scale=1.5, size=(n_classes, 3))
    X = (centres[y] + rng.normal(size=(n, 3))).astype(np.float32).astype(np.float64)
    return X, y


def regression_data(n=400, seed=0):
    """Heteroscedastic 2-d regression, float32-representable inputs."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2)).astype(np.float32).astype(np.float64)
    y = X[:, 0] + rng.normal(size=n) * (0.3 + np.abs(X[:, 1]))
    return X, y


CLASSIFIERS = {
    "lac-marginal": lambda: SplitConformalClassifier(LogisticRegression(), random_state=0),
    "aps-marginal": lambda: SplitConformalClassifier(
        LogisticRegression(), conformity_score="aps", random_state=0
    ),
    "raps-class": lambda: SplitConformalClassifier(
        LogisticRegression(), conformity_score="raps", mode="class", random_state=0
    ),
    "aps-deterministic": lambda: SplitConformalClassifier(
        LogisticRegression(), conformity_score="aps", randomized=False, random_state=0
    ),
    "cross-aps": lambda: CrossConformalClassifier(
        LogisticRegression(), conformity_score="aps", random_state=0
    ),
    "cact": lambda: _torch_estimator("CaCTClassifier")(
        pretrain_epochs=10, max_epochs=2, batch_size=64, hidden_layer_sizes=(16,),
        conformity_score="aps", random_state=0,
    ),
}

REGRESSORS = {
    "absolute": lambda: SplitConformalRegressor(LinearRegression(), random_state=0),
    "normalized": lambda: SplitConformalRegressor(
        LinearRegression(), conformity_score="normalized", random_state=0
    ),
    "cqr": lambda: SplitConformalRegressor(
        QuantileRegressor(alpha=0.0, solver="highs"), conformity_score="cqr", random_state=0
    ),
    "cross-plus": lambda: CrossConformalRegressor(LinearRegression(), random_state=0),
    "cross-cqr": lambda: CrossConformalRegressor(
        QuantileRegressor(alpha=0.0, solver="highs"), conformity_score="cqr", cv=3,
        random_state=0,
    ),
    "bootstrap-minmax": lambda: CrossConformalRegressor(
        LinearRegression(), method="minmax", cv="bootstrap", n_resamplings=10, random_state=0
    ),
    "speedcp": lambda: SpeedCPRegressor(gamma=1.0, lambda_=0.5, random_state=0),
    "speedcp-auto": lambda: SpeedCPRegressor(gamma=1.0, random_state=0),
    "cocp": lambda: _torch_estimator("CoCPRegressor")(
        n_folds=2, n_alternations=1, hidden_layer_sizes=(16, 16), max_epochs=8, patience=3,
        random_state=0,
    ),
}


def _torch_estimator(name):
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    import sklearn_conformal

    return getattr(sklearn_conformal, name)


def assert_same_answer(actual, expected):
    """Sets must be identical; interval ends may differ by the wrapped model's rounding.

    A regressor's ``predict`` of one row and of a batch can differ in the last bit (BLAS picks
    other kernels for other shapes); the conformal part must add nothing beyond that.
    """
    if expected.dtype == bool:
        np.testing.assert_array_equal(actual, expected)
    else:
        scale = max(1.0, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)))
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale)


def _output(estimator, X):
    """What a user serves: sets for classifiers, intervals for regressors."""
    if hasattr(estimator, "predict_interval"):
        return estimator.predict_interval(X)
    return estimator.predict_set(X)


@pytest.fixture(scope="module", params=sorted(CLASSIFIERS) + sorted(REGRESSORS))
def fitted(request):
    """(name, fitted estimator, X_test, y_test) per estimator, fitted once for the module."""
    name = request.param
    if name in CLASSIFIERS:
        X, y = classification_data()
        estimator = CLASSIFIERS[name]()
    else:
        X, y = regression_data()
        estimator = REGRESSORS[name]()
    estimator.fit(X[:300], y[:300])
    return name, estimator, X[300:], y[300:]


# --------------------------------------------------------------------------------------------
# batching: a row's answer does not depend on its company
# --------------------------------------------------------------------------------------------
def test_one_row_at_a_time_equals_the_batch(fitted):
    _, estimator, X, _ = fitted
    batch = _output(estimator, X)
    rows = np.concatenate([_output(estimator, X[i : i + 1]) for i in range(len(X))])
    assert_same_answer(rows, batch)


@HYPOTHESIS
@given(data=st.data())
def test_shuffled_and_chunked_calls_equal_the_batch(fitted, data):
    _, estimator, X, _ = fitted
    batch = _output(estimator, X)
    order = np.asarray(data.draw(st.permutations(range(len(X)))))
    n_cuts = data.draw(st.integers(0, 6))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(X) - 1), max_size=n_cuts))))
    pieces = [_output(estimator, X[part]) for part in np.split(order, cuts)]
    shuffled = np.concatenate(pieces)
    assert_same_answer(shuffled[np.argsort(order)], batch)


def test_repeated_calls_and_duplicated_rows_agree(fitted):
    _, estimator, X, _ = fitted
    doubled = _output(estimator, np.concatenate([X[:20], X[:20]]))
    assert_same_answer(doubled[:20], doubled[20:])
    np.testing.assert_array_equal(_output(estimator, X), _output(estimator, X))


# --------------------------------------------------------------------------------------------
# representation: dtype, frames, pickling, refitting
# --------------------------------------------------------------------------------------------
def test_float32_and_float64_inputs_agree(fitted):
    _, estimator, X, _ = fitted
    np.testing.assert_array_equal(
        _output(estimator, X.astype(np.float32)), _output(estimator, X)
    )


def test_dataframe_and_array_give_the_same_fit_and_answers(fitted):
    pd = pytest.importorskip("pandas")
    name, estimator, X_test, _ = fitted
    X, y = classification_data() if name in CLASSIFIERS else regression_data()
    columns = [f"x{j}" for j in range(X.shape[1])]
    on_frame = clone(estimator).fit(pd.DataFrame(X[:300], columns=columns), y[:300])
    on_array = clone(estimator).fit(X[:300], y[:300])
    np.testing.assert_array_equal(
        _output(on_frame, pd.DataFrame(X_test, columns=columns)), _output(on_array, X_test)
    )


def test_pickled_estimator_answers_like_the_original(fitted):
    _, estimator, X, _ = fitted
    expected = _output(estimator, X)
    restored = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(_output(restored, X), expected)
    np.testing.assert_array_equal(_output(estimator, X), expected)


def _state_snapshot(estimator):
    """Per attribute: its identity, and its content where that is cheap to compare.

    (Pickled bytes would be simpler, but a skorch net does not pickle to the same bytes twice.)
    """

    def fingerprint(value):
        if isinstance(value, np.ndarray):
            return id(value), value.dtype.str, value.shape, value.tobytes()
        if isinstance(value, (dict, list, set, tuple)):
            return id(value), len(value)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return id(value)

    return {name: fingerprint(value) for name, value in vars(estimator).items()}


def test_predict_does_not_change_the_estimator(fitted):
    _, estimator, X, _ = fitted
    before = _state_snapshot(estimator)
    _output(estimator, X)
    if hasattr(estimator, "predict_interval"):
        estimator.predict_interval(X[:5], confidence_level=0.8)
    else:
        estimator.predict_set(X[:5], confidence_level=0.8)
    assert _state_snapshot(estimator) == before


def test_a_level_set_after_fit_rules_predictions_like_the_per_call_override(fitted):
    """One rule: predictions follow ``confidence_level``, also when set without refitting."""
    _, estimator, X, _ = fitted
    method = "predict_interval" if hasattr(estimator, "predict_interval") else "predict_set"
    expected = getattr(estimator, method)(X, confidence_level=0.8)
    relevelled = pickle.loads(pickle.dumps(estimator)).set_params(confidence_level=0.8)
    assert_same_answer(getattr(relevelled, method)(X), expected)
    assert_same_answer(getattr(relevelled, method)(X, confidence_level=0.9), _output(estimator, X))


def test_same_seed_same_fit_in_threads(fitted):
    name, estimator, X_test, _ = fitted
    X, y = classification_data() if name in CLASSIFIERS else regression_data()
    serial = _output(clone(estimator).fit(X[:300], y[:300]), X_test)

    def fit_and_predict(_):
        return _output(clone(estimator).fit(X[:300], y[:300]), X_test)

    with ThreadPoolExecutor(2) as pool:
        for result in pool.map(fit_and_predict, range(2)):
            np.testing.assert_array_equal(result, serial)


def test_concurrent_predictions_equal_serial_ones(fitted):
    _, estimator, X, _ = fitted
    levels = [0.8, 0.9, 0.95]
    method = "predict_interval" if hasattr(estimator, "predict_interval") else "predict_set"
    serial = [getattr(estimator, method)(X, confidence_level=level) for level in levels]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(
            pool.map(lambda lv: getattr(estimator, method)(X, confidence_level=lv), levels * 2)
        )
    for k, result in enumerate(threaded):
        np.testing.assert_array_equal(result, serial[k % 3])


# --------------------------------------------------------------------------------------------
# equivariance of regressors under a rescaled target
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["absolute", "normalized", "cross-plus", "bootstrap-minmax", "speedcp", "speedcp-auto"]
)
@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1e6, 1e12])
def test_intervals_scale_with_the_target(name, scale):
    X, y = regression_data(300)
    base = REGRESSORS[name]().fit(X[:200], y[:200])
    scaled = REGRESSORS[name]()
    if scaled.get_params().get("lambda_", "auto") != "auto":
        # the loss grows like the target and the RKHS penalty like its square
        scaled.set_params(lambda_=scaled.lambda_ / scale)
    scaled.fit(X[:200], y[:200] * scale)
    np.testing.assert_allclose(
        _output(scaled, X[200:]) / scale, _output(base, X[200:]), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("scale", [1e-12, 1e12])
def test_kernel_quantile_regression_scales_with_the_target(scale):
    X, y = regression_data(200)
    base = KernelQuantileRegressor(gamma=1.0).fit(X, y)
    scaled = KernelQuantileRegressor(gamma=1.0).fit(X, y * scale)
    np.testing.assert_allclose(scaled.predict(X) / scale, base.predict(X), rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------------
# processes: forked workers and loky
# --------------------------------------------------------------------------------------------
FORK_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    import numpy as np
    from joblib import Parallel, delayed
    from sklearn.linear_model import LogisticRegression
    from sklearn.linear_model import LinearRegression
    from sklearn_conformal import (
        CrossConformalRegressor, SplitConformalClassifier, SpeedCPRegressor)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)); y = (X[:, 0] + rng.normal(size=300) > 0).astype(int) + (X[:, 1] > 1)
    clf = SplitConformalClassifier(LogisticRegression(), conformity_score="raps",
                                   random_state=0).fit(X, y)
    reg = SpeedCPRegressor(gamma=1.0, lambda_=0.5, random_state=0).fit(X, X[:, 0] + rng.normal(size=300))
    cross = CrossConformalRegressor(LinearRegression(), n_jobs=2, random_state=0).fit(
        X, X[:, 0] + rng.normal(size=300))
    parent = (clf.predict_set(X), reg.predict_interval(X[:50]), cross.predict_interval(X))

    def work(chunk):
        return (clf.predict_set(X[chunk]), reg.predict_interval(X[:50][chunk % 50]),
                cross.predict_interval(X[chunk]))

    chunks = np.array_split(np.arange(300), 6)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        forked = pool.map(work, chunks)
    loky = Parallel(n_jobs=2, backend="loky")(delayed(work)(c) for c in chunks)
    for results in (forked, loky):
        assert np.array_equal(np.concatenate([r[0] for r in results]), parent[0])
        assert np.allclose(np.concatenate([r[2] for r in results]), parent[2], rtol=1e-12)
        for c, r in zip(chunks, results):
            assert np.array_equal(r[1], parent[1][c % 50])
    print("ok")
    """
)


def test_forked_and_loky_workers_answer_like_the_parent():
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


READ_ONLY_SCRIPT = textwrap.dedent(
    """
    # numba finds no cache location, as on a read-only install with an unwritable home
    import numba.core.caching as caching

    class Nowhere(caching._CacheLocator):
        @classmethod
        def from_function(cls, py_func, py_file):
            return None

    caching.CacheImpl._locator_classes = [Nowhere]
    import numpy as np
    from sklearn.linear_model import LinearRegression
    from sklearn_conformal import (
        CrossConformalRegressor, SplitConformalClassifier, SpeedCPRegressor)
    from sklearn_conformal.metrics import worst_slab_coverage
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
    SplitConformalClassifier(conformity_score="aps", random_state=0).fit(X, y).predict_set(X)
    SpeedCPRegressor(gamma=1.0, lambda_=0.5, random_state=0).fit(X, X[:, 0]).predict_interval(X[:5])
    print("ok")
    """
)


def test_import_and_kernels_work_without_a_numba_cache_location():
    result = subprocess.run(
        [sys.executable, "-c", READ_ONLY_SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


# --------------------------------------------------------------------------------------------
# coverage, served one row at a time, with ties and duplicated rows (slow lane)
# --------------------------------------------------------------------------------------------
N_FITS, LEVEL, Z = 20, 0.9, 4.0
# tied scores (duplicated rows) make the others conservative, so only these are exact
RANDOMIZED = {"aps-marginal", "raps-class", "speedcp", "speedcp-auto", "cact"}


def _one_row_coverage(make, data, n_fit, n_test):
    """Coverage over ``N_FITS`` independent fits, each served one test row at a time."""
    hits = []
    for seed in range(N_FITS):
        X, y = data(n_fit + n_test, seed=100 + seed)
        estimator = make().set_params(random_state=seed).fit(X[:n_fit], y[:n_fit])
        outputs = np.concatenate([_output(estimator, X[i : i + 1]) for i in range(n_fit, len(X))])
        if outputs.dtype == bool:
            columns = np.searchsorted(estimator.classes_, y[n_fit:])
            hits.append(outputs[np.arange(n_test), columns].mean())
        else:
            hits.append(np.mean((y[n_fit:] >= outputs[:, 0]) & (y[n_fit:] <= outputs[:, 1])))
    return np.asarray(hits)


def _with_duplicates_and_ties(data):
    """Data in which a third of the rows repeat earlier ones and features are coarsely rounded."""

    def make(n, seed):
        X, y = data(n, seed=seed)
        rng = np.random.default_rng(seed)
        repeat = rng.random(n) < 1 / 3
        source = rng.integers(0, n, size=n)
        X, y = X.copy(), y.copy()
        X[repeat], y[repeat] = X[source[repeat]], y[source[repeat]]
        return np.round(X, 1), y

    return make


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLASSIFIERS) + sorted(REGRESSORS))
def test_one_row_at_a_time_coverage_is_within_binomial_bounds(name):
    n_fit, n_test = 400, 300
    # 30 % of the 400 fitting rows calibrate (the class mode: ~30 points in each of 4 classes)
    n_cal = 120
    if name in CLASSIFIERS:
        make, data = CLASSIFIERS[name], _with_duplicates_and_ties(classification_data)
    else:
        make, data = REGRESSORS[name], _with_duplicates_and_ties(regression_data)
    hits = _one_row_coverage(make, data, n_fit, n_test)
    # per fit: Beta spread of the calibration draw + binomial test noise, averaged over fits
    se = np.sqrt((LEVEL * (1 - LEVEL) / (n_cal + 2) + LEVEL * (1 - LEVEL) / n_test) / N_FITS)
    assert hits.mean() >= LEVEL - Z * se, (hits.mean(), hits.min(), hits.max())
    if name in RANDOMIZED:
        # randomisation makes coverage exact even with tied scores: no over-coverage either
        assert hits.mean() <= LEVEL + 1.0 / (n_cal + 1) + Z * se, (hits.mean(), hits.min())
