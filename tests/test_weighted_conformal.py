"""Weighted conformal prediction: covariate shift (WeightedCalibrator) and label shift
(LabelShiftCalibrator), against their definitions and under simulated shifts."""

import pickle

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression
from sklearn.ensemble import RandomForestClassifier

from sklearn_conformal import SplitConformalClassifier, SplitConformalRegressor
from sklearn_conformal._core._quantile import conformal_quantile
from sklearn_conformal.calibrators import (
    CalibrationData,
    LabelShiftCalibrator,
    WeightedCalibrator,
    check_calibrator,
    weighted_conformal_quantile,
)
from sklearn_conformal.conformity_scores import CQRScore

LEVEL = 0.9


# ---------------------------------------------------------------- simulated covariate shift


def draw(rng, n, shift=0.0):
    """x ~ N(shift, 1); y = x + noise whose spread 0.2 + |x| grows away from the source mass."""
    x = rng.normal(shift, 1.0, size=(n, 1))
    return x, x[:, 0] + rng.normal(size=n) * (0.2 + np.abs(x[:, 0]))


class GaussianRatio:
    """dN(shift, 1) / dN(0, 1) at x: the true likelihood ratio (picklable)."""

    def __init__(self, shift):
        self.shift = shift

    def __call__(self, X):
        return np.exp(self.shift * np.asarray(X, dtype=float)[:, 0] - self.shift**2 / 2)


def unit_weights(X):
    return np.ones(len(X))


def shift_coverage(n_repeats, shift=1.0, n=1000, n_target=500, n_test=2000):
    """Mean target coverage of split, true-ratio and estimated-ratio calibration."""
    coverage = {"split": [], "true": [], "estimated": []}
    for seed in range(n_repeats):
        rng = np.random.default_rng(seed)
        X, y = draw(rng, n)
        X_target, _ = draw(rng, n_target, shift)
        X_test, y_test = draw(rng, n_test, shift)
        modes = {
            "split": ("marginal", {}),
            "true": (WeightedCalibrator(likelihood_ratio=GaussianRatio(shift)), {}),
            "estimated": (WeightedCalibrator(), {"X_target": X_target}),
        }
        for name, (mode, meta) in modes.items():
            reg = SplitConformalRegressor(mode=mode, random_state=seed).fit(X, y, **meta)
            interval = reg.predict_interval(X_test)
            covered = (y_test >= interval[:, 0]) & (y_test <= interval[:, 1])
            coverage[name].append(covered.mean())
    return {name: float(np.mean(values)) for name, values in coverage.items()}


# ---------------------------------------------------------------- the weighted quantile


def brute_force_quantile(scores, weights, test_weight, level):
    """inf{s : sum_{s_i <= s} p_i >= level}, p_i = w_i / (sum w + w(x)), w(x) on +inf."""
    total = weights.sum() + test_weight
    for s in np.sort(np.unique(scores)):
        if weights[scores <= s].sum() / total >= level:
            return s
    return np.inf


@pytest.mark.parametrize("n", [1, 5, 9, 19, 99, 100, 101, 1000])
@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95])
def test_equal_weights_equal_split_conformal(n, level):
    scores = np.random.default_rng(n).exponential(size=n)
    for w in (1.0, 0.3, 7.0):
        thresholds = weighted_conformal_quantile(scores, np.full(n, w), np.full(3, w), level)
        assert np.all(thresholds == conformal_quantile(scores, level))


def test_unit_ratio_estimator_equals_marginal():
    rng = np.random.default_rng(0)
    X, y = draw(rng, 500)
    split = SplitConformalRegressor(random_state=0).fit(X, y)
    weighted = SplitConformalRegressor(
        mode=WeightedCalibrator(likelihood_ratio=unit_weights), random_state=0
    ).fit(X, y)
    for level in (0.8, 0.9, 0.95):
        np.testing.assert_array_equal(
            split.predict_interval(X[:50], confidence_level=level),
            weighted.predict_interval(X[:50], confidence_level=level),
        )
    clf = SplitConformalClassifier(random_state=0).fit(X, (y > 0).astype(int))
    clf_w = SplitConformalClassifier(
        mode=WeightedCalibrator(likelihood_ratio=unit_weights), random_state=0
    ).fit(X, (y > 0).astype(int))
    np.testing.assert_array_equal(clf.predict_set(X[:50]), clf_w.predict_set(X[:50]))


