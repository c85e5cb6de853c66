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
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import DataConversionWarning
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags

from sklearn_conformal import SplitConformalClassifier
from sklearn_conformal._core import (
    ClassificationConformalizer,
    all_label_scores,
    conformal_quantile,
    prediction_sets,
    true_label_scores,
)
from sklearn_conformal._core._row_keys import row_keys
from sklearn_conformal.exceptions import ClusteringFallbackWarning, DegenerateDataWarning

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


@pytest.mark.filterwarnings("ignore:X has feature names")
def test_keyed_sets_are_the_same_for_a_dataframe_and_its_array():
    pd = pytest.importorskip("pandas")
    clf, rng = _fitted_on_calibrated_model(2)
    X_test, _ = _calibrated_sample(rng, 200, 5)
    frame = pd.DataFrame(X_test, columns=[f"p{j}" for j in range(5)])
    np.testing.assert_array_equal(clf.predict_set(frame), clf.predict_set(X_test))


def test_core_predict_set_with_an_explicit_seed_is_reproducible_and_position_free():
    rng = np.random.default_rng(3)
    proba, y = _calibrated_sample(rng, 300, 4)
    conformalizer = ClassificationConformalizer("raps").fit(proba, y, 4, LEVEL, random_state=0)
    test, _ = _calibrated_sample(rng, 300, 4)
    seeded = conformalizer.predict_set(test, random_state=11)
    np.testing.assert_array_equal(conformalizer.predict_set(test, random_state=11), seeded)
    np.testing.assert_array_equal(
        conformalizer.predict_set(test[::-1], random_state=11)[::-1], seeded
    )
    assert not np.array_equal(conformalizer.predict_set(test, random_state=12), seeded)


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
    calibration_scores = true_label_scores(proba, labels, score, u, 2, 0.05)
    np.testing.assert_array_equal(calibration_scores, scores[labels, labels])
    # at a threshold equal to a label's own score the label is in its set
    for threshold in np.unique(scores):
        sets = prediction_sets(proba, np.full(k, threshold), score, u, 2, 0.05)
        np.testing.assert_array_equal(sets, scores <= threshold)


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_many_labels_with_ties_use_one_order_in_every_kernel(score):
    # more labels than the insertion-sort limit: the merge-sort path must keep the same order
    rng = np.random.default_rng(7)
    k = 60
    proba = rng.integers(1, 6, size=(40, k)).astype(float)
    proba /= proba.sum(axis=1, keepdims=True)
    u = rng.uniform(size=40)
    scores = all_label_scores(proba, score, u, 3, 0.002)
    for label in (0, 17, 59):
        y = np.full(40, label)
        calibration = true_label_scores(proba, y, score, u, 3, 0.002)
        np.testing.assert_array_equal(calibration, scores[:, label])
    for threshold in np.quantile(scores, [0.1, 0.5, 0.9]):
        sets = prediction_sets(proba, np.full(k, threshold), score, u, 3, 0.002)
        np.testing.assert_array_equal(sets, scores <= threshold)
    # ties are ranked by the smaller label first: along equal probabilities scores increase
    order = np.lexsort((np.arange(k)[None, :].repeat(40, 0), -proba), axis=1)
    ranked = np.take_along_axis(scores, order, axis=1)
    assert np.all(np.diff(ranked, axis=1) >= 0)


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


# ------------------------------------------------------------------ label order of a model
def _unsorted_model_data(model_classes, n, seed=0):
    """Rows whose columns are probabilities of ``model_classes`` and labels drawn from them."""
    proba, column = _calibrated_sample(np.random.default_rng(seed), n, len(model_classes))
    return proba, np.asarray(model_classes)[column]


def _frozen(model_classes):
    return FrozenEstimator(ProbaIsX(classes=tuple(model_classes)).fit())


def test_frozen_model_with_unsorted_classes_keeps_its_columns():
    model_classes = np.array([2, 0, 1])
    X, y = _unsorted_model_data(model_classes, 3000)
    clf = SplitConformalClassifier(_frozen(model_classes), random_state=0).fit(X[:1000], y[:1000])
    X_test, y_test = X[1000:], y[1000:]
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    # the column of label c is the model's column of c
    np.testing.assert_array_equal(clf.predict_proba(X_test), X_test[:, [1, 2, 0]])
    np.testing.assert_array_equal(clf.predict(X_test), model_classes[np.argmax(X_test, axis=1)])
    sets = clf.predict_set(X_test)
    coverage = sets[np.arange(len(y_test)), np.searchsorted(clf.classes_, y_test)].mean()
    se = _coverage_standard_error(1000, len(y_test), LEVEL, 1)
    assert LEVEL - Z * se <= coverage <= LEVEL + 1 / 1001 + Z * se


