"""Non-randomised APS/RAPS (Romano et al. 2020) and the RAPS defaults.

With ``randomized=False`` a set holds the labels in rank order up to and including the first
whose cumulative score (mass + RAPS penalty, ``u = 1``) exceeds the threshold: label ``y`` is
kept iff the score of the label ranked just before it is at most ``q_y`` (the top label always).
Calibration scores a label the same way, so coverage is at least the level.
"""

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from sklearn_conformal import SplitConformalClassifier
from sklearn_conformal._core._classification_scores import all_label_scores, true_label_scores
from sklearn_conformal._core._conformalizer import ClassificationConformalizer


def _reference_sets(proba, thresholds, k_reg, lambda_reg):
    """Walk each row in rank order (decreasing p, ties by the smaller label index)."""
    n, k = proba.shape
    out = np.zeros((n, k), dtype=bool)
    for i in range(n):
        order = sorted(range(k), key=lambda j: (-proba[i, j], j))
        mass = 0.0
        previous = None  # u = 1 score of the label ranked just before
        for rank, label in enumerate(order, start=1):
            out[i, label] = previous is None or previous <= thresholds[label]
            mass += proba[i, label]
            previous = mass + lambda_reg * max(0, rank - k_reg)
    return out


def _reference_true_scores(proba, y, k_reg, lambda_reg):
    scores = np.empty(len(y))
    for i, label in enumerate(y):
        order = sorted(range(proba.shape[1]), key=lambda j: (-proba[i, j], j))
        rank = order.index(label) + 1
        mass = 0.0
        for j in order[: rank - 1]:
            mass += proba[i, j]
        scores[i] = mass + lambda_reg * max(0, rank - 1 - k_reg) if rank > 1 else 0.0
    return scores


def _probabilities(rng, n, k, tied):
    proba = rng.dirichlet(np.full(k, 0.5), size=n)
    if tied:
        proba = np.round(proba * 8) + 1.0
        proba /= proba.sum(axis=1, keepdims=True)
    return proba


@pytest.mark.parametrize("score,k_reg,lambda_reg", [("aps", 1, 0.1), ("raps", 1, 0.1),
                                                    ("raps", 0, 0.03), ("raps", 3, 0.2)])
@pytest.mark.parametrize("mode", ["marginal", "class"])
@pytest.mark.parametrize("tied", [False, True])
def test_deterministic_sets_equal_the_reference_rule(score, k_reg, lambda_reg, mode, tied):
    rng = np.random.default_rng(hash((score, k_reg, mode, tied)) % 2**32)
    k = 7
    cal = _probabilities(rng, 150, k, tied)
    y = np.array([rng.choice(k, p=row) for row in cal])
    test = _probabilities(rng, 200, k, tied)
    conformalizer = ClassificationConformalizer(
        score, mode, randomized=False, k_reg=k_reg, lambda_reg=lambda_reg
    ).fit(cal, y, k, 0.8)
    kr, lr = (k_reg, lambda_reg) if score == "raps" else (0, 0.0)
    np.testing.assert_allclose(
        conformalizer.conformity_scores_, _reference_true_scores(cal, y, kr, lr), atol=1e-12
    )
    thresholds = conformalizer.thresholds_
    sets = conformalizer.predict_set(test)
    np.testing.assert_array_equal(sets, _reference_sets(test, thresholds, kr, lr))
    assert sets.sum(axis=1).min() >= 1
    # a superset of the u = 1 sets {s(x, y) <= q_y}
    u1 = all_label_scores(test, score, None, kr, lr) <= thresholds[np.newaxis, :]
    assert not (u1 & ~sets).any()
    # every calibration label is in its own set exactly when its score is at most its threshold
    own = conformalizer.predict_set(cal)[np.arange(len(y)), y]
    np.testing.assert_array_equal(own, conformalizer.conformity_scores_ <= thresholds[y])


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_deterministic_sets_are_never_empty_even_at_low_levels(score):
    rng = np.random.default_rng(3)
    cal = rng.dirichlet(np.ones(10), size=100)
    y = rng.integers(0, 10, 100)
    conformalizer = ClassificationConformalizer(score, randomized=False).fit(cal, y, 10, 0.05)
    sets = conformalizer.predict_set(rng.dirichlet(np.ones(10), size=500))
    assert sets.sum(axis=1).min() == 1


