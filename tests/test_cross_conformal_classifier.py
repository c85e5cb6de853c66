"""CrossConformalClassifier: the CV+ set rule against its definition, coverage, folds, errors."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold, LeaveOneOut

from sklearn_conformal import CrossConformalClassifier, SplitConformalClassifier
from sklearn_conformal.conformity_scores import APSScore, RAPSScore

LEVEL = 0.9


def data(n, seed=0, n_classes=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(n_classes, size=n)
    centres = np.random.default_rng(123).normal(scale=1.5, size=(n_classes, 3))
    return centres[y] + rng.normal(size=(n, 3)), y


@pytest.mark.parametrize("score", ["lac", "aps", "raps", "top_k", "margin"])
@pytest.mark.parametrize("cv", [KFold(5, shuffle=True, random_state=0), LeaveOneOut()])
def test_sets_follow_the_cv_plus_rule(score, cv):
    X, y = data(40 if isinstance(cv, LeaveOneOut) else 80)
    X_test = data(30, seed=1)[0]
    clf = CrossConformalClassifier(LogisticRegression(), conformity_score=score, cv=cv)
    clf.fit(X, y)
    n = len(y)
    scorer = clf.conformity_score_
    below = np.zeros((len(X_test), 4), dtype=int)
    residuals = np.empty(n)
    for train, test in cv.split(X):
        model = LogisticRegression().fit(X[train], y[train])
        residuals[test] = scorer.calibration_scores(model.predict_proba(X[test]), y[test])
        test_scores = scorer.label_scores(model.predict_proba(X_test))
        below += (residuals[test][None, None, :] < test_scores[:, :, None]).sum(axis=2)
    expected = below < (1 - (1 - LEVEL)) * (n + 1) - 1e-9
    np.testing.assert_allclose(clf.conformity_scores_, residuals)
    np.testing.assert_array_equal(clf.predict_set(X_test), expected)


def test_coverage_over_repeated_draws():
    n_fits, n, n_test = 10, 150, 500
    hits = []
    for seed in range(n_fits):
        X, y = data(n + n_test, seed=100 + seed)
        clf = CrossConformalClassifier(random_state=seed).fit(X[:n], y[:n])
        sets = clf.predict_set(X[n:])
        hits.append(sets[np.arange(n_test), y[n:]].mean())
    se = np.sqrt((LEVEL * (1 - LEVEL) / (n + 2) + LEVEL * (1 - LEVEL) / n_test) / n_fits)
    assert np.mean(hits) >= 1 - 2 * (1 - LEVEL)
    assert np.mean(hits) >= LEVEL - 4 * se, np.mean(hits)


def test_sets_are_not_larger_than_split_sets_on_average_at_n_200():
    sizes = []
    for seed in range(8):
        X, y = data(700, seed=seed)
        sizes.append([
            est.fit(X[:200], y[:200]).predict_set(X[200:]).sum(axis=1).mean()
            for est in (
                CrossConformalClassifier(cv=10, random_state=seed),
                SplitConformalClassifier(random_state=seed),
            )
        ])
    sizes = np.asarray(sizes)
    assert sizes[:, 0].mean() <= sizes[:, 1].mean() + 0.05, sizes.mean(axis=0)


def test_a_class_missing_from_a_fold_gets_probability_zero_from_that_fold():
    X, y = data(60)
    y = y.copy()
    y[:3] = 7  # a rare class: some folds train without it
    clf = CrossConformalClassifier(cv=KFold(3, shuffle=True, random_state=0)).fit(X, y)
    assert list(clf.classes_) == [0, 1, 2, 3, 7]
    proba = clf.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.predict_set(X[:5]).shape == (5, 5)


def test_groups_and_n_jobs():
    X, y = data(120)
    groups = np.repeat(np.arange(12), 10)
    results = []
    for n_jobs in (1, 2):
        clf = CrossConformalClassifier(cv=GroupKFold(4), n_jobs=n_jobs)
        clf.fit(X, y, groups=groups)
        for train, test in clf.folds_:
            assert not set(groups[train]) & set(groups[test])
        results.append(clf.predict_set(X[:20]))
    np.testing.assert_array_equal(results[0], results[1])
    seeded = [
        CrossConformalClassifier(n_jobs=n_jobs, random_state=3).fit(X, y).predict_set(X[:20])
        for n_jobs in (1, 2)
    ]
    np.testing.assert_array_equal(seeded[0], seeded[1])


def test_several_levels_and_pandas_output():
    pd = pytest.importorskip("pandas")
    X, y = data(100)
    clf = CrossConformalClassifier(random_state=0).fit(X, y)
    both = clf.predict_set(X[:5], confidence_level=[0.8, 0.95])
    np.testing.assert_array_equal(both[:, :, 1], clf.predict_set(X[:5], 0.95))
    assert np.all(both[:, :, 0] <= both[:, :, 1])
    frame = clf.set_output(predict="pandas").predict_set(X[:5])
    assert list(frame.columns) == list(clf.classes_)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"conformity_score": "saps"}, "conformity_score"),
        ({"conformity_score": APSScore(randomized=True)}, "conformity_score"),
        ({"conformity_score": RAPSScore(k_reg="auto", randomized=False)}, "conformity_score"),
        ({"mode": "cluster"}, "mode"),
        ({"cv": 1}, "cv"),
        ({"confidence_level": 0.0}, "confidence_level"),
    ],
)
def test_bad_parameters_name_the_parameter(params, match):
    X, y = data(40)
    with pytest.raises(ValueError, match=match):
        CrossConformalClassifier(**params).fit(X, y)


@pytest.mark.parametrize("cv", [KFold(5, shuffle=True, random_state=0), LeaveOneOut()])
def test_class_mode_follows_the_rule_within_each_class(cv):
    X, y = data(60 if isinstance(cv, LeaveOneOut) else 120)
    X_test = data(30, seed=1)[0]
    clf = CrossConformalClassifier(LogisticRegression(), mode="class", cv=cv).fit(X, y)
    below = np.zeros((len(X_test), 4), dtype=int)
    residuals = np.empty(len(y))
    for train, test in cv.split(X):
        model = LogisticRegression().fit(X[train], y[train])
        residuals[test] = 1 - model.predict_proba(X[test])[np.arange(len(test)), y[test]]
        test_scores = 1 - model.predict_proba(X_test)
        for c in range(4):
            r = residuals[test][y[test] == c]
            below[:, c] += (r[None, :] < test_scores[:, [c]]).sum(axis=1)
    n_c = np.bincount(y, minlength=4)
    expected = below < LEVEL * (n_c + 1) - 1e-9
    np.testing.assert_array_equal(clf.predict_set(X_test), expected)


def test_class_mode_covers_every_class():
    """Per-class coverage over repeated draws >= 1 - 2 alpha, and ~ level on average."""
    n_fits, n, n_test = 10, 200, 600
    hits, labels = [], []
    for seed in range(n_fits):
        X, y = data(n + n_test, seed=200 + seed)
        clf = CrossConformalClassifier(mode="class", random_state=seed).fit(X[:n], y[:n])
        sets = clf.predict_set(X[n:])
        hits.append(sets[np.arange(n_test), y[n:]])
        labels.append(y[n:])
    hits, labels = np.concatenate(hits), np.concatenate(labels)
    per_class = np.array([hits[labels == c].mean() for c in range(4)])
    n_class = n / 4
    se = np.sqrt(LEVEL * (1 - LEVEL) * (1 / (n_class + 2) + 4 / n_test) / n_fits)
    assert np.all(per_class >= 1 - 2 * (1 - LEVEL)), per_class
    assert np.all(per_class >= LEVEL - 4.5 * se), per_class


def test_a_fold_model_with_malformed_probabilities_is_a_clear_error():
    """The fold models' probabilities are checked like the split classifier's model."""

    class ExtraColumn(LogisticRegression):
        def predict_proba(self, X):
            proba = super().predict_proba(X)
            return np.column_stack([proba, np.zeros(len(proba))])

    X, y = data(60)
    with pytest.raises(ValueError, match="predict_proba returned shape"):
        CrossConformalClassifier(ExtraColumn(), cv=3).fit(X, y)
