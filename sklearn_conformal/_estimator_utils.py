"""Helpers shared by the estimators: the calibration split and pre-trained models."""

import numbers

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import _safe_indexing, get_tags

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


def wrapped_input_tag(models, name):
    """Whether every model in ``models`` sets the input tag ``name`` (e.g. ``"allow_nan"``).

    Never raises: a meta-estimator's tags are read by scikit-learn's checks and ``clone`` on
    objects that are not yet validated, so a model whose tags cannot be read (an odd user
    object, a broken ``__sklearn_tags__``) counts as not setting the tag.
    """
    for model in models:
        try:
            if not bool(getattr(get_tags(model).input_tags, name)):
                return False
        except Exception:  # noqa: BLE001 - any failure reading foreign tags means "no"
            return False
    return True


def wrapped_allows_nan(models):
    """Whether every wrapped model accepts NaN in ``X`` (its ``allow_nan`` input tag).

    Meta-estimators validate ``X`` with ``ensure_all_finite="allow-nan"`` when this holds, so
    that NaN-capable models (``HistGradientBoostingRegressor``) see their missing values; never
    raises (see :func:`wrapped_input_tag`).
    """
    return wrapped_input_tag(models, "allow_nan")
