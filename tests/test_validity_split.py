"""Statistical validity: coverage over many independent calibration/test draws.

For exchangeable data the split-conformal coverage, averaged over draws, lies in
``[level, level + 1/(n + 1)]`` (the upper end for continuous scores and randomized APS/RAPS).
Each bound is checked up to 4.5 standard errors of the Monte-Carlo average, so a correct
implementation fails with probability below 1e-5 and an off-by-one rank or a biased score fails.
"""

import numpy as np
import pytest

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn_conformal._core.SmallCalibrationWarning"),
    # 60 calibration points over 6 classes are too few for Ding et al.'s clustering rule
    pytest.mark.filterwarnings("ignore::sklearn_conformal.exceptions.ClusteringFallbackWarning"),
]
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, QuantileRegressor

from sklearn_conformal import SplitConformalRegressor
from sklearn_conformal._core import ClassificationConformalizer

N_DRAWS, N_CAL, N_TEST, N_CLASSES, LEVEL = 300, 60, 100, 6, 0.9
Z = 4.5
# the statistical repetitions of class and cluster modes run in the slow lane
SLOW = pytest.mark.slow


def _calibrated_draw(rng, n):
    """Probabilities from a Dirichlet and labels drawn from them (a perfectly calibrated model)."""
    concentration = np.linspace(0.3, 2.0, N_CLASSES)
    proba = rng.dirichlet(concentration, size=n)
    labels = (rng.uniform(size=(n, 1)) > np.cumsum(proba, axis=1)).sum(axis=1)
    return proba, np.minimum(labels, N_CLASSES - 1)


def _standard_error(n_cal, level):
    # variance of the average over draws: test-point noise + the Beta spread of each draw
    beta_var = level * (1 - level) / (n_cal + 2)
    binom_var = level * (1 - level) / N_TEST
    return np.sqrt((beta_var + binom_var) / N_DRAWS)


def _coverages(score, mode, randomized, seed, n_cal=N_CAL):
    rng = np.random.default_rng(seed)
    hits, per_class = [], np.zeros((N_CLASSES, 2))
    for _ in range(N_DRAWS):
        proba_cal, y_cal = _calibrated_draw(rng, n_cal)
        proba_test, y_test = _calibrated_draw(rng, N_TEST)
        conformalizer = ClassificationConformalizer(score, mode, randomized=randomized).fit(
            proba_cal, y_cal, N_CLASSES, LEVEL, random_state=int(rng.integers(2**31 - 1))
        )
        covered = conformalizer.predict_set(proba_test)[np.arange(N_TEST), y_test]
        hits.append(covered.mean())
        np.add.at(per_class, (y_test, 0), covered)
        np.add.at(per_class, (y_test, 1), 1)
    return np.mean(hits), per_class[:, 0] / per_class[:, 1]


@pytest.mark.parametrize("score", ["lac", "aps", "raps"])
@pytest.mark.parametrize(
    "mode", ["marginal", pytest.param("class", marks=SLOW), pytest.param("cluster", marks=SLOW)]
)
def test_classification_coverage_is_within_the_conformal_bounds(score, mode):
    mean_coverage, _ = _coverages(score, mode, randomized=True, seed=1)
    se = _standard_error(N_CAL, LEVEL)
    assert mean_coverage >= LEVEL - Z * se
    if mode == "marginal":
        assert mean_coverage <= LEVEL + 1 / (N_CAL + 1) + Z * se


@pytest.mark.slow
@pytest.mark.parametrize("score", ["aps", "raps"])
def test_deterministic_aps_raps_still_cover(score):
    mean_coverage, _ = _coverages(score, "marginal", randomized=False, seed=2)
    assert mean_coverage >= LEVEL - Z * _standard_error(N_CAL, LEVEL)


@pytest.mark.slow
@pytest.mark.parametrize("score", ["lac", "aps"])
def test_label_cp_covers_every_class(score):
    # about 40 calibration points per class, so every class threshold is finite
    n_cal = 40 * N_CLASSES
    _, class_coverage = _coverages(score, "class", randomized=True, seed=3, n_cal=n_cal)
    n_per_class = n_cal // N_CLASSES
    se = np.sqrt(LEVEL * (1 - LEVEL) / (n_per_class + 2) / N_DRAWS
                 + LEVEL * (1 - LEVEL) / (N_TEST / N_CLASSES * N_DRAWS))
    assert np.all(class_coverage >= LEVEL - Z * se), class_coverage


@pytest.mark.slow
def test_label_cp_beats_marginal_on_the_worst_class():
    _, marginal = _coverages("lac", "marginal", randomized=True, seed=4, n_cal=240)
    _, by_class = _coverages("lac", "class", randomized=True, seed=4, n_cal=240)
    assert by_class.min() > marginal.min()


def _heteroscedastic(rng, n):
    x = rng.uniform(-2, 2, size=(n, 1))
    y = np.sin(2 * x[:, 0]) + (0.2 + 0.5 * np.abs(x[:, 0])) * rng.standard_normal(n)
    return x, y


@pytest.fixture(scope="module")
def trained_models():
    rng = np.random.default_rng(10)
    X, y = _heteroscedastic(rng, 400)
    features = np.column_stack([X, np.sin(2 * X), np.abs(X)])
    center = LinearRegression().fit(features, y)
    scale = LinearRegression().fit(features, np.abs(y - center.predict(features)))
    lower = QuantileRegressor(quantile=0.05, alpha=0.0).fit(features, y)
    upper = QuantileRegressor(quantile=0.95, alpha=0.0).fit(features, y)
    return {name: FrozenEstimator(model) for name, model in
            dict(center=center, scale=scale, lower=lower, upper=upper).items()}


@pytest.mark.parametrize("score", ["absolute", "normalized", "cqr"])
def test_regression_coverage_is_within_the_conformal_bounds(score, trained_models):
    rng = np.random.default_rng(11)
    if score == "cqr":
        params = dict(estimator=(trained_models["lower"], trained_models["upper"]))
    else:
        params = dict(estimator=trained_models["center"], scale_estimator=trained_models["scale"])
    hits = []
    for _ in range(N_DRAWS):
        X_cal, y_cal = _heteroscedastic(rng, N_CAL)
        X_test, y_test = _heteroscedastic(rng, N_TEST)
        expand = lambda X: np.column_stack([X, np.sin(2 * X), np.abs(X)])  # noqa: E731
        reg = SplitConformalRegressor(confidence_level=LEVEL, conformity_score=score, **params)
        intervals = reg.fit(expand(X_cal), y_cal).predict_interval(expand(X_test))
        hits.append(np.mean((intervals[:, 0] <= y_test) & (y_test <= intervals[:, 1])))
    se = _standard_error(N_CAL, LEVEL)
    assert LEVEL - Z * se <= np.mean(hits) <= LEVEL + 1 / (N_CAL + 1) + Z * se


def test_internal_split_covers_on_fresh_data():
    rng = np.random.default_rng(12)
    hits = []
    for seed in range(40):
        X, y = _heteroscedastic(rng, 300)
        X_test, y_test = _heteroscedastic(rng, 200)
        reg = SplitConformalRegressor(calibration_size=0.5, random_state=seed).fit(X, y)
        intervals = reg.predict_interval(X_test)
        hits.append(np.mean((intervals[:, 0] <= y_test) & (y_test <= intervals[:, 1])))
    se = np.sqrt((0.09 / 152 + 0.09 / 200) / 40)
    assert np.mean(hits) >= LEVEL - Z * se
