"""Weighted conformal calibration: covariate shift and label shift.

Under covariate shift (the test ``X`` follows another distribution, ``Y | X`` does not change)
the calibration scores are weighted by the likelihood ratio ``w(x) = dP_target / dP_source(x)``
and the test point keeps its own mass ``w(x)`` at ``+inf`` (Tibshirani, Barber, Candès and
Ramdas 2019, "Conformal prediction under covariate shift"). Under label shift (class priors
change, ``X | Y`` does not) the weights are the prior ratios ``w(y) = pi_target(y) /
pi_source(y)`` of the calibration labels and of the candidate label (Podkopaev and Ramdas
2021), with target priors given or estimated by black-box shift estimation (Lipton, Wang and
Smola 2018).
"""

import numbers

import numpy as np
from scipy import sparse
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.utils import _safe_indexing

from .._core._quantile import _RANK_TOLERANCE
from ._base import BaseCalibrator

# a domain classifier's probabilities are clipped to [eps, 1 - eps] so that the ratio stays
# finite and positive
_PROBA_EPS = 1e-6


def weighted_conformal_quantile(scores, weights, test_weights, confidence_level):
    """Weighted conformal thresholds: one per test weight (and part).

    The threshold of a test point of weight ``w`` is the ``confidence_level`` quantile of the
    distribution putting mass ``weights[i] / (sum(weights) + w)`` on ``scores[i]`` and
    ``w / (sum(weights) + w)`` on ``+inf``; ``+inf`` when the calibration mass below it is too
    small. With equal weights it is the ``ceil((n + 1) * confidence_level)``-th smallest score,
    the split-conformal threshold.

    Parameters
    ----------
    scores : array-like of shape (n,) or (n, n_parts)
    weights : array-like of shape (n,)
        Non-negative, finite weights of the calibration scores.
    test_weights : array-like of shape (m,)
        Non-negative weights of the test points (``+inf`` gives a ``+inf`` threshold).
    confidence_level : float or array-like of shape (n_parts,)
        One level, or one level per part.

    Returns
    -------
    thresholds : ndarray of shape (m,) or (m, n_parts)
    """
    return _SortedWeights(scores, weights).thresholds(test_weights, confidence_level)


class _SortedWeights:
    """Calibration scores sorted once per part with their cumulative weights."""

    def __init__(self, scores, weights):
        scores = np.asarray(scores, dtype=float)
        weights = np.asarray(weights, dtype=float).reshape(-1)
        self.one_part = scores.ndim == 1
        scores = scores.reshape(len(scores), -1)
        if len(weights) != len(scores):
            raise ValueError(
                f"weights must hold one weight per score ({len(scores)}), got {len(weights)}."
            )
        self.n, self.n_parts = scores.shape
        self.total = float(weights.sum())
        order = np.argsort(scores, axis=0, kind="stable")
        self.sorted = np.take_along_axis(scores, order, axis=0)
        self.cumulative = np.cumsum(weights[order], axis=0)

    def thresholds(self, test_weights, confidence_level):
        test_weights = np.asarray(test_weights, dtype=float).reshape(-1)
        levels = np.broadcast_to(np.asarray(confidence_level, dtype=float), (self.n_parts,))
        out = np.full((len(test_weights), self.n_parts), np.inf)
        if self.n:
            mass = self.total + test_weights
            finite = np.isfinite(mass)
            for part in range(self.n_parts):
                # the tolerance keeps equal weights on the exact rank ceil((n + 1) c) of the
                # unweighted rule (see conformal_rank), as a fraction of the mean mass
                target = mass[finite] * (levels[part] - _RANK_TOLERANCE / (self.n + 1))
                k = np.searchsorted(self.cumulative[:, part], target, side="left")
                values = self.sorted[np.minimum(k, self.n - 1), part]
                out[finite, part] = np.where(k < self.n, values, np.inf)
        return out[:, 0] if self.one_part else out


def _check_weights(weights, n, name, allow_inf=False):
    """``weights`` as float64 of shape ``(n,)``, finite and positive, or an error naming them."""
    weights = np.asarray(weights, dtype=float)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.shape != (n,):
        raise ValueError(f"{name} must return one weight per row ({n}), got shape {weights.shape}.")
    bad = np.isnan(weights) | (weights <= 0) | (~np.isfinite(weights) & (not allow_inf))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} must give positive, finite weights; got {rows.size} bad value(s) (e.g. "
            f"{weights[rows[0]]!r} at row {rows[0]})."
        )
    return weights


