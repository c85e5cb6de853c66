"""Classification conformity scores: the protocol and the built-in scores.

A score turns a classifier's probabilities into one number per (sample, label); a prediction set
holds the labels whose score is at most that label's threshold. Subclass
:class:`BaseClassificationScore` and define :meth:`~BaseClassificationScore.label_scores` to add
a score: every conformal classifier of the package then calibrates and predicts with it.
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator

from .._core import _classification_scores as kernels
from .._core._quantile import conformal_quantile
from ..exceptions import SmallCalibrationWarning


class BaseClassificationScore(BaseEstimator):
    """Base class of classification conformity scores.

    A subclass defines :meth:`label_scores`; the other methods have correct defaults and are
    overridden only for speed (the built-ins use compiled kernels) or for scores that tune
    themselves on part of the calibration data (:meth:`prepare`).

    Scores are scikit-learn estimators without ``fit``: their parameters appear in
    ``get_params``, so ``GridSearchCV`` can search over score objects and their parameters
    (``conformity_score__lambda_reg``), and the estimator clones the score it is given.

    Examples
    --------
    A score written by a user: one minus the probability, squared.

    >>> import numpy as np
    >>> from sklearn_conformal.conformity_scores import BaseClassificationScore
    >>> class SquaredLAC(BaseClassificationScore):
    ...     def label_scores(self, proba, u=None):
    ...         return (1.0 - proba) ** 2
    >>> SquaredLAC().calibration_scores(np.array([[0.8, 0.2]]), np.array([1]))
    array([0.64])
    """

    #: whether the score takes one uniform per sample (randomised scores); the estimator then
    #: draws calibration uniforms from its ``random_state`` and test uniforms from row keys
    uses_uniforms = False

    def label_scores(self, proba, u=None):
        """Score of every label, ``s(x_i, y)``; shape ``(n_samples, n_classes)``.

        Parameters
        ----------
        proba : ndarray of shape (n_samples, n_classes)
            Class probabilities, columns in the order of the estimator's ``classes_``.
        u : ndarray of shape (n_samples,) or None
            One uniform per sample when :attr:`uses_uniforms` is True, else None.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must define label_scores(proba, u=None) returning an array "
            "of shape (n_samples, n_classes)."
        )

    def calibration_scores(self, proba, y_idx, u=None):
        """Scores of the observed labels, ``s(x_i, y_i)``; shape ``(n_samples,)``.

        Parameters
        ----------
        proba : ndarray of shape (n_samples, n_classes)
        y_idx : ndarray of int, shape (n_samples,)
            Column of each sample's label.
        u : ndarray of shape (n_samples,) or None
        """
        scores = self.label_scores(proba, u)
        return np.asarray(scores, dtype=float)[np.arange(len(y_idx)), y_idx]

    def prediction_sets(self, proba, thresholds, u=None):
        """Boolean sets ``s(x_i, y) <= thresholds``; shape ``(n_samples, n_classes)``.

        Parameters
        ----------
        proba : ndarray of shape (n_samples, n_classes)
        thresholds : ndarray broadcastable to (n_samples, n_classes)
            One per label (shape ``(n_classes,)``), per row (``(n_samples, 1)``) or per cell.
        u : ndarray of shape (n_samples,) or None
        """
        return np.asarray(self.label_scores(proba, u), dtype=float) <= thresholds

    def prepare(self, proba, y_idx, confidence_level, random_state):
        """Tune the score on part of the calibration data; return ``(score, keep)``.

        ``keep`` is a boolean mask of the calibration rows left for calibration (``None``: all
        of them). Rows used to tune must not calibrate, or the coverage guarantee is lost. The
        default tunes nothing.
        """
        return self, None

    def _check_output(self, scores, shape):
        scores = np.asarray(scores, dtype=float)
        if scores.shape != shape:
            raise ValueError(
                f"{type(self).__name__}.label_scores returned shape {scores.shape}; expected "
                f"{shape} (one score per sample and class)."
            )
        return scores


