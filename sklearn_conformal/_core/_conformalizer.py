"""Split-conformal calibration of class probabilities, shared by every conformal classifier.

The conformalizer composes a conformity score (:mod:`sklearn_conformal.conformity_scores`) and a
calibrator (:mod:`sklearn_conformal.calibrators`), given as objects or as the string shortcuts
that select the built-ins; it owns what they share: the probability checks and the uniforms of
randomised scores (calibration uniforms from the fit's generator, test uniforms from each row's
content key).
"""

import numpy as np
from sklearn.utils import _safe_indexing, check_random_state

from ._row_keys import keyed_uniforms, row_keys
from ._validation import check_confidence_level


class ClassificationConformalizer:
    """Turn calibration probabilities into thresholds and prediction sets.

    Parameters
    ----------
    score : str or BaseClassificationScore, default="lac"
        A score object or a shortcut ("lac", "aps", "raps", "top_k", "saps", "margin"); see
        :func:`~sklearn_conformal.conformity_scores.check_classification_score`.
    mode : str or BaseCalibrator, default="marginal"
        A calibrator object or a shortcut: "marginal" (split conformal), "class" (LabelCP) or
        "cluster" (ClusterCP); see :func:`~sklearn_conformal.calibrators.check_calibrator`.
    randomized : bool, default=True
        Shortcut parameter of the APS/RAPS/SAPS strings: one uniform per sample (exact
        coverage). Calibration uniforms come from the fit-time generator, test uniforms from
        each row's content key and a seed drawn at fit (see :meth:`predict_set`). ``False``
        gives the non-randomised sets of Romano et al. (2020): the labels in rank order up to
        and including the first whose cumulative score reaches the threshold, never empty.
    k_reg, lambda_reg : int, float, default=1, 0.1
        Shortcut parameters of the "raps" string. On digits (LogisticRegression, 30 %
        calibration, level 0.9, 20 splits, randomised) mean size 1.05 against APS's 1.20 at
        equal coverage (0.899); the earlier 5, 0.01 gave 1.20.
    n_clusters, clustering_fraction : int or "auto", float or "auto"
        Shortcut parameters of the "cluster" string (Ding et al.'s automatic rule by default).
    """

    def __init__(
        self,
        score="lac",
        mode="marginal",
        randomized=True,
        k_reg=1,
        lambda_reg=0.1,
        n_clusters="auto",
        clustering_fraction="auto",
    ):
        from ..calibrators import check_calibrator
        from ..conformity_scores import check_classification_score

        self.score = score
        self.mode = mode
        self.randomized = randomized
        self.k_reg = k_reg
        self.lambda_reg = lambda_reg
        self.n_clusters = n_clusters
        self.clustering_fraction = clustering_fraction
        # resolved now so that a bad name fails early; fit works on fresh copies
        self.score_ = check_classification_score(
            score, randomized=randomized, k_reg=k_reg, lambda_reg=lambda_reg
        )
        self.calibrator_ = check_calibrator(
            mode, n_clusters=n_clusters, clustering_fraction=clustering_fraction
        )

    def fit(self, proba, y_idx, n_classes, confidence_level, random_state=None, X=None, groups=None,
            **calibration_extras):
        """Compute calibration scores and thresholds.

        Parameters
        ----------
        proba : ndarray of shape (n_calibration, n_classes)
        y_idx : ndarray of shape (n_calibration,)
            Column index of each calibration label.
        n_classes : int
        confidence_level : float
        random_state : int, RandomState, Generator or None
            Drives the score's tuning split, the calibration uniforms, the calibrator (e.g.
            ClusterCP's split) and the seed of the test-time uniforms, so equal seeds give
            equal sets.
        X : array-like or DataFrame, optional
            The calibration rows as the user passed them (for calibrators grouping rows).
        groups : array-like, optional
            ``groups=`` metadata of the calibration rows.
        **calibration_extras
            Further fields of :class:`~sklearn_conformal.calibrators.CalibrationData` passed to
            the calibrator as they are (``metadata``, ``X_train``, ``predict_proba``).

        Returns
        -------
        self
        """
        from ..calibrators import CalibrationData
        from ..conformity_scores import check_calibration_scores

        self.confidence_level_ = check_confidence_level(confidence_level)
        rng = check_random_state(random_state)
        self.n_classes_ = int(n_classes)
        proba = _check_probabilities(proba, self.n_classes_, "calibration")
        y_idx = _check_label_indices(y_idx, proba.shape[0], self.n_classes_)
        score, keep = self.score_.prepare(proba, y_idx, self.confidence_level_, rng)
        if keep is not None:
            keep = np.flatnonzero(keep)
            proba, y_idx = proba[keep], y_idx[keep]
            X = None if X is None else _safe_indexing(X, keep)
            groups = None if groups is None else _safe_indexing(groups, keep)
        self.score_ = score
        self.y_idx_ = y_idx
        u = rng.uniform(size=len(y_idx)) if self.uses_test_uniforms else None
        self.conformity_scores_ = check_calibration_scores(
            score.calibration_scores(proba, y_idx, u), len(y_idx), score, "calibration_scores"
        )
        self.calibrator_.fit(
            CalibrationData(
                scores=self.conformity_scores_,
                confidence_level=self.confidence_level_,
                X=X,
                labels=y_idx,
                n_labels=self.n_classes_,
                groups=groups,
                random_state=rng,
                **calibration_extras,
            )
        )
        self.predict_seed_ = int(rng.randint(2**31 - 1))
        # a user calibrator need not expose its thresholds (they may depend on the test rows)
        self.thresholds_ = getattr(self.calibrator_, "thresholds_", None)
        return self

    @property
    def clusters_(self):
        """ClusterCP's label clusters (``mode="cluster"`` only)."""
        return self.calibrator_.clusters_

    def thresholds(self, confidence_level, X=None, groups=None):
        """Thresholds at ``confidence_level`` from the stored calibration scores.

        Per label (shape ``(n_classes,)``) for label-based calibrators; calibrators that group
        rows need the test rows ``X`` (or ``groups``) and return one threshold per row.
        ClusterCP keeps the clusters found at fit time and recomputes only their quantiles.
        """
        level = check_confidence_level(confidence_level)
        return self.calibrator_.thresholds(X, level, groups=groups)

    def predict_set(self, proba, confidence_level=None, random_state=None, keys=None, X=None,
                    groups=None):
        """Boolean prediction sets of shape ``(n_samples, n_classes)``.

        Parameters
        ----------
        proba : ndarray of shape (n_samples, n_classes)
        confidence_level : float or None
            Overrides the level used at fit time.
        random_state : int, RandomState, Generator or None
            Seed of the test-time uniforms; by default the one drawn at fit, so repeated calls
            on the same data return the same sets.
        keys : ndarray of uint64, shape (n_samples,), default=None
            Content keys of the test rows (:func:`~._row_keys.row_keys` of the estimator's raw
            ``X``). Randomised scores draw each row's uniform from its key, so a row's set does
            not depend on its position in the batch, and rows get independent uniforms however
            they are batched. ``None`` keys the rows by their probabilities.
        X : array-like or DataFrame, optional
            The test rows as the user passed them (for calibrators grouping rows).
        groups : array-like, optional
            ``groups=`` metadata of the test rows.
        """
        proba = _check_probabilities(proba, self.n_classes_, "test")
        level = self.confidence_level_ if confidence_level is None else confidence_level
        thresholds = self.calibrator_.thresholds(X, check_confidence_level(level), groups=groups)
        u = self._test_uniforms(proba, random_state, keys)
        sets = np.asarray(self.score_.prediction_sets(proba, thresholds, u))
        if sets.shape != proba.shape or sets.dtype != bool:
            raise ValueError(
                f"{type(self.score_).__name__}.prediction_sets returned {sets.dtype} of shape "
                f"{sets.shape}; expected bool of shape {proba.shape}."
            )
        return sets

    def _test_uniforms(self, proba, random_state, keys):
        """One uniform per test row from its content key (None when the score takes none)."""
        n = proba.shape[0]
        if not self.uses_test_uniforms:
            return None
        if keys is None:
            keys = row_keys(proba)
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.shape != (n,):
            raise ValueError(
                f"keys must hold one key per row of proba ({n}), got shape {keys.shape}."
            )
        seed = self.predict_seed_
        if random_state is not None:
            seed = int(check_random_state(random_state).randint(2**31 - 1))
        return keyed_uniforms(keys, seed)

    @property
    def uses_test_uniforms(self):
        """Whether sets depend on per-row uniforms (randomised scores), hence on row keys."""
        return bool(getattr(self.score_, "uses_uniforms", False))