def _coverage(score, mode, n_repeats, seed, level=0.9, n_cal=300, n_test=300, k=6):
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_repeats):
        proba = rng.dirichlet(np.full(k, 0.7), size=n_cal + n_test)
        # labels drawn from a sharpened model: probabilities are informative but miscalibrated
        sharp = proba**2 / (proba**2).sum(axis=1, keepdims=True)
        y = (sharp.cumsum(axis=1) < rng.uniform(size=(len(proba), 1))).sum(axis=1)
        y = np.minimum(y, k - 1)
        conformalizer = ClassificationConformalizer(score, mode, randomized=False).fit(
            proba[:n_cal], y[:n_cal], k, level
        )
        sets = conformalizer.predict_set(proba[n_cal:])
        hits += sets[np.arange(n_test), y[n_cal:]].sum()
    return hits / (n_repeats * n_test), n_repeats * n_test


def _assert_at_least(coverage, total, level):
    # conservative lower bound: coverage per split is at least the level; allow binomial noise
    # of the pooled test points plus the spread of the calibration draw
    assert coverage >= binom.ppf(0.001, total, level) / total - 0.01, coverage


@pytest.mark.parametrize("score", ["aps", "raps"])
@pytest.mark.parametrize("mode", ["marginal", "class"])
def test_deterministic_coverage_at_least_the_level(score, mode):
    coverage, total = _coverage(score, mode, n_repeats=20, seed=11)
    _assert_at_least(coverage, total, 0.9)


@pytest.mark.slow
@pytest.mark.parametrize("score", ["aps", "raps"])
@pytest.mark.parametrize("mode", ["marginal", "class", "cluster"])
def test_deterministic_coverage_at_least_the_level_many_splits(score, mode):
    coverage, total = _coverage(score, mode, n_repeats=300, seed=12)
    assert coverage >= binom.ppf(0.001, total, 0.9) / total, coverage


def _digits_probabilities(seed):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.5,
                                                        random_state=seed)
    X_fit, X_cal, y_fit, y_cal = train_test_split(X_train, y_train, test_size=0.3,
                                                  random_state=seed)
    model = LogisticRegression(max_iter=2000).fit(X_fit, y_fit)
    return model.predict_proba(X_cal), y_cal, model.predict_proba(X_test), y_test


@pytest.mark.parametrize("level", [0.9, 0.97])
def test_digits_deterministic_aps_beats_the_old_u1_rule(level):
    sizes, empties, old_sizes, old_empties, coverages = [], [], [], [], []
    for seed in range(3):
        cal, y_cal, test, y_test = _digits_probabilities(seed)
        conformalizer = ClassificationConformalizer("aps", randomized=False).fit(
            cal, y_cal, 10, level
        )
        sets = conformalizer.predict_set(test)
        sizes.append(sets.sum(axis=1).mean())
        empties.append((sets.sum(axis=1) == 0).mean())
        coverages.append(sets[np.arange(len(y_test)), y_test].mean())
        # the earlier rule: u = 1 scores, sets {s(x, y) <= q}
        scores = true_label_scores(cal, y_cal, "aps", None)
        n = len(scores)
        q = np.sort(scores)[int(np.ceil(level * (n + 1))) - 1]
        old = all_label_scores(test, "aps", None) <= q
        old_sizes.append(old.sum(axis=1).mean())
        old_empties.append((old.sum(axis=1) == 0).mean())
    assert np.mean(empties) == 0.0 < np.mean(old_empties)
    assert np.mean(sizes) < np.mean(old_sizes)
    assert np.mean(coverages) >= level - 0.02


def test_raps_defaults_give_smaller_sets_than_aps_on_digits():
    defaults = SplitConformalClassifier().get_params()
    assert (defaults["k_reg"], defaults["lambda_reg"]) == (
        ClassificationConformalizer().k_reg,
        ClassificationConformalizer().lambda_reg,
    )
    sizes = {"aps": [], "raps": []}
    coverage = {"aps": [], "raps": []}
    for seed in range(5):
        cal, y_cal, test, y_test = _digits_probabilities(seed)
        for score in sizes:
            conformalizer = ClassificationConformalizer(
                score, k_reg=defaults["k_reg"], lambda_reg=defaults["lambda_reg"]
            ).fit(cal, y_cal, 10, 0.9, random_state=seed)
            sets = conformalizer.predict_set(test)
            sizes[score].append(sets.sum(axis=1).mean())
            coverage[score].append(sets[np.arange(len(y_test)), y_test].mean())
    assert np.mean(sizes["raps"]) < np.mean(sizes["aps"]) - 0.05
    assert np.mean(coverage["raps"]) >= 0.88