def _per_label(thresholds, n_classes):
    """``thresholds`` as one value per label, or None when they vary by row."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim == 0:
        return np.full(n_classes, float(thresholds))
    if thresholds.shape == (n_classes,):
        return np.ascontiguousarray(thresholds)
    if thresholds.ndim == 2 and thresholds.shape[0] == 1:
        return _per_label(thresholds[0], n_classes)
    return None


class LACScore(BaseClassificationScore):
    """LAC (THR, Sadinle et al. 2019): ``s(x, y) = 1 - p_y``; the smallest sets on average."""

    def label_scores(self, proba, u=None):
        return 1.0 - np.asarray(proba, dtype=np.float64)

    def calibration_scores(self, proba, y_idx, u=None):
        return kernels.true_label_scores(proba, y_idx, "lac", None)

    def prediction_sets(self, proba, thresholds, u=None):
        proba = np.ascontiguousarray(proba, dtype=np.float64)
        per_label = _per_label(thresholds, proba.shape[1])
        if per_label is not None:
            # the calibration expression, so ties resolve identically
            return kernels.prediction_sets(proba, per_label, "lac", None)
        return 1.0 - proba <= thresholds


class APSScore(BaseClassificationScore):
    """APS (Romano et al. 2020): mass of the labels ranked up to ``y``.

    ``s(x, y) = sum_{j ranked before y} p_j + u p_y``. Randomised (``u`` uniform) sets cover
    exactly; ``randomized=False`` gives the conservative sets of Romano et al.: the labels in
    rank order up to and including the first whose cumulative mass reaches the threshold (never
    empty).

    Parameters
    ----------
    randomized : bool, default=True
    """

    def __init__(self, randomized=True):
        self.randomized = randomized

    @property
    def uses_uniforms(self):
        return bool(self.randomized)

    def _regularisation(self):
        return 0, 0.0

    def _kernel_arguments(self, u, n):
        """``(u, k_reg, lambda_reg)`` of the compiled kernels.

        Non-randomised sets score a label by the score of the label ranked just before it: the
        kernels with ``u = 0`` and the RAPS rank offset raised by one (see
        :mod:`sklearn_conformal._core._classification_scores`).
        """
        k_reg, lambda_reg = self._regularisation()
        if self.randomized:
            if u is None:
                raise ValueError(f"{type(self).__name__}(randomized=True) needs one uniform per row.")
            return u, k_reg, lambda_reg
        return np.zeros(n), k_reg + 1, lambda_reg

    def label_scores(self, proba, u=None):
        proba = np.ascontiguousarray(proba, dtype=np.float64)
        u, k_reg, lambda_reg = self._kernel_arguments(u, proba.shape[0])
        return kernels.all_label_scores(proba, "raps", u, k_reg, lambda_reg)

    def calibration_scores(self, proba, y_idx, u=None):
        proba = np.ascontiguousarray(proba, dtype=np.float64)
        u, k_reg, lambda_reg = self._kernel_arguments(u, proba.shape[0])
        return kernels.true_label_scores(proba, y_idx, "raps", u, k_reg, lambda_reg)

    def prediction_sets(self, proba, thresholds, u=None):
        proba = np.ascontiguousarray(proba, dtype=np.float64)
        u, k_reg, lambda_reg = self._kernel_arguments(u, proba.shape[0])
        per_label = _per_label(thresholds, proba.shape[1])
        if per_label is not None:
            return kernels.prediction_sets(proba, per_label, "raps", u, k_reg, lambda_reg)
        return kernels.all_label_scores(proba, "raps", u, k_reg, lambda_reg) <= thresholds


# Angelopoulos et al. (2021)'s grid for lambda_reg when tuned for size
_LAMBDA_GRID = (0.001, 0.01, 0.1, 0.2, 0.5)
# below this many tuning rows "auto" falls back to the fixed defaults (with a warning)
_MIN_TUNING_ROWS = 10
_DEFAULT_K_REG, _DEFAULT_LAMBDA_REG = 1, 0.1


class RAPSScore(APSScore):
    """RAPS (Angelopoulos et al. 2021): APS plus ``lambda_reg * max(0, rank(y) - k_reg)``.

    Parameters
    ----------
    k_reg : int >= 0 or "auto", default=1
        Rank from which the penalty starts. ``"auto"``: Angelopoulos et al.'s rule, the
        ``confidence_level`` quantile of the true label's rank on a tuning split.
    lambda_reg : float >= 0 or "auto", default=0.1
        Penalty per rank beyond ``k_reg``. ``"auto"``: the value of the grid
        (0.001, 0.01, 0.1, 0.2, 0.5) with the smallest mean set size on the tuning split.
    randomized : bool, default=True
    tuning_fraction : float in (0, 1), default=0.2
        With an ``"auto"`` parameter, the fraction of the calibration rows spent on tuning; they
        are left out of calibration, so the guarantee holds for the tuned score. With fewer
        than 10 tuning rows nothing is tuned: the defaults ``k_reg=1``, ``lambda_reg=0.1``
        apply, every row calibrates, and a
        :class:`~sklearn_conformal.exceptions.SmallCalibrationWarning` says so.
    """

    def __init__(self, k_reg=1, lambda_reg=0.1, randomized=True, tuning_fraction=0.2):
        self.k_reg = k_reg
        self.lambda_reg = lambda_reg
        self.randomized = randomized
        self.tuning_fraction = tuning_fraction

    def _regularisation(self):
        if isinstance(self.k_reg, str) or isinstance(self.lambda_reg, str):
            raise ValueError(
                'RAPSScore with k_reg="auto" or lambda_reg="auto" must be prepared on '
                "calibration data first (the conformal estimators do this in fit)."
            )
        return int(self.k_reg), float(self.lambda_reg)

    def prepare(self, proba, y_idx, confidence_level, random_state):
        auto_k = isinstance(self.k_reg, str)
        auto_lambda = isinstance(self.lambda_reg, str)
        for name, value in (("k_reg", self.k_reg), ("lambda_reg", self.lambda_reg)):
            if isinstance(value, str) and value != "auto":
                raise ValueError(f'{name} must be a number or "auto", got {value!r}.')
        if not (auto_k or auto_lambda):
            return self, None
        if not 0.0 < self.tuning_fraction < 1.0:
            raise ValueError(
                f"tuning_fraction must lie in (0, 1), got {self.tuning_fraction!r}."
            )
        n = len(y_idx)
        tune = np.zeros(n, dtype=bool)
        n_tune = int(round(self.tuning_fraction * n))
        if n_tune < _MIN_TUNING_ROWS:
            # too few rows to tune anything: the fixed defaults, every row calibrates
            warnings.warn(
                f'RAPSScore "auto" needs {_MIN_TUNING_ROWS} tuning rows (tuning_fraction='
                f"{self.tuning_fraction:g} of {n} calibration rows gives {n_tune}); using "
                f"k_reg={_DEFAULT_K_REG if auto_k else self.k_reg}, lambda_reg="
                f"{_DEFAULT_LAMBDA_REG if auto_lambda else self.lambda_reg} and calibrating on "
                "every row. Use more calibration data or fixed k_reg / lambda_reg.",
                SmallCalibrationWarning,
                stacklevel=4,
            )
            return (
                RAPSScore(
                    _DEFAULT_K_REG if auto_k else self.k_reg,
                    _DEFAULT_LAMBDA_REG if auto_lambda else self.lambda_reg,
                    self.randomized,
                ),
                None,
            )
        tune[random_state.permutation(n)[:n_tune]] = True
        p_tune, y_tune = proba[tune], y_idx[tune]
        k_reg = self.k_reg
        if auto_k:
            # rank of the true label (1-based, ties by index), as the kernels rank labels
            ranks = 1 + np.sum(
                (p_tune > p_tune[np.arange(n_tune), y_tune][:, None])
                | (
                    (p_tune == p_tune[np.arange(n_tune), y_tune][:, None])
                    & (np.arange(proba.shape[1])[None, :] < y_tune[:, None])
                ),
                axis=1,
            )
            k_reg = int(conformal_quantile(ranks, min(confidence_level, n_tune / (n_tune + 1))))
        candidates = _LAMBDA_GRID if auto_lambda else (float(self.lambda_reg),)
        u = random_state.uniform(size=n_tune) if self.randomized else None
        best, best_size = None, np.inf
        for lambda_reg in candidates:
            score = RAPSScore(k_reg, lambda_reg, self.randomized)
            threshold = conformal_quantile(score.calibration_scores(p_tune, y_tune, u), confidence_level)
            size = score.prediction_sets(p_tune, threshold, u).sum(axis=1).mean()
            if size < best_size:
                best, best_size = score, size
        return best, ~tune


class TopKScore(BaseClassificationScore):
    """Top-k: ``s(x, y)`` is the rank of ``y`` (1 for the most probable label).

    Sets are the ``k`` most probable labels with one ``k`` for all samples (ties by the smaller
    label index): the set-valued counterpart of top-k accuracy.
    """

    def label_scores(self, proba, u=None):
        proba = np.asarray(proba, dtype=np.float64)
        order = np.argsort(-proba, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(1, proba.shape[1] + 1)[None, :], axis=1)
        return ranks.astype(np.float64)


class SAPSScore(BaseClassificationScore):
    """SAPS (Huang et al. 2024): APS that keeps only the top probability.

    ``s(x, y) = u p_max`` for the top label, ``p_max + (rank(y) - 2 + u) * weight`` otherwise:
    the tail probabilities, often badly calibrated, no longer inflate the sets.

    Parameters
    ----------
    weight : float > 0, default=0.1
        Penalty per rank below the top label.
    randomized : bool, default=True
        ``False`` uses ``u = 1`` (conservative).
    """

    def __init__(self, weight=0.1, randomized=True):
        self.weight = weight
        self.randomized = randomized

    @property
    def uses_uniforms(self):
        return bool(self.randomized)

    def label_scores(self, proba, u=None):
        if not self.weight > 0:
            raise ValueError(f"weight must be > 0, got {self.weight!r}.")
        proba = np.asarray(proba, dtype=np.float64)
        u = np.ones(proba.shape[0]) if u is None or not self.randomized else np.asarray(u)
        ranks = TopKScore().label_scores(proba)
        p_max = proba.max(axis=1, keepdims=True)
        u = u[:, None]
        return np.where(ranks == 1, u * p_max, p_max + (ranks - 2 + u) * self.weight)


class MarginScore(BaseClassificationScore):
    """Margin: ``s(x, y) = max_{j != y} p_j - p_y``, how far ``y`` is from winning."""

    def label_scores(self, proba, u=None):
        proba = np.asarray(proba, dtype=np.float64)
        n, n_classes = proba.shape
        if n_classes < 2:
            return -proba
        top = np.argmax(proba, axis=1)
        best = proba[np.arange(n), top]
        rest = proba.copy()
        rest[np.arange(n), top] = -np.inf
        second = rest.max(axis=1)
        other_max = np.repeat(best[:, None], n_classes, axis=1)
        other_max[np.arange(n), top] = second
        return other_max - proba


CLASSIFICATION_SCORES = {
    "lac": LACScore,
    "aps": APSScore,
    "raps": RAPSScore,
    "top_k": TopKScore,
    "saps": SAPSScore,
    "margin": MarginScore,
}