@pytest.mark.parametrize("seed", range(5))
def test_weighted_quantile_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    scores = np.round(rng.normal(size=n), 1)  # ties
    weights = rng.exponential(size=n)
    test_weights = rng.exponential(size=20) * rng.choice([0.01, 1, 100], size=20)
    for level in (0.5, 0.9):
        got = weighted_conformal_quantile(scores, weights, test_weights, level)
        expected = [brute_force_quantile(scores, weights, w, level) for w in test_weights]
        np.testing.assert_array_equal(got, expected)
    # parts: each part on its own, at its own level
    parts = rng.normal(size=(n, 2))
    got = weighted_conformal_quantile(parts, weights, test_weights, [0.8, 0.95])
    for part, level in enumerate((0.8, 0.95)):
        expected = [brute_force_quantile(parts[:, part], weights, w, level) for w in test_weights]
        np.testing.assert_array_equal(got[:, part], expected)


def test_calibrator_protocol_shapes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    scores = rng.exponential(size=40)
    cal = WeightedCalibrator(likelihood_ratio=GaussianRatio(0.5)).fit(
        CalibrationData(scores=scores, confidence_level=LEVEL, X=X)
    )
    assert cal.thresholds(X[:7], LEVEL).shape == (7,)
    cal = WeightedCalibrator(likelihood_ratio=GaussianRatio(0.5)).fit(
        CalibrationData(scores=scores, confidence_level=LEVEL, X=X, labels=rng.integers(0, 3, 40),
                        n_labels=3)
    )
    assert cal.thresholds(X[:7], LEVEL).shape == (7, 1)
    assert isinstance(check_calibrator(WeightedCalibrator()), WeightedCalibrator)


def test_asymmetric_cqr_weighted_per_tail():
    rng = np.random.default_rng(1)
    X, y = draw(rng, 1500)
    X_test, _ = draw(rng, 30, 1.0)
    pair = (LinearRegression(), LinearRegression())  # any (lower, upper) pair; quick
    reg = SplitConformalRegressor(
        pair,
        conformity_score=CQRScore(symmetric=False),
        mode=WeightedCalibrator(likelihood_ratio=unit_weights),
        random_state=0,
    ).fit(X, y)
    plain = SplitConformalRegressor(pair, conformity_score=CQRScore(symmetric=False),
                                    random_state=0)
    plain.fit(X, y)
    np.testing.assert_array_equal(reg.predict_interval(X_test), plain.predict_interval(X_test))
    shifted = SplitConformalRegressor(
        pair,
        conformity_score=CQRScore(symmetric=False),
        mode=WeightedCalibrator(likelihood_ratio=GaussianRatio(1.0)),
        random_state=0,
    ).fit(X, y)
    thresholds = shifted.calibrator_.thresholds(X_test, LEVEL)
    assert thresholds.shape == (30, 2)
    # each tail at level 1 - alpha / 2, as the unweighted score calibrates it
    scores, weights = shifted.conformity_scores_, shifted.calibrator_.weights_
    test_w = GaussianRatio(1.0)(X_test)
    tail = 1 - (1 - LEVEL) / 2
    for part in range(2):
        expected = [brute_force_quantile(scores[:, part], weights, w, tail) for w in test_w]
        np.testing.assert_array_equal(thresholds[:, part], expected)


def test_frozen_model_cross_fits_the_ratio():
    rng = np.random.default_rng(2)
    X, y = draw(rng, 600)
    X_target, _ = draw(rng, 300, 1.0)
    model = FrozenEstimator(LinearRegression().fit(X, y))
    reg = SplitConformalRegressor(model, mode=WeightedCalibrator(n_folds=3), random_state=0)
    reg.fit(X, y, X_target=X_target)
    assert len(reg.calibrator_.domain_classifiers_) == 3
    assert reg.calibrator_.weights_.shape == (600,)
    # the estimated log-ratio grows with x, as the true one does
    w = reg.calibrator_.test_weights(np.array([[-1.0], [0.0], [1.0]]))
    assert w[0] < w[1] < w[2]


def test_domain_classifier_trained_on_training_rows():
    rng = np.random.default_rng(3)
    X, y = draw(rng, 1000)
    X_target, _ = draw(rng, 400, 1.0)
    reg = SplitConformalRegressor(mode=WeightedCalibrator(), random_state=0)
    reg.fit(X, y, X_target=X_target)
    cal = reg.calibrator_
    assert (cal.n_source_, cal.n_target_) == (700, 400)
    assert len(cal.domain_classifiers_) == 1
    # logistic regression recovers the Gaussian log-ratio x - 1/2 roughly
    coef = cal.domain_classifiers_[0].coef_.ravel()[0]
    assert 0.7 < coef < 1.3