def test_frozen_model_knowing_an_unsorted_subset_of_the_labels():
    X, y = _unsorted_model_data([2, 0], 600)
    y[:30] = 1  # a label the model never predicts
    with pytest.warns(DegenerateDataWarning, match=r"label\(s\) of y \(\[1\]\) are absent"):
        clf = SplitConformalClassifier(_frozen([2, 0]), random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    expected = np.column_stack([X[:, 1], np.zeros(len(X)), X[:, 0]])
    np.testing.assert_array_equal(clf.predict_proba(X), expected)


def test_frozen_model_whose_labels_are_of_another_kind_than_y():
    X, y = _unsorted_model_data([0, 1, 2], 300)
    with pytest.raises(ValueError, match="classes_"):
        SplitConformalClassifier(_frozen([0, 1, 2])).fit(X, y.astype(str))


# ---------------------------------------------------------------- cluster-mode fallbacks
def _long_tailed_probabilities(n_frequent, n_rare, seed=0):
    """Five frequent classes and one rare class (too rare for Ding et al.'s rule)."""
    rng = np.random.default_rng(seed)
    proba, y = _calibrated_sample(rng, 5 * n_frequent, 6)
    proba_rare = rng.dirichlet(np.ones(6), size=n_rare)
    y = np.concatenate([y[y != 5][: 5 * n_frequent - n_rare], np.full(n_rare, 5)])
    return np.vstack([proba[: len(y) - n_rare], proba_rare]), y


def test_cluster_mode_warns_when_it_falls_back_to_marginal():
    proba, y = _long_tailed_probabilities(300, 12)
    with pytest.warns(ClusteringFallbackWarning, match=r"rarest class has only \d+ calibration"):
        cluster = ClassificationConformalizer("aps", "cluster").fit(
            proba, y, 6, LEVEL, random_state=0
        )
    marginal = ClassificationConformalizer("aps").fit(proba, y, 6, LEVEL, random_state=0)
    assert cluster.clusters_.n_clusters_ == 0
    # the fallback is exactly marginal calibration, on all calibration points
    np.testing.assert_array_equal(cluster.thresholds_, marginal.thresholds_)
    test, _ = _calibrated_sample(np.random.default_rng(5), 200, 6)
    np.testing.assert_array_equal(cluster.predict_set(test), marginal.predict_set(test))


def test_explicit_cluster_parameters_are_passed_and_cluster():
    proba, y = _long_tailed_probabilities(300, 12)
    clf = SplitConformalClassifier(
        _frozen(range(6)), mode="cluster", n_clusters=2, clustering_fraction=0.3, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClusteringFallbackWarning)
        clf.fit(proba, y)
    clusters = clf.conformalizer_.clusters_
    assert clusters.n_clusters_ == 2
    assert clusters.cluster_of_class_[5] == -1  # the rare class stays in the null cluster
    assert 0.25 < (~clusters.calibration_mask_).mean() < 0.35


def test_more_clusters_than_frequent_classes_clamps_with_a_warning():
    proba, y = _long_tailed_probabilities(300, 12)
    with pytest.warns(ClusteringFallbackWarning, match="n_clusters=9 but only 5"):
        conformalizer = ClassificationConformalizer(
            "lac", "cluster", n_clusters=9, clustering_fraction=0.3
        ).fit(proba, y, 6, LEVEL, random_state=0)
    # one cluster per frequent class
    np.testing.assert_array_equal(conformalizer.clusters_.cluster_of_class_, [0, 1, 2, 3, 4, -1])


@pytest.mark.parametrize("params, match", [
    ({"n_clusters": 0}, "n_clusters"),
    ({"n_clusters": 1.5}, "n_clusters"),
    ({"clustering_fraction": 1.0}, "clustering_fraction"),
    ({"clustering_fraction": 0}, "clustering_fraction"),
])
def test_bad_cluster_parameters_name_themselves(params, match):
    proba, y = _long_tailed_probabilities(100, 12)
    with pytest.raises(ValueError, match=match):
        SplitConformalClassifier(_frozen(range(6)), mode="cluster", **params).fit(proba, y)
    with pytest.raises(ValueError, match=match):
        ClassificationConformalizer("lac", "cluster", **params).fit(proba, y, 6, LEVEL)


# ------------------------------------------------------------- labels, targets and levels
@pytest.fixture
def iris():
    return load_iris(return_X_y=True)


@pytest.mark.parametrize("labels", [[1, "a", 2.5], [object(), object(), object()]])
def test_unsortable_object_labels_name_y_and_the_remedy(iris, labels):
    X, y = iris
    y_objects = np.array([labels[v] for v in y], dtype=object)
    with pytest.raises(ValueError, match=r"Unknown label type: y has dtype object.*astype\(str\)"):
        SplitConformalClassifier(random_state=0).fit(X, y_objects)


def test_score_labels_of_another_type_than_fit(iris):
    X, y = iris
    clf = SplitConformalClassifier(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="cannot be compared with classes_"):
        clf.score(X, np.array([str(v) for v in y], dtype=object))


def test_score_with_a_column_vector_warns_and_equals_the_1d_score(iris):
    X, y = iris
    clf = SplitConformalClassifier(random_state=0).fit(X, y)
    with pytest.warns(DataConversionWarning):
        column = clf.score(X, y[:, None])
    assert column == clf.score(X, y)
    with pytest.raises(ValueError, match="1d array"):
        clf.score(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.score(X, y[:10])


@pytest.mark.parametrize("level", [np.array(0.8), np.float32(0.8), np.float64(0.8)])
def test_numpy_scalar_and_zero_d_confidence_levels(iris, level):
    X, y = iris
    reference = SplitConformalClassifier(confidence_level=0.8, random_state=0).fit(X, y)
    clf = SplitConformalClassifier(confidence_level=level, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.predict_set(X), reference.predict_set(X))
    np.testing.assert_array_equal(
        reference.predict_set(X, confidence_level=level),
        reference.predict_set(X, confidence_level=0.8),
    )
    assert clf.score(X, y) == reference.score(X, y)


@pytest.mark.parametrize("bad", [True, np.array(True), np.array([0.8]), np.array(1.2), "0.8"])
def test_bad_confidence_levels_stay_rejected(iris, bad):
    X, y = iris
    with pytest.raises((TypeError, ValueError), match="confidence_level"):
        SplitConformalClassifier(confidence_level=bad).fit(X, y)


# ------------------------------------------------------------------------- missing values
def test_nan_goes_to_a_nan_capable_model(iris):
    X, y = iris
    X = X.copy()
    X[::5, 0] = np.nan
    clf = SplitConformalClassifier(
        HistGradientBoostingClassifier(max_iter=15), conformity_score="aps", random_state=0
    ).fit(X, y)
    assert get_tags(clf).input_tags.allow_nan
    np.testing.assert_array_equal(clf.predict_proba(X), clf.estimator_.predict_proba(X))
    np.testing.assert_array_equal(
        clf.predict_set(X),
        clf.conformalizer_.predict_set(clf.estimator_.predict_proba(X), keys=row_keys(X)),
    )
    assert not get_tags(SplitConformalClassifier()).input_tags.allow_nan
    with pytest.raises(ValueError, match="NaN"):
        SplitConformalClassifier().fit(X, y)


def test_nan_goes_to_a_pipeline_that_imputes_first(iris):
    X, y = iris
    X = X.copy()
    X[::5, 0] = np.nan
    pipeline = make_pipeline(SimpleImputer(), LogisticRegression(max_iter=500))
    for model in (pipeline, FrozenEstimator(clone(pipeline).fit(X, y))):
        clf = SplitConformalClassifier(model, random_state=0).fit(X, y)
        assert get_tags(clf).input_tags.allow_nan
        np.testing.assert_array_equal(clf.predict_proba(X), clf.estimator_.predict_proba(X))
    with pytest.raises(ValueError, match="NaN"):
        SplitConformalClassifier(make_pipeline(StandardScaler(), LogisticRegression())).fit(X, y)


class _BrokenTags(ProbaIsX):
    def __sklearn_tags__(self):
        raise RuntimeError("no tags here")


def test_tags_never_raise():
    tags = get_tags(SplitConformalClassifier(_BrokenTags()))
    assert not tags.input_tags.allow_nan


@pytest.mark.parametrize("u", [1.0, 0.3])
def test_prefix_sets_at_a_threshold_equal_to_a_rank_order_mass(u):
    # the mass of these values summed range by range (0.2, 0.1, then the 0.05s) rounds one ulp
    # above their rank-order sum 0.45, the score of the zero-probability labels
    rows = np.array(
        [[0.2, 0.05, 0.05, 0.1, 0.05, 0.0, 0.0], [0.05, 0.0, 0.2, 0.05, 0.1, 0.05, 0.0]]
    )
    u = np.full(2, u)
    for score, k_reg in (("aps", 0), ("raps", 7)):
        scores = all_label_scores(rows, score, u, k_reg, 0.01)
        for threshold in np.unique(scores):
            sets = prediction_sets(rows, np.full(7, threshold), score, u, k_reg, 0.01)
            np.testing.assert_array_equal(sets, scores <= threshold)


class _NaNForSomeRows(ProbaIsX):
    """A model whose probabilities are NaN where its first feature is negative."""

    def predict_proba(self, X):
        proba = np.asarray(X, dtype=np.float64)[:, 1:].copy()
        proba[np.asarray(X)[:, 0] < 0] = np.nan
        return proba


def test_non_finite_model_probabilities_are_an_error_not_empty_sets():
    proba, y = _calibrated_sample(np.random.default_rng(0), 300, 3)
    X = np.column_stack([np.ones(300), proba])
    model = FrozenEstimator(_NaNForSomeRows().fit())
    clf = SplitConformalClassifier(model, random_state=0).fit(X, y)
    X_test = X.copy()
    X_test[[3, 7], 0] = -1.0
    with pytest.raises(ValueError, match=r"NaN or infinite test probabilities in 2 row\(s\)"):
        clf.predict_set(X_test)
    with pytest.raises(ValueError, match="NaN or infinite calibration probabilities"):
        SplitConformalClassifier(model, random_state=0).fit(X_test, y)


def test_a_label_missing_from_the_training_split_is_reported(iris):
    X, y = iris
    X, y = np.vstack([X, X[:1] + 10.0]), np.append(y, 3)  # label 3 has a single sample
    with pytest.warns(DegenerateDataWarning, match="absent from the training split"):
        clf = SplitConformalClassifier(random_state=1, calibration_size=0.5).fit(X, y)
    assert 3 in clf.classes_


def _assert_explicit_clusters_cover(score, n_repeats, n_cal=300, n_test=200):
    rng = np.random.default_rng(2)
    hits, per_cluster = [], np.zeros((2, 2))
    for _ in range(n_repeats):
        proba_cal, y_cal = _calibrated_sample(rng, n_cal, 4, concentration=1.0)
        proba_test, y_test = _calibrated_sample(rng, n_test, 4, concentration=1.0)
        conformalizer = ClassificationConformalizer(
            score, "cluster", n_clusters=2, clustering_fraction=0.3
        ).fit(proba_cal, y_cal, 4, LEVEL, random_state=int(rng.integers(2**31 - 1)))
        covered = conformalizer.predict_set(proba_test)[np.arange(n_test), y_test]
        hits.append(covered.mean())
        cluster = conformalizer.clusters_.cluster_of_class_[y_test]
        assert np.all(cluster >= 0)  # every class has enough clustering points here
        # cluster ids are arbitrary per fit; each fit's per-cluster coverage is >= level in
        # expectation, so their pooled average is too
        np.add.at(per_cluster, (cluster, 0), covered)
        np.add.at(per_cluster, (cluster, 1), 1)
    # the proper-calibration part has about 0.7 * n_cal points, split between the clusters
    se = _coverage_standard_error(0.7 * n_cal / 2, n_test / 2, LEVEL, n_repeats)
    assert np.mean(hits) >= LEVEL - Z * se
    assert np.all(per_cluster[:, 0] / per_cluster[:, 1] >= LEVEL - Z * se)


def test_explicit_clusters_cover_within_every_cluster_quick():
    _assert_explicit_clusters_cover("aps", n_repeats=30)


@pytest.mark.slow
@pytest.mark.parametrize("score", ["lac", "aps", "raps"])
def test_explicit_clusters_cover_within_every_cluster(score):
    _assert_explicit_clusters_cover(score, n_repeats=200)


def test_auto_rule_with_more_clusters_than_classes_calibrates_each_class():
    # plenty of data: Ding et al.'s rule asks for more clusters than there are classes, which
    # used to skip clustering silently (marginal calibration); each class is now its own cluster
    proba, y = _calibrated_sample(np.random.default_rng(4), 3000, 3, concentration=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClusteringFallbackWarning)
        conformalizer = ClassificationConformalizer("lac", "cluster").fit(
            proba, y, 3, LEVEL, random_state=0
        )
    clusters = conformalizer.clusters_
    np.testing.assert_array_equal(clusters.cluster_of_class_, [0, 1, 2])
    mask = clusters.calibration_mask_
    scores = conformalizer.conformity_scores_[mask]
    expected = [conformal_quantile(scores[y[mask] == label], LEVEL) for label in range(3)]
    np.testing.assert_array_equal(conformalizer.thresholds_, expected)


@pytest.mark.parametrize("y_idx, match", [
    (np.array([0, 1, 3]), r"lie in \[0, 3\)"),
    (np.array([0, -1, 2]), r"lie in \[0, 3\)"),
    (np.array([0, 1]), "one per row"),
    (np.array([0.0, 1.0, 2.0]), "integer column indices"),
])
def test_core_rejects_label_indices_outside_the_probability_columns(y_idx, match):
    proba = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match=match):
        ClassificationConformalizer("aps").fit(proba, y_idx, 3, LEVEL, random_state=0)
