"""Expected calibration error against a direct loop over bins."""

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from sklearn_conformal.metrics import expected_calibration_error


def _loop_ece(y, proba, n_bins, strategy):
    confidence = proba.max(axis=1)
    hits = proba.argmax(axis=1) == y
    n = len(y)
    if strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
        members = [
            [i for i in range(n) if (edges[b] < confidence[i] <= edges[b + 1])
             or (b == 0 and confidence[i] == 0)]
            for b in range(n_bins)
        ]
    else:
        order = sorted(range(n), key=lambda i: (confidence[i], i))
        members = [[order[i] for i in range(n) if i * n_bins // n == b] for b in range(n_bins)]
    total = 0.0
    for idx in members:
        if idx:
            total += len(idx) / n * abs(np.mean(hits[idx]) - np.mean(confidence[idx]))
    return total


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("seed", range(5))
def test_ece_equals_the_loop_over_bins(strategy, seed):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(4) * 0.5, size=300)
    proba[:20] = np.round(proba[:20], 1)  # confidences on bin edges
    proba[:20] /= proba[:20].sum(axis=1, keepdims=True)
    y = rng.integers(0, 4, size=300)
    got = expected_calibration_error(y, proba, n_bins=15, strategy=strategy)
    assert got == pytest.approx(_loop_ece(y, proba, 15, strategy), abs=1e-12)


def test_ece_of_perfect_and_worst_models():
    rng = np.random.default_rng(0)
    # labels drawn from the predicted probabilities of the top label: calibrated confidence
    confidence = rng.uniform(0.5, 1.0, size=200_000)
    proba = np.column_stack([confidence, 1 - confidence])
    y = (rng.uniform(size=confidence.size) > confidence).astype(int)
    assert expected_calibration_error(y, proba) < 0.005
    # always sure and always wrong
    assert expected_calibration_error(np.ones(10, int), np.tile([1.0, 0.0], (10, 1))) == 1.0


def test_labels_with_classes_and_bad_input():
    proba = np.array([[0.8, 0.2], [0.3, 0.7]])
    assert expected_calibration_error(["a", "b"], proba, classes=["a", "b"]) == (
        expected_calibration_error([0, 1], proba)
    )
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0, 1], proba, n_bins=0)
    with pytest.raises(ValueError, match="strategy"):
        expected_calibration_error([0, 1], proba, strategy="adaptive")
    with pytest.raises(ValueError, match="y_proba"):
        expected_calibration_error([0, 1], np.array([[np.nan, 1.0], [0.5, 0.5]]))
    # top-k accuracy is scikit-learn's top_k_accuracy_score, on the same probabilities
    proba3 = np.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
    assert top_k_accuracy_score([1, 1], proba3, k=2, labels=[0, 1, 2]) == 1.0
