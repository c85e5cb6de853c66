"""Progress reports (``verbose``): silent by default, counts reach the total, results unchanged."""

import sys
import threading

import numpy as np
import pytest

from sklearn_conformal import _progress
from sklearn_conformal._progress import progress
from sklearn_conformal.regression import KernelQuantileRegressor, SpeedCPRegressor


@pytest.fixture
def no_tqdm(monkeypatch):
    """Make ``import tqdm`` (and ``tqdm.auto``) fail, as when tqdm is not installed."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert _progress._tqdm_class() is None


def _hammer(bar, n_threads=8, per_thread=125):
    def work():
        for _ in range(per_thread):
            bar.update(1)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n_threads * per_thread


# --------------------------------------------------------------------------------------------
# the helper
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("verbose", [0, False])
def test_helper_is_silent_by_default(capsys, verbose):
    with progress(1000, "work", verbose) as bar:
        total = _hammer(bar)
    assert bar.n == total == 1000
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_helper_plain_lines_without_tqdm(capsys, no_tqdm):
    bar = progress(1000, "work", 1)
    bar._min_interval = 0  # every tenth, whatever the speed
    with bar:
        total = _hammer(bar)
    assert bar.n == total == 1000
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert lines[-1] == "work: 1000/1000"
    assert 2 <= len(lines) <= 11
    assert all(line.startswith("work: ") for line in lines)
    counts = [int(line.split()[1].split("/")[0]) for line in lines]
    assert counts == sorted(counts)


def test_helper_close_is_idempotent_without_tqdm(capsys, no_tqdm):
    bar = progress(3, "x", 1)
    bar.update(3)
    bar.close()
    bar.close()
    assert capsys.readouterr().err.strip().splitlines() == ["x: 3/3"]


def test_helper_tqdm_bar(capsys):
    pytest.importorskip("tqdm")
    with progress(1000, "work", 1) as bar:
        total = _hammer(bar)
    assert bar.n == total == 1000
    assert bar._bar.n == 1000
    out = capsys.readouterr()
    assert out.out == ""
    assert "work" in out.err and "1000/1000" in out.err


# --------------------------------------------------------------------------------------------
# the estimators
# --------------------------------------------------------------------------------------------
def _regression(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 1))
    y = X[:, 0] + rng.normal(size=n) * (0.2 + np.abs(X[:, 0]))
    return X, y


def _assert_same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_kqr_verbose_same_fit(capsys, no_tqdm):
    X, y = _regression(80)
    kw = dict(quantile=0.8, gamma="auto", gamma_grid=[0.3, 1.0, 3.0], random_state=0)
    quiet = KernelQuantileRegressor(**kw).fit(X, y)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    loud = KernelQuantileRegressor(verbose=1, **kw).fit(X, y)
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "gamma cross-validation paths: 15/15"
    assert loud.gamma_ == quiet.gamma_
    _assert_same(loud.cv_loss_, quiet.cv_loss_)
    _assert_same(loud.dual_coef_, quiet.dual_coef_)
    _assert_same(loud.predict(X), quiet.predict(X))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_speedcp_verbose_same_intervals(capsys, no_tqdm, n_jobs):
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LinearRegression

    X, y = _regression(120)
    X_test, _ = _regression(4500, seed=1)  # three chunks of test points
    model = FrozenEstimator(LinearRegression().fit(X, y))
    kw = dict(gamma_grid=[0.3, 1.0, 3.0], n_jobs=n_jobs, random_state=0)
    quiet = SpeedCPRegressor(model, **kw).fit(X, y)
    iv_quiet = quiet.predict_interval(X_test)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    loud = SpeedCPRegressor(model, verbose=1, **kw).fit(X, y)
    iv_loud = loud.predict_interval(X_test)
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert "gamma cross-validation paths: 15/15" in lines
    assert lines[-1] == "S-paths (test points): 4500/4500"
    assert loud.gamma_ == quiet.gamma_ and loud.lam_ == quiet.lam_
    _assert_same(loud.cv_loss_, quiet.cv_loss_)
    _assert_same(iv_loud, iv_quiet)


def test_speedcp_verbose_is_a_parameter():
    assert SpeedCPRegressor().get_params()["verbose"] == 0
    assert KernelQuantileRegressor().get_params()["verbose"] == 0
    with pytest.raises(ValueError):
        SpeedCPRegressor(verbose="loud").fit(*_regression(30))


def test_cocp_verbose_bar_over_phases(capsys, monkeypatch):
    pytest.importorskip("torch")
    import sklearn_conformal._training._phases  # noqa: F401 (skorch, which imports tqdm, first)
    from sklearn_conformal.datasets import make_heteroscedastic_regression
    from sklearn_conformal.regression import CoCPRegressor

    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain lines
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)

    X, y = make_heteroscedastic_regression(400, random_state=0)
    kw = dict(n_folds=2, n_alternations=1, hidden_layer_sizes=(8,), max_epochs=3, patience=2,
              random_state=0)
    quiet = CoCPRegressor(**kw).fit(X, y)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    loud = CoCPRegressor(verbose=1, **kw).fit(X, y)
    out = capsys.readouterr()
    assert out.out.count("[CoCP] fold") == 2 * 4  # the per-phase lines are kept
    assert out.err.strip().splitlines()[-1] == "CoCP training phases: 8/8"
    _assert_same(loud.predict_interval(X), quiet.predict_interval(X))


def test_cact_verbose_uses_skorch_progress_bar(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    from sklearn_conformal.classification import CaCTClassifier
    from sklearn_conformal.datasets import make_long_tailed_classification

    X, y, _, _ = make_long_tailed_classification(
        n_samples=300, n_classes=3, n_features=4, class_sep=1.5, n_balanced_per_class=10,
        random_state=0,
    )
    X = X.astype(np.float32)
    kw = dict(pretrain_epochs=2, max_epochs=1, batch_size=64, hidden_layer_sizes=(8,),
              objective="ce", random_state=0)
    quiet = CaCTClassifier(**kw).fit(X, y)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    loud = CaCTClassifier(verbose=1, **kw).fit(X, y)
    assert "progress" in dict(loud.net_.callbacks_)
    assert "progress" not in dict(quiet.net_.callbacks_)
    _assert_same(loud.predict_set(X), quiet.predict_set(X))
    _assert_same(loud.predict_proba(X), quiet.predict_proba(X))