def _stack_rows(source, target):
    """Source rows above target rows, keeping DataFrames and sparse matrices as they are."""
    if hasattr(source, "iloc"):
        import pandas as pd

        return pd.concat([source, target], ignore_index=True)
    if sparse.issparse(source) or sparse.issparse(target):
        return sparse.vstack([sparse.csr_matrix(source), sparse.csr_matrix(target)]).tocsr()
    source, target = np.asarray(source), np.asarray(target)
    if target.ndim != 2 or target.shape[1:] != source.shape[1:]:
        raise ValueError(
            f"X_target must have the columns of X ({source.shape[1:]}), got shape "
            f"{target.shape}."
        )
    return np.concatenate([source, target])


def _num_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


class WeightedCalibrator(BaseCalibrator):
    """Weighted conformal calibration under covariate shift (Tibshirani et al. 2019).

    When the test rows follow a target distribution whose ``X`` differs from the training
    data's (``Y | X`` unchanged), split conformal loses its coverage. Weighting each
    calibration score by the likelihood ratio ``w(X_i) = dP_target / dP_source(X_i)`` and
    putting the test point's own mass ``w(x)`` at ``+inf`` restores it: the threshold of a test
    row ``x`` is the ``confidence_level`` quantile of the distribution with mass
    ``w(X_i) / (sum_j w(X_j) + w(x))`` on each calibration score. Coverage on the target holds
    exactly with the true ratio, approximately with an estimated one. Thresholds are one per
    test row (each part at the score's level for multi-part scores); it works with every
    split score.

    The ratio is either given (``likelihood_ratio``) or estimated by a probabilistic domain
    classifier trained to tell source rows from unlabeled target rows passed to ``fit`` as
    metadata: ``SplitConformalRegressor(mode=WeightedCalibrator()).fit(X, y,
    X_target=X_unlabeled)``. With ``p(x)`` its probability of "target",
    ``w(x) = p(x) / (1 - p(x)) * n_source / n_target``.

    The source rows of the domain classifier are the wrapped model's training rows, never the
    calibration rows, so the estimated ratio is a fixed function of rows independent of the
    calibration scores (the weighted exchangeability argument then applies to it as it would to
    a given ratio). When the model is frozen (every row is a calibration row), the ratio is
    cross-fitted: the calibration rows are split in ``n_folds`` folds, each calibration row is
    weighted by the classifier trained without its fold, and test rows by the mean ratio of
    the fold classifiers.

    Parameters
    ----------
    likelihood_ratio : callable or None, default=None
        ``likelihood_ratio(X)``: positive weights of the rows ``X`` (as the estimator passes
        them, e.g. a DataFrame). None estimates it from ``X_target``.
    domain_classifier : classifier with ``predict_proba`` or None, default=None
        Tells source (class 0) from target (class 1) rows; None means
        ``LogisticRegression(max_iter=1000)``. Cloned; a ``random_state=None`` is seeded from
        the estimator's ``random_state`` so that equal seeds give equal weights.
    n_folds : int >= 2, default=5
        Folds of the cross-fitted ratio when there are no training rows (frozen models).

    Attributes
    ----------
    weights_ : ndarray of shape (n_calibration,)
        The calibration rows' weights.
    domain_classifiers_ : list of classifiers
        The fitted domain classifier(s) (one, or one per fold); empty with a given ratio.
    n_source_, n_target_ : int
        Source and target rows the domain classifier was trained on (the first fold's when
        cross-fitted).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal import SplitConformalRegressor
    >>> from sklearn_conformal.calibrators import WeightedCalibrator
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 1)); y = X[:, 0] + rng.normal(size=600)
    >>> X_target = rng.normal(1.0, 1.0, size=(300, 1))
    >>> reg = SplitConformalRegressor(mode=WeightedCalibrator(), random_state=0)
    >>> reg.fit(X, y, X_target=X_target).predict_interval(X_target[:2]).shape
    (2, 2)
    """

    calibration_metadata = ("X_target",)

    def __init__(self, likelihood_ratio=None, domain_classifier=None, n_folds=5):
        self.likelihood_ratio = likelihood_ratio
        self.domain_classifier = domain_classifier
        self.n_folds = n_folds

    def fit(self, data):
        n = len(data.scores)
        self.domain_classifiers_, self._prior_ratios = [], []
        if self.likelihood_ratio is not None:
            if not callable(self.likelihood_ratio):
                raise TypeError(
                    "likelihood_ratio must be a callable of X returning one positive weight "
                    f"per row, got {type(self.likelihood_ratio).__name__}."
                )
            weights = _check_weights(self.likelihood_ratio(data.X), n, "likelihood_ratio")
        else:
            weights = self._fit_domain_classifier(data)
        self.weights_ = weights
        self._is_classification = data.is_classification
        self._part_levels = getattr(data.score, "part_levels", None)
        self._n_parts = 1 if np.ndim(data.scores) == 1 else np.shape(data.scores)[1]
        self._sorted = _SortedWeights(data.scores, weights)
        self.confidence_level_ = data.confidence_level
        return self

    def _domain_model(self, random_state):
        model = (
            LogisticRegression(max_iter=1000)
            if self.domain_classifier is None
            else clone(self.domain_classifier)
        )
        if not callable(getattr(model, "predict_proba", None)):
            raise TypeError(
                "domain_classifier must be a classifier with predict_proba, got "
                f"{type(model).__name__}."
            )
        params = model.get_params(deep=False) if hasattr(model, "get_params") else {}
        if "random_state" in params and params["random_state"] is None and random_state is not None:
            model.set_params(random_state=int(random_state.randint(2**31 - 1)))
        return model

    def _fit_domain_classifier(self, data):
        X_target = (data.metadata or {}).get("X_target")
        if X_target is None:
            raise ValueError(
                "WeightedCalibrator without likelihood_ratio estimates it from unlabeled target "
                "rows: pass X_target= to fit, e.g. fit(X, y, X_target=X_unlabeled), or give "
                "WeightedCalibrator(likelihood_ratio=callable)."
            )
        n_target = _num_rows(X_target)
        if n_target < 2:
            raise ValueError(f"X_target must hold at least 2 rows, got {n_target}.")
        if data.X_train is not None and _num_rows(data.X_train) >= 2:
            model = self._train_domain(data.X_train, X_target, data.random_state)
            self.domain_classifiers_ = [model]
            return self._ratio(model, data.X, "the domain classifier")
        if not isinstance(self.n_folds, numbers.Integral) or self.n_folds < 2:
            raise ValueError(f"n_folds must be an integer >= 2, got {self.n_folds!r}.")
        n = _num_rows(data.X)
        weights = np.empty(n)
        folds = KFold(self.n_folds, shuffle=True, random_state=data.random_state.randint(2**31 - 1))
        for i, (rest, fold) in enumerate(folds.split(np.zeros((n, 1)))):
            model = self._train_domain(_safe_indexing(data.X, rest), X_target, data.random_state)
            self.domain_classifiers_.append(model)
            weights[fold] = self._ratio(
                model, _safe_indexing(data.X, fold), "the domain classifier", fold=i
            )
        return weights

    def _train_domain(self, X_source, X_target, random_state):
        n_source, n_target = _num_rows(X_source), _num_rows(X_target)
        if not self.domain_classifiers_:
            self.n_source_, self.n_target_ = n_source, n_target
        rows = _stack_rows(X_source, X_target)
        domain = np.r_[np.zeros(n_source, dtype=int), np.ones(n_target, dtype=int)]
        model = self._domain_model(random_state).fit(rows, domain)
        self._prior_ratios.append(n_source / n_target)
        return model

    def _ratio(self, model, X, name, fold=0):
        classes = list(getattr(model, "classes_", [0, 1]))
        proba = np.asarray(model.predict_proba(X), dtype=float)[:, classes.index(1)]
        proba = np.clip(proba, _PROBA_EPS, 1.0 - _PROBA_EPS)
        ratio = proba / (1.0 - proba) * self._prior_ratios[fold]
        return _check_weights(ratio, _num_rows(X), name)

    def test_weights(self, X):
        """The likelihood ratio ``w(x)`` of the rows ``X`` (given, or estimated)."""
        if self.likelihood_ratio is not None:
            return _check_weights(self.likelihood_ratio(X), _num_rows(X), "likelihood_ratio")
        ratios = [
            self._ratio(model, X, "the domain classifier", fold=i)
            for i, model in enumerate(self.domain_classifiers_)
        ]
        return np.mean(ratios, axis=0)

    def thresholds(self, X, confidence_level, groups=None):
        if X is None:
            raise ValueError("WeightedCalibrator thresholds depend on the rows; pass X.")
        level = confidence_level
        if self._part_levels is not None:
            level = self._part_levels(confidence_level)
        elif self._n_parts > 1:
            raise ValueError(
                f"WeightedCalibrator: this score has {self._n_parts} parts but no "
                "part_levels(confidence_level) method saying at which level each is calibrated."
            )
        out = self._sorted.thresholds(self.test_weights(X), level)
        if self._is_classification:
            return out[:, np.newaxis]
        return out


