"""Calibration of predicted probabilities: expected calibration error, fixed and adaptive bins.

What conformal training objectives such as CALS are judged on; the sets' own guarantee does not
depend on it. Top-k accuracy is scikit-learn's ``sklearn.metrics.top_k_accuracy_score``.
"""

import numpy as np

from ._checks import check_labels


def _confidence_and_hits(y_true, y_proba, classes):
    proba = np.asarray(y_proba, dtype=float)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(
            f"y_proba must have shape (n_samples, n_classes) with n_classes >= 2, got {proba.shape}."
        )
    if not np.isfinite(proba).all() or (proba < 0).any():
        raise ValueError("y_proba must hold finite non-negative probabilities.")
    labels = check_labels(y_true, proba.shape[0], proba.shape[1], classes=classes)
    predicted = np.argmax(proba, axis=1)
    return proba[np.arange(proba.shape[0]), predicted], predicted == labels


def expected_calibration_error(y_true, y_proba, *, n_bins=15, strategy="uniform", classes=None):
    """Expected calibration error of the top-label confidence (Guo et al. 2017).

    ``sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|`` over bins ``B_b`` of the
    confidence ``max_k p_k``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Column indices of the true labels (labels with ``classes``).
    y_proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities.
    n_bins : int, default=15
        Number of bins (15 is the usual choice of the conformal-training literature).
    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"``: equal-width bins of ``[0, 1]`` (ECE). ``"quantile"``: bins holding equal
        numbers of samples (adaptive ECE; Nixon et al. 2019), which is less dominated by the
        crowded high-confidence bins.
    classes : array-like of shape (n_classes,), default=None
        Labels of the probability columns (e.g. ``estimator.classes_``): ``y_true`` then holds
        labels.

    Returns
    -------
    ece : float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal.metrics import expected_calibration_error
    >>> proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    >>> float(expected_calibration_error([0, 1, 0, 0], proba))
    0.4
    """
    if not (isinstance(n_bins, (int, np.integer)) and not isinstance(n_bins, bool) and n_bins >= 1):
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}.")
    if strategy not in ("uniform", "quantile"):
        raise ValueError(f'strategy must be "uniform" or "quantile", got {strategy!r}.')
    confidence, hits = _confidence_and_hits(y_true, y_proba, classes)
    n = confidence.shape[0]
    if strategy == "uniform":
        # bins (0, 1/B], (1/B, 2/B], ...: a confidence exactly at an edge joins the lower bin
        bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    else:
        # equal counts: the i-th smallest confidence goes to bin floor(i * B / n)
        bins = np.empty(n, dtype=int)
        bins[np.argsort(confidence, kind="stable")] = np.arange(n) * n_bins // n
    counts = np.bincount(bins, minlength=n_bins)
    accuracy = np.bincount(bins, weights=hits.astype(float), minlength=n_bins)
    mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins)
    return float(np.sum(np.abs(accuracy - mean_confidence)) / n)
