"""SpeedCPRegressor at predict time: per-row randomisation, no state mutation, bounded memory."""

import os
import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression

from sklearn_conformal import SpeedCPRegressor
from sklearn_conformal._kqr import _core, _kernels
from sklearn_conformal._kqr._path import kernel_kind, kernel_matrix, sq_dists
from sklearn_conformal.exceptions import InsufficientMemoryError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _hetero(rng, n):
    X = rng.uniform(-2, 2, size=(n, 1))
    return X, X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))


def _fitted(seed=0, n_cal=150, **kw):
    rng = np.random.default_rng(seed)
    X, y = _hetero(rng, n_cal)
    lr = LinearRegression().fit(*_hetero(np.random.default_rng(10_000 + seed), 50))
    params = dict(gamma=1.0, lambda_=1.0, random_state=seed)
    params.update(kw)
    return SpeedCPRegressor(FrozenEstimator(lr), **params).fit(X, y)


# --------------------------------------------------------------------------------------------
# the randomised cutoff belongs to the row, not to its position in the batch
# --------------------------------------------------------------------------------------------
def test_randomised_interval_of_a_row_does_not_depend_on_the_batch():
    reg = _fitted()
    Xt, _ = _hetero(np.random.default_rng(1), 40)
    full = reg.predict_interval(Xt)
    one_by_one = np.vstack([reg.predict_interval(Xt[i:i + 1]) for i in range(len(Xt))])
    chunks = np.vstack([reg.predict_interval(Xt[i:i + 7]) for i in range(0, len(Xt), 7)])
    perm = np.random.default_rng(2).permutation(len(Xt))
    np.testing.assert_array_equal(one_by_one, full)
    np.testing.assert_array_equal(chunks, full)
    np.testing.assert_array_equal(reg.predict_interval(Xt[perm]), full[perm])
    np.testing.assert_array_equal(reg.predict_interval(Xt.astype(np.float32)),
                                  reg.predict_interval(Xt.astype(np.float32).astype(float)))
    # distinct rows still get distinct uniforms: the cutoffs are not all at one quantile level
    cut = reg.predict_cutoff(Xt)
    assert np.unique(np.round(cut, 12)).size > len(Xt) // 2


def test_threaded_chunks_equal_serial_calls():
    """More than one chunk of test rows dispatched to threads gives the serial intervals."""
    Xt, _ = _hetero(np.random.default_rng(9), 4500)
    threaded = _fitted(n_jobs=2).predict_interval(Xt)
    serial = _fitted(n_jobs=1)
    np.testing.assert_array_equal(threaded, serial.predict_interval(Xt))
    np.testing.assert_array_equal(
        threaded, np.vstack([serial.predict_interval(Xt[i:i + 999]) for i in range(0, 4500, 999)]))


def _one_row_coverage(seed, n_cal, n_test):
    reg = _fitted(seed=seed, n_cal=n_cal)
    Xt, yt = _hetero(np.random.default_rng(50_000 + seed), n_test)
    iv = np.vstack([reg.predict_interval(Xt[i:i + 1]) for i in range(n_test)])
    return np.mean((yt >= iv[:, 0]) & (yt <= iv[:, 1]))


def _check_one_row_coverage(n_fits, n_cal, n_test, level=0.9):
    cov = np.array([_one_row_coverage(s, n_cal, n_test) for s in range(n_fits)])
    # each fit: binomial over its test points plus the calibration-conditional spread (4 sd)
    sd_fit = np.sqrt(level * (1 - level) * (1.0 / n_test + 1.0 / n_cal))
    assert np.all(np.abs(cov - level) <= 4 * sd_fit), cov
    sd_all = np.sqrt(level * (1 - level) * (1.0 / (n_fits * n_test) + 1.0 / (n_fits * n_cal)))
    assert abs(cov.mean() - level) <= 4 * sd_all, cov.mean()


def test_one_row_at_a_time_coverage_small():
    """Serving one row per call keeps coverage in every fit (not one shared uniform per fit)."""
    _check_one_row_coverage(n_fits=5, n_cal=150, n_test=120)


@pytest.mark.slow
def test_one_row_at_a_time_coverage_over_repeated_fits():
    _check_one_row_coverage(n_fits=40, n_cal=200, n_test=200)


