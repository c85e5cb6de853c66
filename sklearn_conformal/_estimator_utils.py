"""Helpers shared by the estimators: the calibration split and pre-trained models."""

import numbers

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import _safe_indexing

from ._core import check_confidence_level


# sparse formats handed to the wrapped model (others, e.g. DIA, are converted to CSR)
SPARSE_FORMATS = ("csr", "csc")


def keep_frame(X, X_checked):
    """The validated array, except that DataFrames stay DataFrames (for column transformers)."""
    return X if hasattr(X, "iloc") else X_checked


def is_frozen(estimator):
    """Whether ``estimator`` is a pre-trained model wrapped in ``FrozenEstimator``."""
    return isinstance(estimator, FrozenEstimator)


def split_calibration(X, y, calibration_size, random_state, stratify=False):
    """Split ``(X, y)`` into a training and a calibration part.

    Parameters
    ----------
    X : array-like or DataFrame
        Indexed with :func:`sklearn.utils._safe_indexing`, so DataFrames stay DataFrames.
    y : ndarray of shape (n_samples,)
    calibration_size : float in (0, 1) or int
        Fraction or number of samples used for calibration.
    random_state : int, RandomState or None
    stratify : bool
        Stratify on ``y`` when every class has at least two samples (classifiers), so that
        each class reaches both parts where possible.

    Returns
    -------
    X_train, X_cal, y_train, y_cal
    """
    indices = np.arange(len(y))
    labels = None
    if stratify:
        _, counts = np.unique(y, return_counts=True)
        n_cal = (
            calibration_size
            if isinstance(calibration_size, numbers.Integral)
            else int(np.ceil(calibration_size * len(y)))
        )
        if counts.min() >= 2 and n_cal >= counts.size and len(y) - n_cal >= counts.size:
            labels = y
    train, cal = train_test_split(
        indices, test_size=calibration_size, random_state=random_state, stratify=labels
    )
    return _safe_indexing(X, train), _safe_indexing(X, cal), y[train], y[cal]


def resolve_confidence_level(estimator, confidence_level):
    """The per-call level if given, else the estimator's; validated either way."""
    if confidence_level is None:
        return estimator.confidence_level
    return check_confidence_level(confidence_level)
