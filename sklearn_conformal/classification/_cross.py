"""Cross-conformal (CV+ / jackknife+) prediction sets around any classifier."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted, validate_data

from .._core import check_confidence_level, warn_small_calibration
from .._core._quantile import conformal_rank
from .._estimator_mixins import (
    ConformalClassifierMixin,
    WrappedClassifierMixin,
    check_label_types,
)
from .._estimator_utils import (
    SPARSE_FORMATS,
    is_frozen,
    keep_frame,
    model_allows_nan,
    route_fit_params,
    split_fit_params,
)
from .._output import per_level
from ._split import model_probabilities
from ..conformity_scores import BaseClassificationScore, RAPSScore, check_classification_score

# string scores with a deterministic, untuned score (randomised APS/RAPS/SAPS draw uniforms per
# row, and RAPS "auto" tunes on part of the calibration data: neither fits the cross-conformal
# rule); "aps" and "raps" are their non-randomised forms
_CROSS_SCORES = ("lac", "aps", "raps", "top_k", "margin")
_CROSS_MODES = ("marginal", "class")


class CrossConformalClassifier(WrappedClassifierMixin, ConformalClassifierMixin, ClassifierMixin, BaseEstimator):
    """Cross-conformal (CV+ / jackknife+) prediction sets around any classifier.

    One model is fitted per fold on the other folds, and every sample's conformity score
    ``R_i = s(x_i, y_i; f_{-k(i)})`` uses the model that did not see it. A label ``y`` is in the
    set of ``x`` when fewer than ``(1 - alpha)(n + 1)`` calibration samples have a score below
    the label's score under their own out-of-fold model (Romano et al. 2020, Sec. 3.2, the
    classification form of Barber et al.'s CV+)::

        y in C(x)  <=>  #{i : R_i < s(x, y; f_{-k(i)})} < (1 - alpha)(n + 1)

    With one model this is the split-conformal rule ``s(x, y) <= R_(ceil((1 - alpha)(n + 1)))``.
    The guarantee is coverage at least ``1 - 2 alpha`` for exchangeable data; empirical
    coverage is typically ``~ 1 - alpha``. With ``mode="class"`` the count runs over the
    samples of label ``y`` only, with ``n_y`` in place of ``n``: the same argument within each
    class gives coverage at least ``1 - 2 alpha`` for every class.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``, default=None
        Cloned and fitted once per fold (``None``: ``LogisticRegression()``).
    confidence_level : float in (0, 1), default=0.9
    conformity_score : {"lac", "aps", "raps", "top_k", "margin"} or BaseClassificationScore, \
            default="lac"
        ``"aps"`` and ``"raps"`` are the non-randomised APS and RAPS (``k_reg=1``,
        ``lambda_reg=0.1``; pass ``RAPSScore(k, lambda, randomized=False)`` for others).
        Randomised scores (``uses_uniforms``) and scores that tune on calibration data
        (``RAPSScore`` with ``"auto"``, or a user score with its own ``prepare``) are refused.
    mode : {"marginal", "class"}, default="marginal"
        ``"class"``: class-conditional cross-conformal sets (coverage within every class).
    cv : int, cross-validation generator or iterable, default=5
        An int is a shuffled ``StratifiedKFold`` (``KFold`` when a class has fewer samples
        than folds) seeded by ``random_state``; ``LeaveOneOut()`` gives the jackknife+; group
        splitters take ``groups`` in ``fit``. The test sets must partition the samples.
    n_jobs : int, default=None
        Folds fitted in parallel (``sklearn.utils.parallel``); results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle of ``cv=int``.

    Attributes
    ----------
    estimators_ : list of classifiers
    folds_ : list of (train, test) index arrays
    classes_ : ndarray of shape (n_classes,)
    conformity_scores_ : ndarray of shape (n_samples,)
    conformity_score_ : BaseClassificationScore
    n_features_in_ : int

    Notes
    -----
    ``predict_proba`` is the mean of the fold models' probabilities (labels a fold model
    never saw get probability 0 from it); ``predict`` its most probable label.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_conformal import CrossConformalClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = CrossConformalClassifier(random_state=0).fit(X, y)
    >>> clf.predict_set(X[:2]).shape
    (2, 3)
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict_proba"]), None],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "conformity_score": [StrOptions(set(_CROSS_SCORES)), BaseClassificationScore],
        "mode": [StrOptions(set(_CROSS_MODES))],
        "cv": [Interval(Integral, 2, None, closed="left"), "cv_object"],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        confidence_level=0.9,
        conformity_score="lac",
        mode="marginal",
        cv=5,
        n_jobs=None,
        random_state=None,
    ):
        self.estimator = estimator
        self.confidence_level = confidence_level
        self.conformity_score = conformity_score
        self.mode = mode
        self.cv = cv
        self.n_jobs = n_jobs
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None, **fit_params):
        """Fit one model per fold and score every sample with the model that did not see it.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group splitter in ``cv``.
        **fit_params : dict
            Metadata for the model's ``fit`` (e.g. ``sample_weight``), routed as in
            :class:`~sklearn_conformal.SplitConformalClassifier`; per-sample arrays are indexed
            with each fold's training rows.

        Returns
        -------
        self : object
        """
        X_checked, y = validate_data(
            self,
            X,
            y,
            accept_sparse=SPARSE_FORMATS,
            dtype=None,
            ensure_all_finite=not model_allows_nan(self._inner_model()),
        )
        X = keep_frame(X, X_checked)
        y = np.asarray(y)
        check_label_types(y)
        check_classification_targets(y)
        n = len(y)
        if n < 2:
            raise ValueError(
                "cross-conformal prediction fits models on some samples and scores the others; "
                f"it needs at least 2 samples, got n_samples={n}."
            )
        self.conformity_score_ = self._score()
        estimator = self._inner_model()
        if is_frozen(estimator):
            raise ValueError(
                "CrossConformalClassifier refits its estimator on every fold; a FrozenEstimator "
                "cannot be refitted. Use SplitConformalClassifier for pre-trained models."
            )
        rng = check_random_state(self.random_state)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        self.folds_ = self._splits(X, y, groups, rng)
        params = route_fit_params(self, fit_params, {"estimator": estimator}, n)["estimator"]
        self.estimators_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_fold)(estimator, X, y, train, split_fit_params(X, params, train))
            for train, _ in self.folds_
        )
        seen = np.zeros(n, dtype=int)
        scores = np.empty(n)
        for k, (_, test) in enumerate(self.folds_):
            seen[test] += 1
            proba = self._fold_proba(k, _safe_indexing(X, test))
            scores[test] = self._checked(
                self.conformity_score_.calibration_scores(proba, y_idx[test]), (len(test),)
            )
        if np.any(seen != 1):
            raise ValueError(
                f"cv={self.cv!r} does not partition the samples (each must be in exactly one "
                "test set); use KFold, StratifiedKFold, GroupKFold, LeaveOneOut, ..."
            )
        self.conformity_scores_ = scores
        self.y_idx_ = y_idx
        level = check_confidence_level(self.confidence_level)
        smallest = int(self._calibration_counts().min())
        if conformal_rank(smallest, level) > smallest:
            where = "the out-of-fold calibration" if self.mode == "marginal" else (
                "the smallest class of the out-of-fold calibration"
            )
            warn_small_calibration(smallest, level, where=where)
        return self

    def _calibration_counts(self):
        """Calibration samples each label's count runs over: all (marginal) or its class's."""
        n_classes = len(self.classes_)
        if self.mode == "class":
            return np.bincount(self.y_idx_, minlength=n_classes)
        return np.full(n_classes, len(self.conformity_scores_))

    def _score(self):
        score = self.conformity_score
        if isinstance(score, str):
            return check_classification_score(score, randomized=False)
        score = check_classification_score(score)
        if isinstance(score, RAPSScore):
            tuned = "auto" in (score.k_reg, score.lambda_reg)
        else:
            tuned = type(score).prepare is not BaseClassificationScore.prepare
        if getattr(score, "uses_uniforms", False) or tuned:
            raise ValueError(
                f"conformity_score={score!r} is randomised or tunes itself on calibration data; "
                "CrossConformalClassifier supports deterministic, untuned scores "
                f"({', '.join(_CROSS_SCORES)}, or such a BaseClassificationScore)."
            )
        return score

    def _checked(self, values, shape):
        values = np.asarray(values, dtype=float)
        if values.shape != shape:
            raise ValueError(
                f"{type(self.conformity_score_).__name__} returned scores of shape "
                f"{values.shape}; expected {shape}."
            )
        return values

    def _splits(self, X, y, groups, rng):
        if isinstance(self.cv, Integral):
            if len(y) < self.cv:
                raise ValueError(
                    f"cv={self.cv} folds need at least {self.cv} samples, got n_samples={len(y)}."
                )
            seed = rng.randint(2**31 - 1)
            _, counts = np.unique(y, return_counts=True)
            if counts.min() >= self.cv:
                cv = StratifiedKFold(self.cv, shuffle=True, random_state=seed)
            else:
                cv = KFold(self.cv, shuffle=True, random_state=seed)
        else:
            cv = check_cv(self.cv, y, classifier=True)
        return [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y, groups)]

    def _fold_proba(self, k, X):
        """Fold model ``k``'s probabilities, column j for ``classes_[j]``."""
        model = self.estimators_[k]
        columns = np.searchsorted(self.classes_, np.asarray(model.classes_))
        return model_probabilities(model, X, columns, len(self.classes_))

    def _validate_X(self, X):
        check_is_fitted(self)
        X_checked = validate_data(
            self,
            X,
            reset=False,
            accept_sparse=SPARSE_FORMATS,
            dtype=None,
            ensure_all_finite=not model_allows_nan(self._inner_model()),
        )
        return keep_frame(X, X_checked)

    def predict_proba(self, X):
        """Mean of the fold models' probabilities, in the order of ``classes_``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._validate_X(X)
        return np.mean([self._fold_proba(k, X) for k in range(len(self.estimators_))], axis=0)

    def predict_set(self, X, confidence_level=None):
        """CV+ / jackknife+ prediction sets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float in (0, 1) or sequence of such floats, default=None
            Overrides the fitted level without refitting; a sequence stacks the sets of each
            level on a last axis.

        Returns
        -------
        sets : ndarray of bool, shape (n_samples, n_classes) or (n_samples, n_classes, n_levels)
            (a boolean DataFrame after ``set_output(predict="pandas")``).
        """
        X_checked = self._validate_X(X)
        n_classes = len(self.classes_)
        counts = self._calibration_counts()
        # per test row and label: #{i : R_i < s(x, y; f_{-k(i)})} over the folds (over the
        # samples of label y only, mode="class")
        below = 0
        for k, (_, test) in enumerate(self.folds_):
            proba = self._fold_proba(k, X_checked)
            label_scores = self._checked(
                self.conformity_score_.label_scores(proba), (proba.shape[0], n_classes)
            )
            if self.mode == "class":
                below = below + np.column_stack([
                    np.searchsorted(
                        np.sort(self.conformity_scores_[test][self.y_idx_[test] == c]),
                        label_scores[:, c],
                        side="left",
                    )
                    for c in range(n_classes)
                ])
            else:
                fold_scores = np.sort(self.conformity_scores_[test])
                below = below + np.searchsorted(fold_scores, label_scores, side="left")

        def at_level(level):
            k_rank = np.array([conformal_rank(int(c), level) for c in counts])
            # count < (1 - alpha)(n + 1)  <=>  count <= k_rank - 1 (count is an integer)
            return np.asarray(below <= k_rank - 1) | (k_rank > counts)

        return per_level(self, X, confidence_level, at_level, "set")

    def get_metadata_routing(self):
        """Routing of metadata: ``fit`` metadata goes to ``estimator.fit`` (training rows).

        Returns
        -------
        routing : MetadataRouter
        """
        return self._model_router()


def _fit_fold(estimator, X, y, train, params):
    return clone(estimator).fit(_safe_indexing(X, train), y[train], **params)
