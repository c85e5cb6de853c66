"""Regression conformity scores: the protocol and the built-in scores.

A regression score maps a target and the wrapped models' predictions to a number, and inverts a
threshold back to an interval. The estimator fits the models a score asks for
(:attr:`BaseRegressionScore.predictions`): ``"center"`` (the point model), ``"scale"`` (a
spread model fitted to out-of-fold residuals) or ``"bounds"`` (a pair of quantile models), and
hands their predictions to the score in a dict; the dict always holds ``"X"``, the rows as the
user passed them.
"""

import numpy as np
from sklearn.base import BaseEstimator

from .._core._quantile import conformal_quantile


class BaseRegressionScore(BaseEstimator):
    """Base class of regression conformity scores.

    A subclass sets :attr:`predictions` and defines :meth:`conformity_scores` and
    :meth:`intervals`. Scores whose value has several parts (:class:`CQRScore` with
    ``symmetric=False``) also override :meth:`threshold`.

    Examples
    --------
    A score written by a user: residuals relative to a known noise level ``sigma(x) = 1 + |x_0|``.

    >>> import numpy as np
    >>> from sklearn_conformal.conformity_scores import BaseRegressionScore
    >>> class KnownNoise(BaseRegressionScore):
    ...     predictions = ("center",)
    ...     def _sigma(self, X):
    ...         return 1.0 + np.abs(np.asarray(X)[:, 0])
    ...     def conformity_scores(self, y, parts):
    ...         return np.abs(y - parts["center"]) / self._sigma(parts["X"])
    ...     def intervals(self, threshold, parts):
    ...         half = threshold * self._sigma(parts["X"])
    ...         return np.column_stack([parts["center"] - half, parts["center"] + half])
    >>> parts = {"X": np.array([[1.0]]), "center": np.array([0.0])}
    >>> KnownNoise().conformity_scores(np.array([3.0]), parts)
    array([1.5])
    """

    #: the model predictions the score reads: a subset of ("center", "scale", "bounds")
    predictions = ("center",)

    def conformity_scores(self, y, parts):
        """Scores of the targets ``y``; shape ``(n_samples,)`` (or ``(n_samples, n_parts)``).

        Parameters
        ----------
        y : ndarray of shape (n_samples,)
        parts : dict
            ``"X"`` and the predictions named in :attr:`predictions`: ``"center"``, ``"scale"``
            (positive), ``"lower"`` and ``"upper"`` (for ``"bounds"``), each of shape
            ``(n_samples,)``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must define conformity_scores(y, parts)."
        )

    def intervals(self, threshold, parts):
        """Intervals holding ``{y : s(x, y) <= threshold}``; shape ``(n_samples, 2)``.

        ``threshold`` is a float, or one value per row (shape ``(n_samples,)``) for
        group-conditional calibration, with a trailing axis of parts for multi-part scores.
        """
        raise NotImplementedError(f"{type(self).__name__} must define intervals(threshold, parts).")

    def threshold(self, scores, confidence_level):
        """The threshold of calibration ``scores`` at ``confidence_level``.

        The default is the exact finite-sample conformal quantile; ``+inf`` when the scores
        are too few.
        """
        return conformal_quantile(scores, confidence_level)

    def part_levels(self, confidence_level):
        """The level at which :meth:`threshold` calibrates each part of the score.

        A float for one-part scores (the level itself), one level per part otherwise. Weighted
        calibrators (:class:`~sklearn_conformal.calibrators.WeightedCalibrator`) take the
        weighted quantile of each part at its level; a multi-part score overriding
        :meth:`threshold` should override this too.
        """
        return confidence_level


class AbsoluteScore(BaseRegressionScore):
    """``s = |y - m(x)|``: intervals ``m(x) -/+ q`` of one width everywhere."""

    predictions = ("center",)

    def conformity_scores(self, y, parts):
        return np.abs(y - parts["center"])

    def intervals(self, threshold, parts):
        center = parts["center"]
        return np.column_stack([center - threshold, center + threshold])


class NormalizedScore(BaseRegressionScore):
    """``s = |y - m(x)| / sigma(x)`` with a fitted spread model: widths follow ``sigma``."""

    predictions = ("center", "scale")

    def conformity_scores(self, y, parts):
        return np.abs(y - parts["center"]) / parts["scale"]

    def intervals(self, threshold, parts):
        center, half = parts["center"], threshold * parts["scale"]
        return np.column_stack([center - half, center + half])


class SpreadScore(BaseRegressionScore):
    """``s = |y - m(x)| / spread(X)`` with a spread the user knows, instead of a fitted one.

    Parameters
    ----------
    spread : callable
        ``spread(X)`` returns one positive number per row of ``X`` (the rows as passed to the
        estimator, e.g. a DataFrame), e.g. a known measurement error.
    """

    predictions = ("center",)

    def __init__(self, spread=None):
        self.spread = spread

    def _spread(self, X, n):
        if not callable(self.spread):
            raise ValueError(
                f"SpreadScore needs spread=callable(X) returning one positive value per row, "
                f"got {self.spread!r}."
            )
        spread = np.asarray(self.spread(X), dtype=float).reshape(-1)
        if spread.shape != (n,) or not np.all(np.isfinite(spread)) or np.any(spread <= 0):
            raise ValueError(
                f"spread(X) must return {n} finite positive values (one per row); got shape "
                f"{spread.shape} with minimum {np.nanmin(spread) if spread.size else 'n/a'}."
            )
        return spread

    def conformity_scores(self, y, parts):
        return np.abs(y - parts["center"]) / self._spread(parts["X"], len(y))

    def intervals(self, threshold, parts):
        center = parts["center"]
        half = threshold * self._spread(parts["X"], len(center))
        return np.column_stack([center - half, center + half])


def _ordered(lower, upper):
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    return np.minimum(lower, upper), np.maximum(lower, upper)


class CQRScore(BaseRegressionScore):
    """Conformalized quantile regression (Romano et al. 2019).

    ``s = max(lo(x) - y, y - hi(x))``, interval ``[lo - q, hi + q]``. The two quantile
    predictions are ordered per row first (crossing quantile models would otherwise give
    ``lower > upper``), at calibration and at prediction alike, so the score is a fixed function
    of ``(x, y)``.

    Parameters
    ----------
    symmetric : bool, default=True
        ``False``: the asymmetric variant (Romano et al. 2019, Sec. 6), one score per tail,
        ``lo(x) - y`` and ``y - hi(x)``, each calibrated at level ``1 - alpha / 2``; it controls
        both miscoverage tails separately at the price of slightly wider intervals.
    """

    predictions = ("bounds",)

    def __init__(self, symmetric=True):
        self.symmetric = symmetric

    def conformity_scores(self, y, parts):
        lower, upper = _ordered(parts["lower"], parts["upper"])
        if self.symmetric:
            return np.maximum(lower - y, y - upper)
        return np.column_stack([lower - y, y - upper])

    def threshold(self, scores, confidence_level):
        if self.symmetric:
            return conformal_quantile(scores, confidence_level)
        tail_level = 1.0 - (1.0 - confidence_level) / 2.0
        return np.array([conformal_quantile(scores[:, tail], tail_level) for tail in range(2)])

    def part_levels(self, confidence_level):
        if self.symmetric:
            return confidence_level
        return np.full(2, 1.0 - (1.0 - confidence_level) / 2.0)

    def intervals(self, threshold, parts):
        lower, upper = _ordered(parts["lower"], parts["upper"])
        threshold = np.asarray(threshold, dtype=float)
        if self.symmetric:
            lo, hi = lower - threshold, upper + threshold
        else:
            lo, hi = lower - threshold[..., 0], upper + threshold[..., 1]
        lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
        # a negative threshold (quantile models wider than needed) can empty [lo - q, hi + q];
        # such rows get the zero-width interval at the midpoint, which holds the empty set
        empty = lo > hi
        if np.any(empty):
            middle = 0.5 * (lower + upper)
            lo[empty] = middle[empty]
            hi[empty] = middle[empty]
        return np.column_stack([lo, hi])


REGRESSION_SCORES = {
    "absolute": AbsoluteScore,
    "normalized": NormalizedScore,
    "cqr": CQRScore,
}