def _check_probabilities(proba, n_classes, part):
    """``proba`` as float64 of shape ``(n, n_classes)``, or an error naming what is wrong.

    Non-finite probabilities compare False with every threshold and would silently give empty
    (LAC) or arbitrary (APS/RAPS) sets.
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != n_classes:
        raise ValueError(
            f"The {part} probabilities must have shape (n_samples, {n_classes}), got "
            f"{proba.shape}."
        )
    if not np.isfinite(proba).all():
        rows = np.flatnonzero(~np.isfinite(proba).all(axis=1))
        raise ValueError(
            f"The model's predict_proba returned NaN or infinite {part} probabilities in "
            f"{rows.size} row(s) (first: {rows[:5].tolist()}); conformal sets need finite "
            "probabilities. Check the model, or impute the inputs that produce them."
        )
    return proba


def _check_label_indices(y_idx, n_samples, n_classes):
    """``y_idx`` as int64 column indices in ``[0, n_classes)``, one per calibration row.

    The compiled score kernels do not bounds-check, so an index out of range would read memory
    outside the probability array instead of failing.
    """
    y_idx = np.asarray(y_idx)
    if y_idx.shape != (n_samples,) or (y_idx.size and y_idx.dtype.kind not in "iu"):
        raise ValueError(
            f"y_idx must be {n_samples} integer column indices (one per row of proba), got "
            f"shape {y_idx.shape} and dtype {y_idx.dtype}."
        )
    if y_idx.size and (y_idx.min() < 0 or y_idx.max() >= n_classes):
        raise ValueError(
            f"y_idx must lie in [0, {n_classes}) (column indices of proba), got values from "
            f"{y_idx.min()} to {y_idx.max()}."
        )
    return y_idx.astype(np.int64, copy=False)
