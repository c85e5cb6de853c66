"""Guarantees of the split conformal classifier that hold however it is served.

* Fork and thread safety of the compiled kernels.
* Randomised APS/RAPS sets that belong to a row's content, not to its position in a batch.
* One floating-point summation order for calibration scores and prediction sets (ties).
* Probability columns attached to the right labels whatever the model's ``classes_`` order.
* Cluster-conditional calibration that says when it falls back to marginal calibration.
* Clear errors on bad labels, targets and levels; NaN left to NaN-capable models.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.frozen import FrozenEstimator

from sklearn_conformal import SplitConformalClassifier
from sklearn_conformal._core import (
    ClassificationConformalizer,
    all_label_scores,
    prediction_sets,
    true_label_scores,
)

LEVEL = 0.9
# Monte-Carlo bounds are checked to this many standard errors (false alarm < 1e-5)
Z = 4.5


class ProbaIsX(ClassifierMixin, BaseEstimator):
    """A pre-trained model whose probabilities are its features, columns in ``classes``' order.

    Labels drawn from those probabilities make it perfectly calibrated, so coverage targets are
    exact, and ``classes`` may be given in any order (as a frozen third-party model's may be).
    """

    def __init__(self, classes=(0, 1, 2)):
        self.classes = classes

    def fit(self, X=None, y=None):
        self.classes_ = np.asarray(self.classes)
        return self

    def predict_proba(self, X):
        return np.asarray(X, dtype=np.float64)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _calibrated_sample(rng, n, n_classes, concentration=0.7):
    """Probabilities from a Dirichlet and label indices drawn from them."""
    proba = rng.dirichlet(np.full(n_classes, concentration), size=n)
    labels = (rng.uniform(size=(n, 1)) > np.cumsum(proba, axis=1)).sum(axis=1)
    return proba, np.minimum(labels, n_classes - 1)


def _coverage_standard_error(n_cal, n_test, level, n_repeats):
    """Standard error of a coverage averaged over repeats: the Beta spread plus test noise."""
    return np.sqrt((level * (1 - level) / (n_cal + 2) + level * (1 - level) / n_test) / n_repeats)


# --------------------------------------------------------------------------- fork safety
_FORK_SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from sklearn.datasets import make_classification

    from sklearn_conformal import SplitConformalClassifier

    X, y = make_classification(n_samples=600, n_classes=4, n_informative=6, random_state=0)
    clf = SplitConformalClassifier(conformity_score="aps", random_state=0).fit(X, y)
    parent = clf.predict_set(X)
    chunks = np.array_split(np.arange(len(X)), 6)

    def sets_of(rows):
        return clf.predict_set(X[rows])

    with multiprocessing.get_context("fork").Pool(2) as pool:
        forked = np.vstack(pool.map(sets_of, chunks))
    with ThreadPoolExecutor(4) as executor:
        threaded = np.vstack(list(executor.map(sets_of, chunks)))
    assert np.array_equal(forked, parent), "forked children disagree with the parent"
    assert np.array_equal(threaded, parent), "threads disagree with the parent"
    print("OK")
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX only")
def test_predict_set_in_forked_children_and_threads_after_the_parent():
    try:
        result = subprocess.run(
            [sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("a forked child calling predict_set hung (parallel region after fork)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("OK")


# ------------------------------------------------------------- position-independent sets
def _fitted_on_calibrated_model(seed, score="aps", n_classes=5, n_cal=500, **params):
    rng = np.random.default_rng(seed)
    proba, y = _calibrated_sample(rng, n_cal, n_classes)
    clf = SplitConformalClassifier(
        FrozenEstimator(ProbaIsX(classes=tuple(range(n_classes))).fit()),
        conformity_score=score,
        random_state=seed,
        **params,
    )
    return clf.fit(proba, y), rng


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_a_rows_set_does_not_depend_on_how_rows_are_batched(score):
    clf, rng = _fitted_on_calibrated_model(0, score)
    X_test, _ = _calibrated_sample(rng, 300, 5)
    batch = clf.predict_set(X_test)
    one_at_a_time = np.vstack([clf.predict_set(X_test[i : i + 1]) for i in range(len(X_test))])
    order = rng.permutation(len(X_test))
    shuffled = np.empty_like(batch)
    shuffled[order] = clf.predict_set(X_test[order])
    chunks = np.vstack([clf.predict_set(part) for part in np.array_split(X_test, 7)])
    np.testing.assert_array_equal(one_at_a_time, batch)
    np.testing.assert_array_equal(shuffled, batch)
    np.testing.assert_array_equal(chunks, batch)


def test_keyed_sets_equal_bit_for_bit_across_equal_seeds_and_differ_across_seeds():
    X_test, _ = _calibrated_sample(np.random.default_rng(9), 400, 5)
    first = _fitted_on_calibrated_model(3)[0].predict_set(X_test)
    again = _fitted_on_calibrated_model(3)[0].predict_set(X_test)
    np.testing.assert_array_equal(first, again)
    clf, _ = _fitted_on_calibrated_model(3)
    proba_cal, y_cal = _calibrated_sample(np.random.default_rng(3), 500, 5)
    other_seed = clf.set_params(random_state=4).fit(proba_cal, y_cal)
    assert not np.array_equal(other_seed.predict_set(X_test), first)


def test_core_predict_set_keys_rows_by_their_probabilities_without_keys():
    rng = np.random.default_rng(1)
    proba, y = _calibrated_sample(rng, 300, 4)
    conformalizer = ClassificationConformalizer("aps").fit(proba, y, 4, LEVEL, random_state=0)
    test, _ = _calibrated_sample(rng, 200, 4)
    batch = conformalizer.predict_set(test)
    reversed_rows = conformalizer.predict_set(test[::-1])[::-1]
    np.testing.assert_array_equal(reversed_rows, batch)
    with pytest.raises(ValueError, match="one key per row"):
        conformalizer.predict_set(test, keys=np.arange(3, dtype=np.uint64))


def _one_row_coverages(n_fits, n_test, score="aps"):
    """Coverage of each fit when its test points are served one row per call."""
    coverages = []
    for seed in range(n_fits):
        clf, rng = _fitted_on_calibrated_model(seed, score, n_cal=500)
        X_test, y_test = _calibrated_sample(rng, n_test, 5)
        sets = np.vstack([clf.predict_set(X_test[i : i + 1]) for i in range(n_test)])
        coverages.append(sets[np.arange(n_test), y_test].mean())
    return np.array(coverages)


def _assert_each_fit_covers(coverages, n_cal, n_test):
    # randomized APS: coverage given the calibration set is Beta distributed around
    # level + O(1/n); each fit's empirical coverage adds binomial noise of the test points
    sd = _coverage_standard_error(n_cal, n_test, LEVEL, 1)
    assert np.all(np.abs(coverages - LEVEL) <= Z * sd + 1 / (n_cal + 1)), coverages
    se_mean = sd / np.sqrt(len(coverages))
    assert LEVEL - Z * se_mean <= coverages.mean() <= LEVEL + 1 / (n_cal + 1) + Z * se_mean


def test_one_row_at_a_time_coverage_quick():
    _assert_each_fit_covers(_one_row_coverages(n_fits=4, n_test=300), 500, 300)


@pytest.mark.slow
@pytest.mark.parametrize("score", ["aps", "raps"])
def test_one_row_at_a_time_coverage_over_twenty_fits(score):
    _assert_each_fit_covers(_one_row_coverages(n_fits=20, n_test=1000, score=score), 500, 1000)


# ------------------------------------------------------------- ties and summation order
# label counts of a training set: DummyClassifier(strategy="prior") predicts counts / 246 for
# every row: the label-order and rank-order sums of label 4 (rank 5, cumulative mass 0.939)
# differ in the last bit, and at level 0.9 the threshold is that label's score
PRIOR_COUNTS = np.array([46, 48, 53, 15, 35, 49])


def _tied_probability_rows():
    """Constant-probability models: priors, uniform, and many tied values of awkward sums."""
    return {
        "prior": PRIOR_COUNTS / PRIOR_COUNTS.sum(),
        "uniform": np.full(6, 1 / 6),
        "many_ties": np.array([0.1, 0.2, 0.1, 0.2, 0.1, 0.3]),
        "nine_labels": np.array([0.05, 0.2, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05]),
    }


@pytest.mark.parametrize("score", ["aps", "raps"])
@pytest.mark.parametrize("randomized", [False, True])
@pytest.mark.parametrize("row", list(_tied_probability_rows()))
def test_calibration_scores_equal_the_set_kernels_scores_exactly(score, randomized, row):
    p = _tied_probability_rows()[row]
    k = p.size
    proba = np.tile(p, (k, 1))
    labels = np.arange(k)
    u = np.full(k, 0.37) if randomized else np.ones(k)
    scores = all_label_scores(proba, score, u, 2, 0.05)
    np.testing.assert_array_equal(true_label_scores(proba, labels, score, u, 2, 0.05), scores[labels, labels])
    # at a threshold equal to a label's own score the label is in its set
    for threshold in np.unique(scores):
        sets = prediction_sets(proba, np.full(k, threshold), score, u, 2, 0.05)
        np.testing.assert_array_equal(sets, scores <= threshold)


def _tied_coverage(p, score, mode, randomized, n_repeats=150, n_cal=60, n_test=100, seed=0):
    rng = np.random.default_rng(seed)
    k = p.size
    hits = []
    for _ in range(n_repeats):
        y_cal = rng.choice(k, size=n_cal, p=p)
        y_test = rng.choice(k, size=n_test, p=p)
        conformalizer = ClassificationConformalizer(score, mode, randomized=randomized).fit(
            np.tile(p, (n_cal, 1)), y_cal, k, LEVEL, random_state=int(rng.integers(2**31 - 1))
        )
        # distinct keys: every test row draws its own uniform although all rows are equal
        keys = rng.integers(0, 2**63, size=n_test).astype(np.uint64)
        sets = conformalizer.predict_set(np.tile(p, (n_test, 1)), keys=keys)
        hits.append(sets[np.arange(n_test), y_test].mean())
    return float(np.mean(hits)), _coverage_standard_error(n_cal, n_test, LEVEL, n_repeats)


@pytest.mark.filterwarnings("ignore::sklearn_conformal.exceptions.SmallCalibrationWarning")
@pytest.mark.parametrize("score", ["lac", "aps", "raps"])
@pytest.mark.parametrize("randomized", [False, True])
@pytest.mark.parametrize("mode", ["marginal", "class"])
@pytest.mark.parametrize("row", list(_tied_probability_rows()))
def test_constant_probability_models_cover(score, randomized, mode, row):
    coverage, se = _tied_coverage(_tied_probability_rows()[row], score, mode, randomized)
    assert coverage >= LEVEL - Z * se


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_dummy_prior_classifier_with_deterministic_aps_covers(score):
    dummy = DummyClassifier(strategy="prior").fit(
        np.zeros((PRIOR_COUNTS.sum(), 1)), np.repeat(np.arange(6), PRIOR_COUNTS)
    )
    prior = dummy.class_prior_
    rng = np.random.default_rng(0)
    n_cal, n_test, coverages = 100, 200, []
    for seed in range(40):
        y = rng.choice(6, size=n_cal + n_test, p=prior)
        clf = SplitConformalClassifier(
            FrozenEstimator(dummy), conformity_score=score, randomized=False, random_state=seed
        ).fit(np.zeros((n_cal, 1)), y[:n_cal])
        sets = clf.predict_set(np.zeros((n_test, 1)))
        coverages.append(sets[np.arange(n_test), y[n_cal:]].mean())
    se = _coverage_standard_error(n_cal, n_test, LEVEL, len(coverages))
    assert np.mean(coverages) >= LEVEL - Z * se