# --------------------------------------------------------------------------------------------
# predict does not mutate the estimator
# --------------------------------------------------------------------------------------------
LEVELS = [None, 0.6, 0.75, 0.9, 0.95, 0.8]


@pytest.mark.parametrize("keep_kernel", [False, True])
def test_predict_at_other_levels_leaves_the_estimator_unchanged(keep_kernel):
    reg = _fitted(lambda_="auto", keep_kernel=keep_kernel)
    Xt, _ = _hetero(np.random.default_rng(3), 30)
    before_pickle = pickle.dumps(reg)
    before_state = joblib.hash(reg.__dict__)
    names = set(vars(reg))
    for level in LEVELS:
        reg.predict_interval(Xt, confidence_level=level)
        reg.predict_cutoff(Xt[:3], confidence_level=level)
    reg.predict(Xt)
    assert set(vars(reg)) == names
    assert joblib.hash(reg.__dict__) == before_state
    assert pickle.dumps(reg) == before_pickle


@pytest.mark.parametrize("keep_kernel", [False, True])
def test_concurrent_predicts_at_different_levels_equal_serial(keep_kernel):
    reg = _fitted(lambda_="auto", keep_kernel=keep_kernel)
    Xt, _ = _hetero(np.random.default_rng(4), 30)
    serial = [reg.predict_interval(Xt, confidence_level=lv) for lv in LEVELS]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda lv: reg.predict_interval(Xt, confidence_level=lv),
                                 LEVELS * 3))
    for k, iv in enumerate(threaded):
        np.testing.assert_array_equal(iv, serial[k % len(LEVELS)])
    # a fresh copy, never used at other levels, agrees
    fresh = pickle.loads(pickle.dumps(_fitted(lambda_="auto")))
    for lv, iv in zip(LEVELS, serial):
        np.testing.assert_array_equal(fresh.predict_interval(Xt, confidence_level=lv), iv)


def test_auto_keeps_the_kernel_only_within_its_memory_budget(monkeypatch):
    from sklearn_conformal import _speedcp_common as _speedcp

    assert _fitted(lambda_=0.5)._kept_solver is not None
    monkeypatch.setattr(_speedcp, "_KEEP_KERNEL_BYTES", 8 * 10**2)
    assert _fitted(lambda_=0.5)._kept_solver is None


def test_keep_kernel_gives_identical_results_and_never_pickles_the_kernel():
    n_cal = 300
    lean = _fitted(n_cal=n_cal, lambda_="auto")
    kept = _fitted(n_cal=n_cal, lambda_="auto", keep_kernel=True)
    Xt, _ = _hetero(np.random.default_rng(8), 40)
    for level in LEVELS:
        np.testing.assert_array_equal(kept.predict_interval(Xt, confidence_level=level),
                                      lean.predict_interval(Xt, confidence_level=level))
    blob = pickle.dumps(kept)
    assert len(blob) < n_cal * n_cal * 8 / 4
    assert abs(len(blob) - len(pickle.dumps(lean))) < 1000
    loaded = pickle.loads(blob)
    assert loaded._kept_solver is not None
    np.testing.assert_array_equal(loaded.predict_interval(Xt), kept.predict_interval(Xt))


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "matern32", "matern52", "imq"])
def test_kernel_from_points_equals_kernel_of_distances(kernel):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(203, 3)), rng.normal(size=(57, 3))
    for A, B in [(X, X), (X, Y), (Y, X)]:
        ref = _core.kernel_from_sq_dists(sq_dists(A, B), kernel_kind(kernel), 0.7, 0.5)
        for n_jobs in (1, 3):
            np.testing.assert_array_equal(kernel_matrix(A, B, kernel, 0.7, n_jobs=n_jobs), ref)
    np.testing.assert_array_equal(kernel_matrix(X, None, kernel, 0.7), kernel_matrix(X, X.copy(),
                                                                                      kernel, 0.7))


_PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LinearRegression
    from sklearn_conformal import SpeedCPRegressor
    from sklearn_conformal._kqr._path import kernel_matrix

    def hwm():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM", "VmRSS")):
                    yield int(line.split()[1]) * 1024

    def reset():
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")

    n = int(sys.argv[1])
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = X[:, 0] + rng.normal(size=n)
    reg = SpeedCPRegressor(FrozenEstimator(LinearRegression().fit(X, y)),
                           gamma_grid=[0.5, 2.0], keep_kernel=False, random_state=0)
    reg.fit(X[:60], y[:60])
    kernel_matrix(X[:60], X[:60])
    out = {}
    reset(); base = list(hwm())[1]
    K = kernel_matrix(X, X, "rbf", 1.0); del K
    out["kernel"] = list(hwm())[0] - base
    reset(); base = list(hwm())[1]
    reg.fit(X, y)
    out["fit"] = list(hwm())[0] - base
    out["kept"] = list(hwm())[1] - base
    print(json.dumps(out))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_kernel_and_fit_peak_memory_is_about_one_kernel_matrix():
    import json

    n = 2500
    # glibc keeps freed blocks under its (adaptive, up to 32 MiB) mmap threshold for reuse, which
    # would count memory no longer in use; with a fixed low threshold the RSS is the live memory
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n)], capture_output=True,
                         text=True, env=env, check=True, timeout=300)
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    one = n * n * 8
    assert peak["kernel"] <= 1.1 * one, peak["kernel"] / one
    assert peak["fit"] <= 1.25 * one, peak["fit"] / one
    # the kernel is not kept after fit
    assert peak["kept"] <= 0.2 * one, peak["kept"] / one


def test_over_the_memory_limit_fit_and_predict_fail_early_with_the_remedy(monkeypatch):
    reg = _fitted(n_cal=400, keep_kernel=False)
    Xt, _ = _hetero(np.random.default_rng(5), 5)
    rng = np.random.default_rng(6)
    X, y = _hetero(rng, 400)
    monkeypatch.setattr(_kernels, "available_memory", lambda: 1_000_000)
    with pytest.raises(InsufficientMemoryError, match=r"n_calibration=400.*calibration_size"):
        SpeedCPRegressor(gamma=1.0, calibration_size=0.5, random_state=0).fit(
            np.vstack([X, X]), np.concatenate([y, y]))
    with pytest.raises(MemoryError, match="calibration_size"):
        reg.predict_interval(Xt)
    monkeypatch.setattr(_kernels, "available_memory", lambda: None)  # unknown: no check
    assert np.all(np.isfinite(reg.predict_interval(Xt)))


# --------------------------------------------------------------------------------------------
# DataFrames and NaN reach the point model untouched; the kernel gets finite numbers
# --------------------------------------------------------------------------------------------
def _frame(rng, n, nan_rate=0.1):
    pd = pytest.importorskip("pandas")
    x = rng.uniform(-2, 2, n)
    z = rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], n)
    y = x + (g == "b") * 2.0 + rng.normal(size=n) * (0.2 + np.abs(x))
    z[rng.random(n) < nan_rate] = np.nan
    return pd.DataFrame({"x": x, "g": g, "z": z}), y


def _embedding():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["x", "z"]),
        ("cat", OneHotEncoder(sparse_output=False), ["g"]),
    ])


def test_dataframe_with_column_transformer_pipeline_and_nan():
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    df, y = _frame(rng, 400)
    df_test, _ = _frame(rng, 25)
    # the point model selects columns by name: it must receive the DataFrame itself
    model = make_pipeline(_embedding(), LinearRegression())
    reg = SpeedCPRegressor(model, embedding=_embedding(), phi=1, gamma=0.5, lambda_=1.0,
                           random_state=0).fit(df, y)
    assert list(reg.phi_categories_) == ["a", "b", "c"]
    iv = reg.predict_interval(df_test)
    assert iv.shape == (25, 2) and np.all(np.isfinite(iv)) and np.all(iv[:, 1] >= iv[:, 0])
    # the cutoffs are the row's own; the centres may differ in the last bits only through the
    # point model's batched arithmetic
    cut = np.concatenate([reg.predict_cutoff(df_test.iloc[[i]]) for i in range(len(df_test))])
    np.testing.assert_array_equal(cut, reg.predict_cutoff(df_test))
    rows = np.vstack([reg.predict_interval(df_test.iloc[[i]]) for i in range(len(df_test))])
    np.testing.assert_allclose(rows, iv, rtol=1e-12, atol=1e-12)
    # a model that handles NaN natively and an imputing embedding: NaN is accepted
    numeric = df[["x", "z"]]
    from sklearn.impute import SimpleImputer

    hgb = SpeedCPRegressor(HistGradientBoostingRegressor(max_iter=20), embedding=SimpleImputer(),
                           gamma=1.0, lambda_=1.0, random_state=0)
    assert hgb.__sklearn_tags__().input_tags.allow_nan
    iv = hgb.fit(numeric, y).predict_interval(df_test[["x", "z"]])
    assert np.all(np.isfinite(iv))


