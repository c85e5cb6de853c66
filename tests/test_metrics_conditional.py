"""Conditional-coverage diagnostics against independent computations."""

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from sklearn_conformal.metrics._conditional import (
    conditional_mae,
    excess_risk_target_coverage,
    mean_squared_conditional_error,
    worst_slab_coverage,
)


def test_conditional_mae():
    c = np.array([0.9, 0.8, 1.0, 0.85])
    assert conditional_mae(c, 0.9) == pytest.approx((0 + 0.1 + 0.1 + 0.05) / 4)
    with pytest.raises(ValueError, match="conditional_coverage"):
        conditional_mae([1.2], 0.9)
    with pytest.raises(ValueError, match="confidence_level"):
        conditional_mae([0.5], 1.0)


def test_msce_on_separated_blobs_equals_group_formula():
    # ten far-apart blobs of unequal sizes: k-means recovers them, so MSCE is the weighted
    # squared coverage gap over the known groups
    rng = np.random.default_rng(0)
    sizes = rng.integers(20, 80, size=10)
    centres = np.arange(10)[:, None] * np.array([[100.0, -50.0]])
    groups = np.repeat(np.arange(10), sizes)
    X = centres[groups] + rng.normal(size=(len(groups), 2))
    rates = np.linspace(0.6, 1.0, 10)
    covered = (rng.random(len(groups)) < rates[groups]).astype(float)
    expected = sum(
        (groups == g).mean() * (covered[groups == g].mean() - 0.9) ** 2 for g in range(10)
    )
    assert mean_squared_conditional_error(X, covered, 0.9) == pytest.approx(expected, rel=1e-12)


def _brute_force_min_slab(order_values, covered, min_size):
    z = covered[np.argsort(order_values, kind="stable")]
    n = len(z)
    return min(
        z[i:j].mean() for i in range(n) for j in range(i + min_size, n + 1)
    )


@pytest.mark.parametrize("seed", range(4))
def test_wsc_one_dimensional_equals_brute_force(seed):
    # in 1-D every direction is +-1, so the slabs are the windows of x-sorted points
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 90))
    X = rng.normal(size=(n, 1))
    covered = (rng.random(n) < 0.5 + 0.5 * (X[:, 0] > 0)).astype(float)
    for delta in (0.05, 0.1, 0.3):
        min_size = int(np.ceil(delta * n - 1e-9))
        expected = _brute_force_min_slab(X[:, 0], covered, min_size)
        got = worst_slab_coverage(X, covered, delta=delta, n_directions=3)
        assert got == pytest.approx(expected, abs=1e-12)


def test_wsc_multivariate_equals_brute_force_over_the_same_directions():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 3))
    covered = (rng.random(50) < 0.85).astype(float)
    directions = np.random.default_rng(11).standard_normal((7, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    expected = min(_brute_force_min_slab(X @ v, covered, 5) for v in directions)
    assert worst_slab_coverage(X, covered, delta=0.1, n_directions=7, random_state=11) == (
        pytest.approx(expected, abs=1e-12)
    )


def test_wsc_detects_a_bad_slab_and_validates():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(400, 2))
    covered = np.where(X[:, 0] > 0.6, 0.0, 1.0)  # nothing covered in a 20 % slab
    assert worst_slab_coverage(X, covered, delta=0.1, n_directions=50) < 0.3
    with pytest.raises(ValueError, match="delta"):
        worst_slab_coverage(X, covered, delta=0)
    with pytest.raises(ValueError, match="covered"):
        worst_slab_coverage(X, covered[:-1])
    with pytest.raises(ValueError, match="0/1"):
        worst_slab_coverage(X, covered * 0.5)


def test_ert_with_constant_classifier_matches_manual_folds():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    covered = (rng.random(300) < 0.8).astype(float)
    tau = 0.9
    l1, l2 = [], []
    for train, test in KFold(5, shuffle=True, random_state=42).split(X):
        p = np.full(len(test), covered[train].mean())  # DummyClassifier(prior) probability
        z = covered[test]
        l1.append(np.mean(np.where(p > tau, 1.0, np.where(p < tau, -1.0, 0.0)) * (z - tau)))
        l2.append(np.mean((tau - z) ** 2) - np.mean((p - z) ** 2))
    est = DummyClassifier(strategy="prior")
    got1 = excess_risk_target_coverage(X, covered, tau, loss="l1", estimator=est)
    got2 = excess_risk_target_coverage(X, covered, tau, loss="l2", estimator=est)
    assert got1 == pytest.approx(np.mean(l1), abs=1e-12)
    assert got2 == pytest.approx(np.mean(l2), abs=1e-12)


def test_ert_l1_recovers_the_conditional_miscoverage_when_it_is_learnable():
    # coverage is 1 for x > 0 and 0 otherwise: c(x) in {0, 1}, so E|c - tau| = P(c=1)(1-tau) +
    # P(c=0) tau, and a logistic regression separates the two halves
    rng = np.random.default_rng(2)
    X = rng.normal(size=(1000, 1))
    covered = (X[:, 0] > 0).astype(float)
    tau = 0.9
    truth = covered.mean() * (1 - tau) + (1 - covered.mean()) * tau
    sharp = LogisticRegression(C=1e6, max_iter=10_000)
    got = excess_risk_target_coverage(X, covered, tau, loss="l1", estimator=sharp)
    assert got == pytest.approx(truth, abs=0.005)
    # with the default (regularised) auditor points near x = 0 get p < tau: a lower bound
    default = excess_risk_target_coverage(X, covered, tau, loss="l1")
    assert truth - 0.05 < default <= truth
    # Brier gain: (tau - z)^2 averaged, minus the small residual Brier of a near-perfect p
    truth2 = np.mean((tau - covered) ** 2)
    got2 = excess_risk_target_coverage(X, covered, tau, loss="l2", estimator=sharp)
    assert got2 == pytest.approx(truth2, abs=0.01)


def test_ert_is_near_zero_for_valid_independent_coverage():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 3))
    covered = (rng.random(4000) < 0.9).astype(float)
    assert abs(excess_risk_target_coverage(X, covered, 0.9, loss="l1")) < 0.02
    assert abs(excess_risk_target_coverage(X, covered, 0.9, loss="l2")) < 0.002
    with pytest.raises(ValueError, match="loss"):
        excess_risk_target_coverage(X, covered, 0.9, loss="l3")