class LabelShiftCalibrator(BaseCalibrator):
    """Weighted conformal classification under label shift (Podkopaev and Ramdas 2021).

    When the class priors of the test rows differ from the training data's (``X | Y``
    unchanged), calibration scores are weighted by the prior ratio of their label,
    ``w(y) = pi_target(y) / pi_source(y)``, and the candidate label ``y`` of a test row keeps
    mass ``w(y)`` at ``+inf``; thresholds are one per label. Source priors are the calibration
    label frequencies. Target priors are given (``target_priors``) or estimated from unlabeled
    target rows passed to ``fit`` as ``X_target=`` by black-box shift estimation (BBSE; Lipton
    et al. 2018): with ``C[i, j]`` the joint frequency of prediction ``i`` and label ``j`` on the
    calibration rows and ``mu[i]`` the frequency of prediction ``i`` on the target rows, the
    ratios solve ``C w = mu`` (least squares, clipped at 0, normalised so the target priors sum
    to 1). The confusion matrix is estimated on the calibration rows, so the estimated ratios
    depend slightly on the calibration scores; with given priors coverage is exact.

    Parameters
    ----------
    target_priors : array-like of shape (n_classes,) or None, default=None
        Class priors of the target, in the order of the estimator's ``classes_``
        (normalised to sum to 1). None estimates them by BBSE from ``X_target``.

    Attributes
    ----------
    source_priors_, target_priors_ : ndarray of shape (n_classes,)
    weights_ : ndarray of shape (n_classes,)
        ``target_priors_ / source_priors_`` (``+inf`` for a label without calibration rows
        but with target mass: its threshold is ``+inf``).
    confusion_matrix_ : ndarray of shape (n_classes, n_classes) or None
        BBSE's ``C`` (None with given priors).
    thresholds_ : ndarray of shape (n_classes,)
        Per-label thresholds at the fit's level.
    """

    calibration_metadata = ("X_target",)

    def __init__(self, target_priors=None):
        self.target_priors = target_priors

    def fit(self, data):
        if not data.is_classification:
            raise ValueError(
                "LabelShiftCalibrator weights calibration scores by class priors; for regression "
                "under covariate shift use WeightedCalibrator."
            )
        if np.ndim(data.scores) != 1:
            raise ValueError("LabelShiftCalibrator calibrates one-part scores.")
        k = data.n_labels
        counts = np.bincount(data.labels, minlength=k).astype(float)
        self.source_priors_ = counts / counts.sum()
        self.confusion_matrix_ = None
        if self.target_priors is not None:
            priors = np.asarray(self.target_priors, dtype=float)
            if priors.shape != (k,) or not np.isfinite(priors).all() or (priors < 0).any() \
                    or priors.sum() <= 0:
                raise ValueError(
                    f"target_priors must be {k} non-negative finite numbers (one per class of "
                    f"classes_) with a positive sum, got {self.target_priors!r}."
                )
            self.target_priors_ = priors / priors.sum()
        else:
            self.target_priors_ = self._bbse(data, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            weights = self.target_priors_ / self.source_priors_
        weights[(counts == 0) & (self.target_priors_ == 0)] = 0.0
        self.weights_ = weights
        cal_weights = weights[data.labels]  # finite: every calibration label has counts > 0
        self._sorted = _SortedWeights(data.scores, cal_weights)
        self.thresholds_ = self.thresholds(None, data.confidence_level)
        return self

    def _bbse(self, data, k):
        X_target = (data.metadata or {}).get("X_target")
        if X_target is None:
            raise ValueError(
                "LabelShiftCalibrator without target_priors estimates them from unlabeled "
                "target rows: pass X_target= to fit, e.g. fit(X, y, X_target=X_unlabeled), or "
                "give LabelShiftCalibrator(target_priors=[...])."
            )
        if data.predict_proba is None or data.X is None:
            raise ValueError(
                "LabelShiftCalibrator needs the model's probabilities to estimate target priors "
                "(BBSE); the estimator did not provide them. Give target_priors instead."
            )
        predicted = np.argmax(np.asarray(data.predict_proba(data.X)), axis=1)
        n = len(data.labels)
        confusion = np.zeros((k, k))
        np.add.at(confusion, (predicted, data.labels), 1.0 / n)
        target_predicted = np.argmax(np.asarray(data.predict_proba(X_target)), axis=1)
        mu = np.bincount(target_predicted, minlength=k) / len(target_predicted)
        ratio = np.linalg.lstsq(confusion, mu, rcond=None)[0]
        ratio = np.clip(ratio, 0.0, None)
        priors = ratio * self.source_priors_
        if priors.sum() <= 0:
            raise ValueError(
                "BBSE found no positive target prior from X_target (its predictions do not match "
                "any calibrated class); give target_priors instead."
            )
        self.confusion_matrix_ = confusion
        return priors / priors.sum()

    def thresholds(self, X, confidence_level, groups=None):
        # one threshold per candidate label y: its test mass is w(y)
        return self._sorted.thresholds(self.weights_, confidence_level)
