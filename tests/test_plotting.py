"""Displays of sklearn_conformal.plotting: the artists hold the data computed independently."""

import os
import subprocess
import sys
from math import ceil
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from sklearn_conformal import SplitConformalClassifier, SplitConformalRegressor
from sklearn_conformal.plotting import (
    CaCTTraceDisplay,
    CoverageDisplay,
    CutoffDisplay,
    PredictionIntervalDisplay,
    SetSizeDisplay,
    StagedLengthDisplay,
)

Z95 = 1.959963984540054  # standard normal quantile at 0.975


@pytest.fixture
def pyplot():
    """matplotlib's pyplot on the Agg backend; every figure is closed after the test."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.fixture(scope="module")
def iris_classifier():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = SplitConformalClassifier(LogisticRegression(max_iter=500), random_state=0)
    return clf.fit(X, names), X, names


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(200, 2))
    y = X[:, 0] + rng.normal(size=200) * (0.2 + np.abs(X[:, 0]))
    return X, y


@pytest.fixture(scope="module")
def split_regressor(regression_data):
    X, y = regression_data
    return SplitConformalRegressor(random_state=0).fit(X, y)


def _wilson(p, n, z=Z95):
    # written out independently of the package's helper
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def _bar_heights(bars):
    return np.array([patch.get_height() for patch in bars.patches])


def _errorbar_ends(errorbar):
    """``(lower, upper)`` ends of the vertical segments of an ErrorbarContainer."""
    _, _, barlinecols = errorbar.lines
    segments = barlinecols[0].get_segments()
    return np.array([s[0][1] for s in segments]), np.array([s[1][1] for s in segments])


# --------------------------------------------------------------------------------------------
# matplotlib stays optional
# --------------------------------------------------------------------------------------------
def test_import_does_not_import_matplotlib():
    code = (
        "import sys\n"
        "import sklearn_conformal\n"
        "from sklearn_conformal import plotting\n"
        "for name in plotting.__all__:\n"
        "    getattr(plotting, name)\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, timeout=120)


def test_top_level_lazy_attribute():
    import sklearn_conformal

    assert sklearn_conformal.plotting.CoverageDisplay is CoverageDisplay


@pytest.mark.parametrize(
    "display, caller",
    [
        (CoverageDisplay(labels=[0], coverages=[1.0], counts=[3]), "CoverageDisplay.plot"),
        (SetSizeDisplay(set_sizes=[1, 2], n_classes=3), "SetSizeDisplay.plot"),
        (PredictionIntervalDisplay(y_true=[0.0], y_pred=[0.0], y_interval=[[-1.0, 1.0]],
                                   x=[0.0]), "PredictionIntervalDisplay.plot"),
        (CutoffDisplay(x=[0.0], cutoff=[1.0]), "CutoffDisplay.plot"),
        (StagedLengthDisplay(mean_lengths=[1.0]), "StagedLengthDisplay.plot"),
        (CaCTTraceDisplay(multiplier_history=np.zeros((2, 2))), "CaCTTraceDisplay.plot"),
    ],
)
def test_missing_matplotlib_gives_actionable_error(monkeypatch, display, caller):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=rf"{caller} requires matplotlib.*"
                                          r"pip install sklearn-conformal\[plot\]"):
        display.plot()


def test_missing_matplotlib_from_predictions(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"CoverageDisplay.from_predictions requires matplotlib"):
        CoverageDisplay.from_predictions(np.array([0, 1]), np.ones((2, 2), dtype=bool))


# --------------------------------------------------------------------------------------------
# CoverageDisplay
# --------------------------------------------------------------------------------------------
def test_coverage_by_class_matches_numpy(pyplot, iris_classifier):
    clf, X, y = iris_classifier
    _, ax = pyplot.subplots()
    disp = CoverageDisplay.from_estimator(clf, X, y, by="class", ax=ax)
    assert isinstance(disp, CoverageDisplay)
    assert disp.ax_ is ax and disp.figure_ is ax.figure

    sets = clf.predict_set(X)
    columns = {name: k for k, name in enumerate(clf.classes_)}
    hits = sets[np.arange(len(y)), [columns[name] for name in y]]
    expected = np.array([hits[y == name].mean() for name in clf.classes_])
    counts = np.array([np.sum(y == name) for name in clf.classes_])

    assert len(disp.bars_) == 3
    np.testing.assert_allclose(_bar_heights(disp.bars_), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(clf.classes_)
    lower, upper = _errorbar_ends(disp.errorbar_)
    w_lo, w_hi = _wilson(expected, counts)
    np.testing.assert_allclose(lower, np.minimum(w_lo, expected), atol=1e-12)
    np.testing.assert_allclose(upper, np.maximum(w_hi, expected), atol=1e-12)
    assert np.all(lower <= expected) and np.all(upper <= 1.0 + 1e-12)
    np.testing.assert_allclose(disp.target_line_.get_ydata(), [0.9, 0.9])
    assert ax.get_xlabel() == "Class" and ax.get_ylabel() == "Coverage"


def test_coverage_by_size_and_ci_level(pyplot, iris_classifier):
    clf, X, y = iris_classifier
    disp = CoverageDisplay.from_estimator(clf, X, y, by="size", confidence_level=0.8,
                                          ci_level=0.5)
    sets = clf.predict_set(X, confidence_level=0.8)
    sizes = sets.sum(axis=1)
    hits = sets[np.arange(len(y)), np.searchsorted(clf.classes_, y)]
    present = np.unique(sizes)
    expected = np.array([hits[sizes == s].mean() for s in present])
    counts = np.array([np.sum(sizes == s) for s in present])
    assert len(disp.bars_) == len(present)
    np.testing.assert_allclose(_bar_heights(disp.bars_), expected)
    lower, upper = _errorbar_ends(disp.errorbar_)
    z50 = 0.6744897501960817
    w_lo, w_hi = _wilson(expected, counts, z50)
    np.testing.assert_allclose(lower, np.minimum(w_lo, expected), atol=1e-12)
    np.testing.assert_allclose(upper, np.maximum(w_hi, expected), atol=1e-12)
    np.testing.assert_allclose(disp.target_line_.get_ydata(), [0.8, 0.8])
    assert disp.ax_.get_xlabel() == "Set size"


def test_coverage_wilson_at_full_coverage(pyplot):
    # all covered: the normal interval would have zero width; Wilson's lower end is n / (n + z^2)
    y_true = np.array([0, 1, 1, 0])
    sets = np.ones((4, 2), dtype=bool)
    disp = CoverageDisplay.from_predictions(y_true, sets, display_labels=["a", "b"],
                                            confidence_level=0.9)
    lower, upper = _errorbar_ends(disp.errorbar_)
    np.testing.assert_allclose(lower, 2 / (2 + Z95**2))
    np.testing.assert_allclose(upper, 1.0)
    disp = CoverageDisplay.from_predictions(y_true, sets, ci_level=None)
    assert disp.errorbar_ is None and disp.ci_lower_ is None and disp.target_line_ is None


def test_coverage_of_regressor_by_group(pyplot, split_regressor, regression_data):
    X, y = regression_data
    groups = np.where(X[:, 1] > 0, "right", "left")
    disp = CoverageDisplay.from_estimator(split_regressor, X, y, groups=groups)
    intervals = split_regressor.predict_interval(X)
    hits = (intervals[:, 0] <= y) & (y <= intervals[:, 1])
    expected = [hits[groups == "left"].mean(), hits[groups == "right"].mean()]
    assert len(disp.bars_) == 2
    np.testing.assert_allclose(_bar_heights(disp.bars_), expected)
    assert disp.ax_.get_xlabel() == "Group"
    with pytest.raises(ValueError, match="groups="):
        CoverageDisplay.from_estimator(split_regressor, X, y, by="class")


# --------------------------------------------------------------------------------------------
# SetSizeDisplay
# --------------------------------------------------------------------------------------------
def test_set_size_histogram(pyplot, iris_classifier):
    clf, X, _ = iris_classifier
    _, ax = pyplot.subplots()
    disp = SetSizeDisplay.from_estimator(clf, X, confidence_level=0.95, ax=ax)
    assert disp.ax_ is ax
    sizes = clf.predict_set(X, confidence_level=0.95).sum(axis=1)
    expected = np.bincount(sizes, minlength=4)
    assert len(disp.bars_) == 4
    np.testing.assert_allclose(_bar_heights(disp.bars_), expected)
    np.testing.assert_allclose([p.get_x() + p.get_width() / 2 for p in disp.bars_.patches],
                               np.arange(4))
    assert f"{sizes.mean():.2f}" in ax.get_legend().get_texts()[0].get_text()
    assert ax.get_xlabel() == "Set size" and ax.get_ylabel() == "Count"

    # a display redraws on other axes, replacing its artists
    _, other = pyplot.subplots()
    first_bars = disp.bars_
    assert disp.plot(ax=other) is disp and disp.ax_ is other and disp.bars_ is not first_bars

    disp = SetSizeDisplay.from_predictions(clf.predict_set(X), normalize=True)
    sizes = clf.predict_set(X).sum(axis=1)
    np.testing.assert_allclose(_bar_heights(disp.bars_), np.bincount(sizes, minlength=4) / 150)
    assert disp.ax_.get_ylabel() == "Fraction of samples"


# --------------------------------------------------------------------------------------------
# PredictionIntervalDisplay
# --------------------------------------------------------------------------------------------
def test_prediction_interval_along_feature(pyplot, split_regressor, regression_data):
    X, y = regression_data
    oracle = (X[:, 0] - 2.0, X[:, 0] + 2.0)
    _, ax = pyplot.subplots()
    disp = PredictionIntervalDisplay.from_estimator(split_regressor, X, y, feature=1,
                                                    oracle=oracle, ax=ax)
    assert isinstance(disp, PredictionIntervalDisplay) and disp.ax_ is ax
    order = np.argsort(X[:, 1], kind="stable")
    pred = split_regressor.predict(X)
    lo, hi = split_regressor.predict_interval(X).T
    np.testing.assert_allclose(disp.line_.get_xdata(), X[order, 1])
    np.testing.assert_allclose(disp.line_.get_ydata(), pred[order])
    outside = (y < lo) | (y > hi)
    np.testing.assert_allclose(np.sort(disp.outside_scatter_.get_offsets()[:, 1]),
                               np.sort(y[outside]))
    assert disp.scatter_.get_offsets().shape[0] == np.sum(~outside)
    assert disp.coverage_ == pytest.approx(1 - outside.mean())
    np.testing.assert_allclose(disp.oracle_lines_[0].get_ydata(), oracle[0][order])
    np.testing.assert_allclose(disp.oracle_lines_[1].get_ydata(), oracle[1][order])
    # the band spans [lo, hi] at the sorted feature values
    vertices = disp.band_.get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(lo.min())
    assert vertices[:, 1].max() == pytest.approx(hi.max())
    assert ax.get_xlabel() == "Feature 1" and ax.get_ylabel() == "Target"


def test_prediction_interval_against_truth(pyplot, split_regressor, regression_data):
    X, y = regression_data
    disp = PredictionIntervalDisplay.from_estimator(split_regressor, X, y, kind="truth")
    order = np.argsort(y, kind="stable")
    intervals = split_regressor.predict_interval(X)[order]
    segments = np.array(disp.band_.get_segments())
    np.testing.assert_allclose(segments[:, 0, 0], y[order])
    np.testing.assert_allclose(segments[:, 0, 1], intervals[:, 0])
    np.testing.assert_allclose(segments[:, 1, 1], intervals[:, 1])
    assert disp.oracle_lines_ is None
    assert disp.ax_.get_xlabel() == "Observed target"
    with pytest.raises(ValueError, match="needs x"):
        PredictionIntervalDisplay.from_predictions(y, y, intervals)


def test_prediction_interval_feature_by_name(pyplot, split_regressor, regression_data):
    pd = pytest.importorskip("pandas")
    X, y = regression_data
    frame = pd.DataFrame(X, columns=["age", "dose"])
    reg = SplitConformalRegressor(random_state=0).fit(frame, y)
    disp = PredictionIntervalDisplay.from_estimator(reg, frame, y, feature="dose")
    np.testing.assert_allclose(disp.line_.get_xdata(), np.sort(X[:, 1], kind="stable"))
    assert disp.ax_.get_xlabel() == "dose"
    with pytest.raises(ValueError, match="not a column"):
        PredictionIntervalDisplay.from_estimator(reg, frame, y, feature="weight")


# --------------------------------------------------------------------------------------------
# CutoffDisplay
# --------------------------------------------------------------------------------------------
def test_speedcp_cutoff_along_feature(pyplot):
    from sklearn_conformal import SpeedCPRegressor

    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(200, 1))
    y = X[:, 0] + rng.normal(size=200) * (0.2 + np.abs(X[:, 0]))
    reg = SpeedCPRegressor(gamma=1.0, lambda_=0.5, random_state=0).fit(X, y)
    X_test = np.linspace(-2, 2, 25)[::-1, None]
    _, ax = pyplot.subplots()
    disp = CutoffDisplay.from_estimator(reg, X_test, reference="split", ax=ax)
    assert isinstance(disp, CutoffDisplay) and disp.ax_ is ax
    cut = reg.predict_cutoff(X_test)
    np.testing.assert_allclose(disp.line_.get_xdata(), X_test[::-1, 0])
    np.testing.assert_allclose(disp.line_.get_ydata(), cut[::-1])
    scores = np.sort(reg.conformity_scores_)
    split = scores[ceil((len(scores) + 1) * 0.9) - 1]
    np.testing.assert_allclose(disp.reference_line_.get_ydata(), [split, split])
    assert ax.get_xlabel() == "Feature 0" and ax.get_ylabel() == "Score cutoff"

    disp = CutoffDisplay.from_predictions([2.0, 0.0, 1.0], [0.5, 0.1, 0.3], feature_name="x")
    np.testing.assert_allclose(disp.line_.get_ydata(), [0.1, 0.3, 0.5])
    assert disp.reference_line_ is None and disp.ax_.get_xlabel() == "x"


# --------------------------------------------------------------------------------------------
# training traces
# --------------------------------------------------------------------------------------------
def test_cact_traces_from_arrays_many_classes(pyplot):
    rng = np.random.default_rng(0)
    multipliers = rng.uniform(size=(5, 12))
    constraints = rng.normal(size=(4, 12))
    disp = CaCTTraceDisplay.from_predictions(multipliers, constraints, max_classes=10)
    assert len(disp.axes_) == 2
    mean_line, max_line = disp.multiplier_lines_
    np.testing.assert_allclose(mean_line.get_ydata(), multipliers.mean(axis=1))
    np.testing.assert_allclose(max_line.get_ydata(), multipliers.max(axis=1))
    np.testing.assert_allclose(disp.constraint_lines_[1].get_ydata(), constraints.max(axis=1))
    np.testing.assert_allclose(disp.constraint_lines_[1].get_xdata(), np.arange(1, 5))
    np.testing.assert_allclose(disp.zero_line_.get_ydata(), [0, 0])
    # without constraints: one axes, which may be given
    _, ax = pyplot.subplots()
    disp = CaCTTraceDisplay.from_predictions(multipliers[:, :3], ax=ax)
    assert disp.axes_[0] is ax and disp.constraint_lines_ is None
    assert len(disp.multiplier_lines_) == 3
    with pytest.raises(ValueError, match="ax must hold 2"):
        CaCTTraceDisplay.from_predictions(multipliers, constraints, ax=ax)


@pytest.mark.torch
def test_cact_traces_from_estimator(pyplot):
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    from sklearn_conformal import CaCTClassifier

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    params = dict(pretrain_epochs=10, max_epochs=2, batch_size=64, hidden_layer_sizes=(16,),
                  random_state=0)
    clf = CaCTClassifier(**params).fit(X, y)
    _, axes = pyplot.subplots(1, 2)
    disp = CaCTTraceDisplay.from_estimator(clf, ax=axes)
    assert list(disp.axes_) == list(axes)
    assert len(disp.multiplier_lines_) == len(clf.classes_)
    for k, line in enumerate(disp.multiplier_lines_):
        np.testing.assert_allclose(line.get_ydata(), clf.multiplier_history_[:, k])
        np.testing.assert_allclose(line.get_xdata(), np.arange(clf.multiplier_history_.shape[0]))
    for k, line in enumerate(disp.constraint_lines_):
        np.testing.assert_allclose(line.get_ydata(), clf.constraint_history_[:, k])
    assert axes[0].get_ylabel() == "Multiplier" and axes[1].get_xlabel() == "Update"

    ce = CaCTClassifier(**dict(params, objective="ce", pretrain_epochs=2, max_epochs=1)).fit(X, y)
    with pytest.raises(ValueError, match="no multiplier traces"):
        CaCTTraceDisplay.from_estimator(ce)


def test_staged_lengths_from_predictions(pyplot):
    y = np.array([0.0, 1.0, 2.0, 3.0])
    staged = [np.column_stack([y - 1, y + 1]), np.column_stack([y - 0.5, y + 0.2]),
              np.column_stack([y + 0.1, y + 0.3])]
    _, ax = pyplot.subplots()
    disp = StagedLengthDisplay.from_predictions(y, staged, confidence_level=0.9, ax=ax)
    assert disp.ax_ is ax
    np.testing.assert_allclose(disp.line_.get_ydata(), [2.0, 0.7, 0.2])
    np.testing.assert_allclose(disp.coverage_line_.get_ydata(), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(disp.target_line_.get_ydata(), [0.9, 0.9])
    assert ax.get_xlabel() == "Alternations" and ax.get_ylabel() == "Mean interval length"
    disp = StagedLengthDisplay.from_predictions(None, staged)
    assert disp.coverage_ax_ is None and disp.coverage_line_ is None


@pytest.mark.torch
def test_cocp_staged_lengths_from_estimator(pyplot):
    pytest.importorskip("torch")
    from sklearn_conformal import CoCPRegressor
    from sklearn_conformal.datasets import make_heteroscedastic_regression

    X, y = make_heteroscedastic_regression(300, random_state=0)
    model = CoCPRegressor(n_folds=2, n_alternations=2, hidden_layer_sizes=(16, 16), max_epochs=8,
                          patience=3, random_state=0).fit(X, y)
    disp = StagedLengthDisplay.from_estimator(model, X, y)
    staged = list(model.staged_predict_interval(X))
    assert len(staged) == 3
    np.testing.assert_allclose(disp.line_.get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(disp.line_.get_ydata(),
                               [np.mean(iv[:, 1] - iv[:, 0]) for iv in staged])
    np.testing.assert_allclose(disp.coverage_line_.get_ydata(),
                               [np.mean((iv[:, 0] <= y) & (y <= iv[:, 1])) for iv in staged])
    np.testing.assert_allclose(disp.target_line_.get_ydata(), [0.9, 0.9])
    with pytest.raises(TypeError, match="staged_predict_interval"):
        StagedLengthDisplay.from_estimator(LogisticRegression(), X, y)