def test_dataframe_and_other_domain_classifier():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(4)
    X, y = draw(rng, 400)
    X_target, _ = draw(rng, 200, 1.0)
    frame, target = pd.DataFrame(X, columns=["x"]), pd.DataFrame(X_target, columns=["x"])
    reg = SplitConformalRegressor(
        mode=WeightedCalibrator(domain_classifier=RandomForestClassifier(n_estimators=20)),
        random_state=0,
    ).fit(frame, y, X_target=target)
    assert reg.predict_interval(target).shape == (200, 2)


# ---------------------------------------------------------------- coverage under shift


def test_covariate_shift_coverage_quick():
    coverage = shift_coverage(n_repeats=30)
    # split conformal under-covers the shifted target (about 0.81 at shift 1)
    assert coverage["split"] < LEVEL - 0.05
    assert abs(coverage["true"] - LEVEL) <= 0.02
    assert abs(coverage["estimated"] - LEVEL) <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("shift", [0.5, 1.0, 1.5])
def test_covariate_shift_coverage_repeated(shift):
    coverage = shift_coverage(n_repeats=200, shift=shift, n=2000)
    assert coverage["split"] < LEVEL - 0.02
    assert abs(coverage["true"] - LEVEL) <= 0.02
    assert abs(coverage["estimated"] - LEVEL) <= 0.02


def label_shift_data(rng, n, priors):
    """Three classes with Gaussian X | Y (unchanged by the shift) and the given priors."""
    y = rng.choice(3, size=n, p=priors)
    centers = np.array([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])
    return centers[y] + rng.normal(size=(n, 2)), y


def label_shift_coverage(n_repeats, n=3000, source=(0.6, 0.3, 0.1), target=(0.1, 0.3, 0.6)):
    coverage = {"split": [], "given": [], "bbse": []}
    for seed in range(n_repeats):
        rng = np.random.default_rng(seed)
        X, y = label_shift_data(rng, n, source)
        X_target, _ = label_shift_data(rng, 1000, target)
        X_test, y_test = label_shift_data(rng, 2000, target)
        modes = {
            "split": ("marginal", {}),
            "given": (LabelShiftCalibrator(target_priors=target), {}),
            "bbse": (LabelShiftCalibrator(), {"X_target": X_target}),
        }
        for name, (mode, meta) in modes.items():
            clf = SplitConformalClassifier(mode=mode, random_state=seed).fit(X, y, **meta)
            sets = clf.predict_set(X_test)
            coverage[name].append(sets[np.arange(len(y_test)), y_test].mean())
    return {name: float(np.mean(values)) for name, values in coverage.items()}


def test_label_shift_coverage_quick():
    coverage = label_shift_coverage(n_repeats=20)
    assert coverage["split"] < LEVEL - 0.02
    assert abs(coverage["given"] - LEVEL) <= 0.02
    assert abs(coverage["bbse"] - LEVEL) <= 0.02


@pytest.mark.slow
def test_label_shift_coverage_repeated():
    coverage = label_shift_coverage(n_repeats=150)
    assert abs(coverage["given"] - LEVEL) <= 0.01
    assert abs(coverage["bbse"] - LEVEL) <= 0.015


def test_label_shift_thresholds_and_bbse_priors():
    rng = np.random.default_rng(5)
    X, y = label_shift_data(rng, 3000, (0.6, 0.3, 0.1))
    X_target, _ = label_shift_data(rng, 3000, (0.1, 0.3, 0.6))
    clf = SplitConformalClassifier(mode=LabelShiftCalibrator(), random_state=0)
    clf.fit(X, y, X_target=X_target)
    cal = clf.conformalizer_.calibrator_
    np.testing.assert_allclose(cal.target_priors_, [0.1, 0.3, 0.6], atol=0.06)
    assert cal.thresholds(None, LEVEL).shape == (3,)
    assert cal.confusion_matrix_.shape == (3, 3)
    # the rarer a label in the source and the commoner in the target, the larger its weight
    assert cal.weights_[2] > cal.weights_[1] > cal.weights_[0]