def test_nan_or_strings_the_kernel_cannot_take_are_named():
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(1)
    df, y = _frame(rng, 200)
    model = make_pipeline(_embedding(), LinearRegression())
    with pytest.raises(ValueError, match=r"kernel's input is X itself.*not numeric.*embedding="):
        SpeedCPRegressor(model, gamma=1.0, random_state=0).fit(df, y)
    numeric = df[["x", "z"]]
    with pytest.raises(ValueError, match=r"kernel's input is X itself.*NaN.*embedding="):
        SpeedCPRegressor(HistGradientBoostingRegressor(max_iter=10), gamma=1.0,
                         random_state=0).fit(numeric, y)
    # a point model without NaN support names itself
    from sklearn.impute import SimpleImputer

    with pytest.raises(ValueError, match="(?s)NaN.*LinearRegression does not accept"):
        SpeedCPRegressor(LinearRegression(), embedding=SimpleImputer(), gamma=1.0,
                         random_state=0).fit(numeric, y)
    assert not SpeedCPRegressor().__sklearn_tags__().input_tags.allow_nan


def test_row_keys_of_a_mixed_dataframe_are_per_row():
    from sklearn_conformal._core._row_keys import row_keys

    df, _ = _frame(np.random.default_rng(2), 12)
    keys = row_keys(df)
    assert keys.shape == (12,) and np.unique(keys).size == 12
    np.testing.assert_array_equal(
        np.concatenate([row_keys(df.iloc[[i]]) for i in range(12)]), keys)


def test_kernel_quantile_regressor_fails_early_over_the_memory_limit(monkeypatch):
    from sklearn_conformal import KernelQuantileRegressor

    X, y = _hetero(np.random.default_rng(7), 300)
    monkeypatch.setattr(_kernels, "available_memory", lambda: 100_000)
    with pytest.raises(InsufficientMemoryError, match=r"n_samples=300.*fewer samples"):
        KernelQuantileRegressor(gamma=1.0).fit(X, y)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_kept_solver_with_duplicate_calibration_rows_predicts_at_another_level(kind):
    """Duplicate calibration rows are merged inside the solver; a prediction at a level other
    than the fitted one used to rebuild its lambda path from the merged kernel against the
    unmerged rows (a shape error). It now equals the estimator that keeps no kernel."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from sklearn_conformal import SpeedCPClassifier, SpeedCPRegressor

    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(300, 2))
    X = np.vstack([X, X[:40]])
    if kind == "regressor":
        y = X[:, 0] + rng.normal(size=340) * 0.3
        y[300:] = y[:40]
        model = FrozenEstimator(LinearRegression().fit(X, y))
        make = lambda keep: SpeedCPRegressor(model, gamma=1.0, random_state=0,  # noqa: E731
                                             keep_kernel=keep)
        method = "predict_interval"
    else:
        y = (X[:, 0] + rng.normal(size=340) * 0.5 > 0).astype(int)
        y[300:] = y[:40]
        model = FrozenEstimator(LogisticRegression().fit(X, y))
        make = lambda keep: SpeedCPClassifier(model, gamma=1.0, lambda_=10.0,  # noqa: E731
                                              random_state=0, keep_kernel=keep)
        method = "predict_set"
    kept, lean = make(True).fit(X, y), make(False).fit(X, y)
    assert kept._kept_solver is not None and kept._kept_solver.rows.merged
    np.testing.assert_array_equal(
        getattr(kept, method)(X[:30], confidence_level=0.8),
        getattr(lean, method)(X[:30], confidence_level=0.8),
    )
