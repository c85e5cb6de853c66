"""Set metrics take labels with ``classes=`` (the columns' labels), as well as column indices."""

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from sklearn_conformal import SplitConformalClassifier
from sklearn_conformal.metrics import (
    class_coverage_gap,
    class_coverages,
    coverage,
    size_stratified_coverage,
)


@pytest.fixture(scope="module")
def fitted_on_strings():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    order = np.random.default_rng(0).permutation(len(y))
    X, names = X[order], names[order]
    clf = SplitConformalClassifier(LogisticRegression(max_iter=500), random_state=0)
    clf.fit(X[:100], names[:100])
    return clf, clf.predict_set(X[100:]), names[100:]


def test_labels_with_classes_equal_column_indices(fitted_on_strings):
    clf, sets, labels = fitted_on_strings
    columns = np.searchsorted(clf.classes_, labels)
    assert coverage(labels, sets, classes=clf.classes_) == coverage(columns, sets)
    assert size_stratified_coverage(labels, sets, classes=clf.classes_) == (
        size_stratified_coverage(columns, sets)
    )
    assert class_coverage_gap(labels, sets, 0.9, classes=clf.classes_) == (
        class_coverage_gap(columns, sets, 0.9)
    )
    present, coverages = class_coverages(labels, sets, classes=clf.classes_)
    present_columns, coverages_columns = class_coverages(columns, sets)
    np.testing.assert_array_equal(present, clf.classes_[present_columns])
    np.testing.assert_array_equal(coverages, coverages_columns)


def test_classes_in_any_order_follow_the_columns():
    sets = np.array([[True, False, False], [False, True, False], [False, False, True]])
    # columns hold the labels 20, 0, 10: each row's set is exactly its own label
    assert coverage([20, 0, 10], sets, classes=[20, 0, 10]) == 1.0
    assert coverage([0, 10, 20], sets, classes=[20, 0, 10]) == 0.0


def test_bad_labels_and_classes_are_named():
    sets = np.ones((2, 2), dtype=bool)
    with pytest.raises(ValueError, match=r"not in classes: \['c'\]"):
        coverage(["a", "c"], sets, classes=["a", "b"])
    with pytest.raises(ValueError, match="columns of the prediction sets"):
        coverage(["a", "b"], sets, classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="must not repeat"):
        coverage(["a", "b"], sets, classes=["a", "a"])
    with pytest.raises(ValueError, match="not intervals"):
        coverage([0.5, 1.5], np.array([[0.0, 1.0], [1.0, 2.0]]), classes=["a", "b"])
