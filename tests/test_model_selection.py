"""Out-of-fold sets and intervals, and the refit rule that keeps only covering configurations."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, ShuffleSplit, StratifiedKFold

from sklearn_conformal import SplitConformalClassifier, SplitConformalRegressor
from sklearn_conformal.metrics import coverage_scorer, neg_mean_set_size_scorer
from sklearn_conformal.model_selection import cross_val_predict_set, smallest_covering


def test_out_of_fold_sets_equal_the_fold_fits():
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    estimator = SplitConformalClassifier(LogisticRegression(max_iter=300), random_state=0)
    cv = KFold(4, shuffle=True, random_state=0)
    sets, classes = cross_val_predict_set(estimator, X, y, cv=cv, n_jobs=2)
    np.testing.assert_array_equal(classes, np.unique(y))
    for train, test in cv.split(X, y):
        fold = SplitConformalClassifier(LogisticRegression(max_iter=300), random_state=0)
        fold.fit(X[train], y[train])
        expected = np.zeros((test.size, classes.size), dtype=bool)
        expected[:, np.searchsorted(classes, fold.classes_)] = fold.predict_set(X[test])
        np.testing.assert_array_equal(sets[test], expected)


def test_a_label_missing_from_a_fold_gets_a_false_column():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)
    y[0] = 2  # one sample of a third label: absent from the training part of its own fold
    sets, classes = cross_val_predict_set(
        SplitConformalClassifier(random_state=0), X, y, cv=KFold(5)
    )
    assert classes.tolist() == [0, 1, 2] and sets.shape == (200, 3)
    # KFold(5) holds rows 0..39 out together: their models never saw the label 2
    assert not sets[:40, 2].any()


def test_out_of_fold_intervals_cover_and_the_cv_must_partition():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 2))
    y = X[:, 0] + rng.normal(size=1000)
    reg = SplitConformalRegressor(LinearRegression(), random_state=0)
    intervals, classes = cross_val_predict_set(reg, X, y, cv=5, confidence_level=0.8)
    assert classes is None and intervals.shape == (1000, 2)
    hit = np.mean((y >= intervals[:, 0]) & (y <= intervals[:, 1]))
    assert abs(hit - 0.8) < 0.05
    with pytest.raises(ValueError, match="exactly once"):
        cross_val_predict_set(reg, X, y, cv=ShuffleSplit(3, random_state=0))


def test_smallest_covering_never_picks_a_configuration_below_the_target():
    cv_results = {
        "mean_test_size": np.array([-1.2, -1.5, -2.0, -1.1]),
        "mean_test_coverage": np.array([0.89, 0.91, 0.95, 0.85]),
    }
    assert smallest_covering(confidence_level=0.9)(cv_results) == 1
    assert smallest_covering(confidence_level=0.9, tolerance=0.02)(cv_results) == 0
    with pytest.raises(ValueError, match="best 0.9500"):
        smallest_covering(confidence_level=0.96)(cv_results)
    with pytest.raises(ValueError, match="tolerance"):
        smallest_covering(confidence_level=0.9, tolerance=-0.1)


def test_smallest_covering_in_grid_search():
    X, y = load_digits(return_X_y=True)
    search = GridSearchCV(
        SplitConformalClassifier(LogisticRegression(max_iter=300), random_state=0),
        {"conformity_score": ["lac", "aps", "raps"]},
        scoring={"size": neg_mean_set_size_scorer, "coverage": coverage_scorer},
        # 180 calibration points per fit: fold coverages scatter by about 0.02
        refit=smallest_covering(confidence_level=0.9, tolerance=0.03),
        # shuffled: the digits are ordered by writer, and unshuffled folds are not exchangeable
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X[:900], y[:900])
    best = search.best_index_
    coverages = search.cv_results_["mean_test_coverage"]
    sizes = search.cv_results_["mean_test_size"]
    assert coverages[best] >= 0.87
    assert sizes[best] == max(s for s, c in zip(sizes, coverages) if c >= 0.87)
