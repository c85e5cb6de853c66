"""Methods every conformal classifier / regressor shares, given its calibrated state."""

import numpy as np

from ._core._row_keys import row_keys
from ._estimator_utils import resolve_confidence_level


class ConformalClassifierMixin:
    """``predict``, ``predict_set`` and ``score`` from ``predict_proba`` and ``conformalizer_``.

    The class using it defines ``predict_proba(X)`` (which checks fitting and validates ``X``),
    ``classes_`` and ``conformalizer_`` (a fitted ``ClassificationConformalizer``).
    """

    def predict(self, X):
        """Most probable label (the point prediction).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_set(self, X, confidence_level=None):
        """Conformal prediction sets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float in (0, 1), default=None
            Overrides the fitted level without refitting.

        Returns
        -------
        sets : ndarray of bool, shape (n_samples, n_classes)
            ``sets[i, k]`` is True when ``classes_[k]`` is in the set of sample ``i``. A row's
            set depends on its content only, not on its position or on the other rows of ``X``.
        """
        proba = self.predict_proba(X)
        level = resolve_confidence_level(self, confidence_level)
        # randomized APS/RAPS key each row's uniform by the row as the user passed it
        keys = row_keys(X) if self.conformalizer_.uses_test_uniforms else None
        return self.conformalizer_.predict_set(proba, level, keys=keys)

    def score(self, X, y, sample_weight=None):
        """Efficiency under coverage: ``-mean set size - n_classes * shortfall / alpha``.

        The shortfall is how far empirical coverage falls below ``confidence_level``; higher
        is better, so ``GridSearchCV`` prefers small sets that still cover.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        from .metrics import coverage, mean_set_size

        sets = self.predict_set(X)
        y_idx = self._encode(np.asarray(y))
        cov = coverage(y_idx, sets, sample_weight=sample_weight)
        size = mean_set_size(sets, sample_weight=sample_weight)
        shortfall = max(0.0, self.confidence_level - cov)
        return -size - len(self.classes_) * shortfall / (1.0 - self.confidence_level)

    def _encode(self, y):
        """Column index of each label in ``classes_``; unseen labels raise ``ValueError``."""
        positions = np.minimum(np.searchsorted(self.classes_, y), len(self.classes_) - 1)
        unseen = self.classes_[positions] != y
        if np.any(unseen):
            raise ValueError(
                f"y contains labels not seen during fit: {np.unique(y[unseen])[:10].tolist()}; "
                f"known classes are {self.classes_[:10].tolist()}."
            )
        return positions


class ConformalRegressorMixin:
    """``predict_set`` and ``score`` from ``predict_interval``."""

    def predict_set(self, X, confidence_level=None):
        """Same as ``predict_interval``: the prediction set of a regressor is an interval.

        Returns
        -------
        intervals : ndarray of shape (n_samples, 2)
        """
        return self.predict_interval(X, confidence_level)

    def score(self, X, y, sample_weight=None):
        """Minus the mean interval (Winkler) score at ``confidence_level``: higher is better.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : ignored
            Present for API compatibility.

        Returns
        -------
        score : float
        """
        from .metrics import interval_score

        return -interval_score(y, self.predict_interval(X), self.confidence_level)
