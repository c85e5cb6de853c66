"""The calibrator protocol: from calibration scores to thresholds."""

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
from sklearn.base import BaseEstimator

from .._core._quantile import conformal_quantile


@dataclass
class CalibrationData:
    """What a calibrator sees in ``fit``.

    Attributes
    ----------
    scores : ndarray of shape (n_calibration,) or (n_calibration, n_parts)
        Conformity scores of the calibration rows (several parts for multi-part scores such as
        the asymmetric CQR score).
    confidence_level : float
        The level of the fit (thresholds at other levels are recomputed from ``scores``).
    threshold : callable
        ``threshold(scores, confidence_level)``: the score's finite-sample threshold of a subset
        of ``scores`` (the conformal quantile for one-part scores). Calibrators apply it to
        whichever subsets they condition on.
    X : array-like or DataFrame or None
        The calibration rows as the user passed them (for groups defined on ``X``).
    labels : ndarray of int or None
        Classification: column index of each row's label in ``classes_``. None for regression.
    n_labels : int or None
        Classification: number of classes. None for regression.
    groups : array-like or None
        Group metadata passed to ``fit`` (``groups=``), if any.
    random_state : numpy.random.RandomState
        For calibrators that split or cluster.
    metadata : dict
        Fit metadata a calibrator asked for by name (its ``calibration_metadata``, e.g.
        ``("X_target",)``), taken out of ``fit(X, y, **fit_params)`` and passed unsplit.
    X_train : array-like or DataFrame or None
        The rows the wrapped model was trained on (None when it was frozen): source rows that
        are not calibration rows, e.g. to train a domain classifier.
    score : object or None
        The conformity score object (regression), e.g. for its per-part levels.
    predict_proba : callable or None
        Classification: the fitted model's probabilities of rows as the user passes them, one
        column per label of ``classes_`` (e.g. to estimate label shift on unlabeled rows).
    """

    scores: np.ndarray
    confidence_level: float
    threshold: Callable = conformal_quantile
    X: Any = None
    labels: Optional[np.ndarray] = None
    n_labels: Optional[int] = None
    groups: Any = None
    random_state: Any = None
    metadata: dict = field(default_factory=dict)
    X_train: Any = None
    score: Any = None
    predict_proba: Optional[Callable] = None

    @property
    def is_classification(self):
        return self.labels is not None


class BaseCalibrator(BaseEstimator):
    """Base class of calibrators: which calibration scores set the threshold of which test point.

    A subclass defines :meth:`fit` (store what the thresholds need) and :meth:`thresholds`.
    The estimator calls ``fit`` once with a :class:`CalibrationData`, then ``thresholds`` at
    every prediction (at any confidence level, without refitting).

    Thresholds are returned broadcastable to the prediction's shape:

    * classification: ``(n_samples, n_classes)``, e.g. one per label ``(n_classes,)``, one per
      row ``(n_samples, 1)``, or a scalar;
    * regression: ``(n_samples,)``, or a scalar; multi-part scores add a trailing axis of parts.

    Examples
    --------
    A calibrator written by a user: the marginal threshold, made 10 % more conservative.

    >>> from sklearn_conformal.calibrators import BaseCalibrator
    >>> class Inflated(BaseCalibrator):
    ...     def fit(self, data):
    ...         self.data_ = data
    ...         return self
    ...     def thresholds(self, X, confidence_level, groups=None):
    ...         return 1.1 * self.data_.threshold(self.data_.scores, confidence_level)
    """

    def fit(self, data):
        """Store what the thresholds need.

        Parameters
        ----------
        data : CalibrationData

        Returns
        -------
        self
        """
        raise NotImplementedError(f"{type(self).__name__} must define fit(data).")

    def thresholds(self, X, confidence_level, groups=None):
        """Thresholds of the test rows ``X`` at ``confidence_level`` (see the class docstring).

        Parameters
        ----------
        X : array-like or DataFrame or None
            The test rows as the user passed them; None when thresholds do not depend on rows
            (then per-label or shared thresholds are returned).
        confidence_level : float
        groups : array-like or None
            Group metadata passed to the prediction method, if any.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must define thresholds(X, confidence_level, groups=None)."
        )