def test_label_shift_given_priors_equal_to_calibration_frequencies_is_marginal():
    rng = np.random.default_rng(6)
    X, y = label_shift_data(rng, 1000, (0.5, 0.3, 0.2))
    marginal = SplitConformalClassifier(random_state=0).fit(X, y)
    counts = np.bincount(marginal.conformalizer_.y_idx_, minlength=3)
    shifted = SplitConformalClassifier(
        mode=LabelShiftCalibrator(target_priors=counts), random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(
        shifted.conformalizer_.thresholds_, marginal.conformalizer_.thresholds_
    )


# ---------------------------------------------------------------- bad input, pickling, seeds


def negative(X):
    return -np.ones(len(X))


def with_nan(X):
    w = np.ones(len(X))
    w[0] = np.nan
    return w


@pytest.mark.parametrize("ratio", [negative, with_nan, lambda X: np.zeros(len(X))])
def test_bad_weights_name_the_parameter(ratio):
    rng = np.random.default_rng(0)
    X, y = draw(rng, 100)
    with pytest.raises(ValueError, match="likelihood_ratio"):
        SplitConformalRegressor(mode=WeightedCalibrator(likelihood_ratio=ratio)).fit(X, y)


def test_wrong_length_weights():
    X, y = draw(np.random.default_rng(0), 100)
    with pytest.raises(ValueError, match="likelihood_ratio must return one weight per row"):
        SplitConformalRegressor(
            mode=WeightedCalibrator(likelihood_ratio=lambda X: np.ones(3))
        ).fit(X, y)


def test_missing_x_target_names_it():
    X, y = draw(np.random.default_rng(0), 100)
    with pytest.raises(ValueError, match="X_target"):
        SplitConformalRegressor(mode=WeightedCalibrator()).fit(X, y)
    with pytest.raises(ValueError, match="X_target"):
        SplitConformalClassifier(mode=LabelShiftCalibrator()).fit(X, (y > 0).astype(int))
    with pytest.raises(ValueError, match="X_target must have the columns"):
        SplitConformalRegressor(mode=WeightedCalibrator()).fit(
            X, y, X_target=np.zeros((10, 3))
        )


def test_bad_target_priors_and_regression_label_shift():
    X, y = label_shift_data(np.random.default_rng(0), 300, (0.4, 0.3, 0.3))
    for priors in ([0.5, 0.5], [-1, 1, 1], [np.nan, 1, 1]):
        with pytest.raises(ValueError, match="target_priors"):
            SplitConformalClassifier(mode=LabelShiftCalibrator(target_priors=priors)).fit(X, y)
    with pytest.raises(ValueError, match="WeightedCalibrator"):
        SplitConformalRegressor(mode=LabelShiftCalibrator(target_priors=[1.0])).fit(X, y * 1.0)


def test_x_target_is_not_passed_to_other_calibrators():
    X, y = draw(np.random.default_rng(0), 100)
    with pytest.raises(TypeError, match="X_target"):
        SplitConformalRegressor().fit(X, y, X_target=X)


def test_pickle_and_seed_determinism():
    rng = np.random.default_rng(7)
    X, y = draw(rng, 800)
    X_target, _ = draw(rng, 300, 1.0)
    X_test, _ = draw(rng, 50, 1.0)

    def fitted(seed, mode):
        return SplitConformalRegressor(mode=mode, random_state=seed).fit(X, y, X_target=X_target)

    for mode in (
        WeightedCalibrator(),
        WeightedCalibrator(likelihood_ratio=GaussianRatio(1.0)),
        WeightedCalibrator(domain_classifier=RandomForestClassifier(n_estimators=10)),
    ):
        a, b = fitted(3, mode), fitted(3, mode)
        np.testing.assert_array_equal(a.predict_interval(X_test), b.predict_interval(X_test))
        restored = pickle.loads(pickle.dumps(a))
        np.testing.assert_array_equal(a.predict_interval(X_test), restored.predict_interval(X_test))
    Xc, yc = label_shift_data(rng, 600, (0.6, 0.3, 0.1))
    Xt, _ = label_shift_data(rng, 300, (0.1, 0.3, 0.6))
    clf = SplitConformalClassifier(mode=LabelShiftCalibrator(), random_state=0).fit(
        Xc, yc, X_target=Xt
    )
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf.predict_set(Xc[:50]), restored.predict_set(Xc[:50]))


class _Recording(WeightedCalibrator):
    """Records what the estimator hands a calibrator declaring metadata."""

    calibration_metadata = ("X_target", "extra")

    def fit(self, data):
        self.seen_ = (sorted(data.metadata), data.X_train, data.predict_proba, data.score)
        return super().fit(data)


def test_declared_metadata_training_rows_and_model_reach_the_calibrator():
    X, y = draw(np.random.default_rng(0), 200)
    reg = SplitConformalRegressor(mode=_Recording(likelihood_ratio=unit_weights), random_state=0)
    reg.fit(X, y, X_target=X[:10], extra=1)
    names, X_train, predict_proba, score = reg.calibrator_.seen_
    assert names == ["X_target", "extra"] and X_train.shape == (140, 1)
    assert predict_proba is None and score is reg.conformity_score_
    clf = SplitConformalClassifier(mode=_Recording(likelihood_ratio=unit_weights), random_state=0)
    clf.fit(X, (y > 0).astype(int), X_target=X[:10])
    names, X_train, predict_proba, _ = clf.conformalizer_.calibrator_.seen_
    assert names == ["X_target"] and X_train.shape == (140, 1)
    assert predict_proba(X[:3]).shape == (3, 2)
