"""Cross-conformal intervals: CV+, jackknife+, their minmax variants and jackknife+-after-bootstrap.

Every training point is calibration data for the models that did not see it (Barber et al.
2021, "Predictive inference with the jackknife+"; Kim et al. 2020, "Predictive inference is
free with the jackknife+-after-bootstrap"), so no data is set aside as in split conformal
prediction.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context, clone
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _num_samples, check_is_fitted

from .._core import check_confidence_level, warn_small_calibration
from .._core._quantile import conformal_quantile, conformal_rank
from .._estimator_mixins import ConformalRegressorMixin
from .._estimator_utils import (
    is_frozen,
    route_fit_params,
    split_fit_params,
    wrapped_allows_nan,
    wrapped_input_tag,
)
from .._output import per_level
from ..conformity_scores import check_regression_score
from ..conformity_scores._regression import REGRESSION_SCORES
from ._score_models import _SCALE_FLOOR, _SCALE_FOLDS, ScoreModelsMixin
from ._split import SplitConformalRegressor

# elements of the (rows, n_train) work arrays of one chunk of test rows (times the features
# repeated for the score's "X"): bounds the memory of predict_interval whatever the test size
_CHUNK_ELEMENTS = 2**22


class CrossConformalRegressor(ConformalRegressorMixin, RegressorMixin, BaseEstimator):
    """Cross-conformal (CV+ / jackknife+) prediction intervals around any regressor.

    The data is split into folds (``cv``); one model is fitted per fold on the other folds,
    and every sample's conformity score ``R_i`` is computed with the model that did not see it,
    ``mu_{-k(i)}``. No sample is held out: all of them train models and all calibrate.

    With ``method="plus"`` (CV+, or jackknife+ with ``cv=LeaveOneOut()``), the interval at
    ``x`` is, for the absolute score and with ``alpha = 1 - confidence_level``::

        lower = the floor(alpha (n + 1))-th smallest of {mu_{-k(i)}(x) - R_i : i = 1..n}
        upper = the ceil((1 - alpha)(n + 1))-th smallest of {mu_{-k(i)}(x) + R_i : i = 1..n}

    (``-inf`` / ``+inf`` when ``n`` is too small for the rank to exist). For any score, the
    same rule is applied to the bounds of the interval that calibration point ``i``'s score
    gives around its own out-of-fold model at ``x``:
    ``conformity_score.intervals(R_i, parts of mu_{-k(i)} at x)``. For ``"normalized"`` these
    are ``m_{-k}(x) -/+ R_i sigma_{-k}(x)`` (mean and spread model both fitted without fold
    ``k``), for ``"cqr"`` ``[lo_{-k}(x) - R_i, hi_{-k}(x) + R_i]`` with the fold's quantile
    pair. A label ``y`` lies outside the CV+ set when it lies outside at least
    ``ceil((1 - alpha)(n + 1))`` of these ``n`` intervals; the returned interval contains that
    set (it is its convex hull for the absolute score).

    With ``method="minmax"`` (CV-minmax / jackknife-minmax), ``q`` is the split-conformal
    quantile of the ``R_i`` and the interval is the union over the fold models of
    ``conformity_score.intervals(q, parts of mu_{-k} at x)``: wider, but covering with
    probability at least ``1 - alpha``.

    **Guarantee.** For exchangeable data, CV+ and jackknife+ cover with probability at least
    ``1 - 2 alpha`` for any model (Barber et al. 2021, Theorem 1; K-fold CV+ with folds of
    equal size at least ``1 - 2 alpha - min{2(1 - 1/K) / (n/K + 1), (1 - K/n) / (K + 1)}``,
    their Theorem 4), and minmax with
    probability at least ``1 - alpha``. The ``2 alpha`` is a worst case for adversarially
    unstable models: for ordinary, stable models the empirical coverage is ``~ 1 - alpha``
    (see the tests and the benchmark). Jackknife+-after-bootstrap (``cv="bootstrap"``)
    carries the ``1 - 2 alpha`` guarantee when the number of resamples is itself drawn at
    random (Kim et al. 2020); with a fixed ``n_resamplings`` it holds approximately.

    Parameters
    ----------
    estimator : regressor, or pair of regressors for CQR, default=None
        As in :class:`~sklearn_conformal.SplitConformalRegressor` (``None`` means
        ``LinearRegression()``, or histogram gradient boosting with the quantile loss for
        ``"cqr"``). It is cloned and fitted once per fold. Pre-trained
        (``FrozenEstimator``) models are refused: cross-conformal prediction refits.
    confidence_level : float in (0, 1), default=0.9
        Target coverage ``1 - alpha`` (the guarantee is ``1 - 2 alpha`` for ``"plus"``).
    conformity_score : {"absolute", "normalized", "cqr"} or BaseRegressionScore, \
            default="absolute"
        Any one-part score of the protocol
        (:class:`~sklearn_conformal.conformity_scores.BaseRegressionScore`); the models fitted
        per fold follow its ``predictions``. Multi-part scores (``CQRScore(symmetric=False)``)
        are refused. The score's ``threshold`` is not used: the ranks above are.
    method : {"plus", "minmax"}, default="plus"
        ``"plus"``: CV+ / jackknife+. ``"minmax"``: CV-minmax / jackknife-minmax.
    cv : int, cross-validation generator, iterable or "bootstrap", default=5
        An int is the number of folds of a shuffled ``KFold`` (seeded by ``random_state``);
        any scikit-learn splitter works, with ``groups`` passed to ``fit`` for group splitters
        (``GroupKFold``) and ``LeaveOneOut()`` for the jackknife+. The splitter's test sets
        must cover every sample (a partition, for the CV+ guarantee); a sample in several test
        sets is scored with the mean of the models that did not see it.
        ``"bootstrap"``: jackknife+-after-bootstrap (Kim et al. 2020), ``n_resamplings`` models
        fitted on bootstrap resamples of size ``n``; sample ``i`` is scored with the mean of
        the models whose resample left it out, and samples that no resample left out are not
        used for calibration.
    n_resamplings : int, default=30
        Number of bootstrap resamples for ``cv="bootstrap"`` (ignored otherwise).
    scale_estimator : regressor, default=None
        ``"normalized"`` only: the spread model, fitted per fold on the 5-fold out-of-fold
        absolute residuals of the fold's training data (``None``: a clone of the point
        regressor); floored as in :class:`~sklearn_conformal.SplitConformalRegressor`.
    n_jobs : int, default=None
        Folds fitted in parallel with ``joblib`` (``sklearn.utils.parallel``), so
        ``joblib.parallel_backend`` distributes them. Results do not depend on ``n_jobs``.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle of ``cv=int``, the bootstrap resamples and the default CQR models.
        Estimators you pass are used with their own ``random_state``.

    Attributes
    ----------
    estimators_ : list of regressors (or of (lower, upper) pairs for CQR)
        The model fitted on each fold's training part.
    scale_estimators_ : list of regressors
        The spread model of each fold (``"normalized"`` only).
    folds_ : list of (train, test) index arrays
        The splits the models were fitted on.
    oof_weights_ : ndarray of shape (n_samples, n_models)
        Weight of model ``k`` in sample ``i``'s out-of-fold prediction (one-hot for a
        partition; a mean over the models that left ``i`` out otherwise).
    calibration_mask_ : ndarray of bool, shape (n_samples,)
        Samples with an out-of-fold prediction (all of them except for the bootstrap).
    conformity_scores_ : ndarray of shape (n_calibration,)
        ``R_i`` of the calibrating samples.
    conformity_score_ : BaseRegressionScore
    n_features_in_ : int

    Notes
    -----
    ``predict`` is the mean of the fold models' predictions (the midpoint of the mean
    quantile pair for CQR): unlike a refit on all data, it costs no extra fit and averages
    the models the intervals are built around. MAPIE's default
    ``aggregate_point_predictions="mean"`` weights each fold model by the size of its test
    fold instead; the two agree when the folds have equal sizes. ``predict_interval``
    processes test rows in chunks, so the ``(n_test, n_train)``
    matrix of candidate bounds is never held at once.

    Against MAPIE 1.6 (``mapie.regression.CrossConformalRegressor``) on the same folds the
    intervals are identical, except where ``(1 - alpha)(n + 1)`` is an integer and MAPIE's
    floating-point arithmetic rounds the rank of the lower bound up: with ``n = 59`` and
    ``confidence_level=0.95``, MAPIE computes the lower bound's level as
    ``(1 - 2 alpha) + alpha = 0.9500000000000001`` and ``ceil(60 * 0.9500000000000001) = 58``,
    one rank above the exact ``60 * 0.95 = 57`` that the theorem needs, so its lower bound is
    the next order statistic down (its upper bound is ours). Ours uses the exact rank, the one
    the split estimators use.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal import CrossConformalRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = X[:, 0] + rng.normal(size=200)
    >>> reg = CrossConformalRegressor(cv=10, random_state=0).fit(X, y)
    >>> reg.predict_interval(X[:1]).shape
    (1, 2)
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"]), tuple, None],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "conformity_score": [
            StrOptions(set(REGRESSION_SCORES)),
            HasMethods(["conformity_scores", "intervals"]),
        ],
        "method": [StrOptions({"plus", "minmax"})],
        "cv": [Interval(Integral, 2, None, closed="left"), "cv_object", StrOptions({"bootstrap"})],
        "n_resamplings": [Interval(Integral, 2, None, closed="left")],
        "scale_estimator": [HasMethods(["fit", "predict"]), None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        confidence_level=0.9,
        conformity_score="absolute",
        method="plus",
        cv=5,
        n_resamplings=30,
        scale_estimator=None,
        n_jobs=None,
        random_state=None,
    ):
        self.estimator = estimator
        self.confidence_level = confidence_level
        self.conformity_score = conformity_score
        self.method = method
        self.cv = cv
        self.n_resamplings = n_resamplings
        self.scale_estimator = scale_estimator
        self.n_jobs = n_jobs
        self.random_state = random_state

    # the parameters these read (estimator, conformity_score, scale_estimator,
    # confidence_level) mean the same as in the split regressor
    _needs = ScoreModelsMixin._needs
    _wrapped_models = ScoreModelsMixin._wrapped_models
    _routing_roles = ScoreModelsMixin._routing_roles
    _models = ScoreModelsMixin._models
    _validate = SplitConformalRegressor._validate
    _models_router = SplitConformalRegressor._models_router

    def get_metadata_routing(self):
        """Routing of metadata: ``fit`` metadata goes to the wrapped models' ``fit``.

        The roles are those of :class:`~sklearn_conformal.SplitConformalRegressor`
        (``estimator``, ``lower_estimator`` / ``upper_estimator``, ``scale_estimator``);
        ``groups`` goes to ``cv``.

        Returns
        -------
        routing : MetadataRouter
        """
        return self._models_router()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        models = self._wrapped_models()
        tags.input_tags.sparse = wrapped_input_tag(models, "sparse")
        tags.input_tags.allow_nan = wrapped_allows_nan(models)
        return tags

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None, **fit_params):
        """Fit one model per fold and score every sample with the model that did not see it.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group splitter in ``cv`` (e.g. ``GroupKFold``): samples of a
            group are never split between a model's training and calibration data.
        **fit_params : dict
            Metadata for the wrapped models' ``fit`` (e.g. ``sample_weight``), routed as in
            :class:`~sklearn_conformal.SplitConformalRegressor`: per-sample arrays are indexed
            with each fold's training rows. Scores are never weighted.

        Returns
        -------
        self : object
        """
        X, y = self._validate(X, y, fitting=True)
        y = np.asarray(y, dtype=float)
        n = len(y)
        if n < 2:
            raise ValueError(
                "cross-conformal prediction fits models on some samples and scores the others; "
                f"it needs at least 2 samples, got n_samples={n}."
            )
        rng = check_random_state(self.random_state)
        self.conformity_score_ = check_regression_score(self.conformity_score)
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (n,):
                raise ValueError(
                    f"groups must hold one group per row of X ({n}), got shape {groups.shape}."
                )
        models = self._models()
        if any(is_frozen(model) for model in models) or is_frozen(self.scale_estimator):
            raise ValueError(
                "CrossConformalRegressor refits its estimator on every fold; a FrozenEstimator "
                "cannot be refitted. Use SplitConformalRegressor for pre-trained models."
            )
        self.folds_ = self._splits(X, y, groups, rng)
        roles = self._routing_roles()
        params = route_fit_params(self, fit_params, roles, n)
        # drawn after the folds, so seeding the default models leaves the folds unchanged
        models = self._models(default_seed=rng.randint(2**31 - 1))
        needs = self._needs()
        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_fold)(
                models,
                None if self.scale_estimator is None else self.scale_estimator,
                needs,
                X,
                y,
                train,
                test,
                {role: split_fit_params(X, values, train) for role, values in params.items()},
            )
            for train, test in self.folds_
        )
        self.estimators_ = [fold["models"] for fold in fitted]
        if "scale" in needs:
            self.scale_estimators_ = [fold["scale"] for fold in fitted]
            self._scale_floors = [fold["floor"] for fold in fitted]

        n_models = len(self.folds_)
        left_out = np.zeros((n, n_models), dtype=bool)
        for k, (_, test) in enumerate(self.folds_):
            left_out[test, k] = True
        counts = left_out.sum(axis=1)
        if np.any(counts == 0) and not self._bootstrap():
            raise ValueError(
                f"cv={self.cv!r} leaves {int(np.sum(counts == 0))} sample(s) out of every test "
                "set; cross-conformal prediction needs each sample to be predicted by a model "
                "that did not see it (use KFold, GroupKFold, LeaveOneOut, ...)."
            )
        self.calibration_mask_ = counts > 0
        self.oof_weights_ = left_out / np.maximum(counts, 1)[:, None]

        # out-of-fold parts at the training rows: each model predicts the rows it left out
        oof_parts = {}
        for k, (_, test) in enumerate(self.folds_):
            parts = self._fold_parts(k, _safe_indexing(X, test))
            for key, values in parts.items():
                if key == "X":
                    continue
                column = oof_parts.setdefault(key, np.zeros((n, n_models)))
                column[test, k] = values
        cal = np.flatnonzero(self.calibration_mask_)
        weights = self.oof_weights_[cal]
        aggregated = {key: (values[cal] * weights).sum(axis=1) for key, values in oof_parts.items()}
        aggregated["X"] = _safe_indexing(X, cal)
        scores = self.conformity_score_.conformity_scores(y[cal], aggregated)
        scores = np.asarray(scores, dtype=float)
        if scores.shape != (len(cal),):
            raise ValueError(
                f"conformity_score={self.conformity_score!r} gives calibration scores of shape "
                f"{scores.shape}; CrossConformalRegressor supports one-part scores only "
                f"(expected ({len(cal)},)), e.g. not CQRScore(symmetric=False)."
            )
        if np.isnan(scores).any():
            raise ValueError(
                f"{type(self.conformity_score_).__name__} returned NaN calibration scores; "
                "scores must be numbers (+inf is allowed)."
            )
        self.conformity_scores_ = scores
        level = check_confidence_level(self.confidence_level)
        if conformal_rank(len(scores), level) > len(scores):
            warn_small_calibration(len(scores), level, where="the out-of-fold calibration")
        return self

    def _bootstrap(self):
        return isinstance(self.cv, str) and self.cv == "bootstrap"

    def _splits(self, X, y, groups, rng):
        n = len(y)
        if self._bootstrap():
            splits = []
            for _ in range(self.n_resamplings):
                train = rng.randint(n, size=n)
                test = np.setdiff1d(np.arange(n), train)
                splits.append((train, test))
            return splits
        if isinstance(self.cv, Integral):
            if n < self.cv:
                raise ValueError(
                    f"cv={self.cv} folds need at least {self.cv} samples, got n_samples={n}."
                )
            from sklearn.model_selection import KFold

            cv = KFold(self.cv, shuffle=True, random_state=rng.randint(2**31 - 1))
        else:
            cv = check_cv(self.cv)
        splits = [
            (np.asarray(train), np.asarray(test)) for train, test in cv.split(X, y, groups)
        ]
        if not splits:
            raise ValueError(f"cv={self.cv!r} produced no splits.")
        return splits

    def _fold_parts(self, k, X):
        """The score's parts of fold model ``k`` at rows ``X``."""
        needs = self._needs()
        parts = {"X": X}
        model = self.estimators_[k]
        if "bounds" in needs:
            lower_model, upper_model = model
            parts["lower"] = np.asarray(lower_model.predict(X), dtype=float)
            parts["upper"] = np.asarray(upper_model.predict(X), dtype=float)
            return parts
        parts["center"] = np.asarray(model.predict(X), dtype=float)
        if "scale" in needs:
            scale = np.asarray(self.scale_estimators_[k].predict(X), dtype=float)
            floor = max(self._scale_floors[k], np.finfo(float).tiny)
            parts["scale"] = np.maximum(scale, floor)
        return parts

    def _test_parts(self, X):
        """Per fold model, its parts at ``X``: dict key -> (n_rows, n_models) (plus "X")."""
        per_model = [self._fold_parts(k, X) for k in range(len(self.estimators_))]
        stacked = {
            key: np.column_stack([parts[key] for parts in per_model])
            for key in per_model[0]
            if key != "X"
        }
        return stacked

    def predict(self, X):
        """Mean of the fold models' predictions (midpoint of the mean quantile pair for CQR).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._validate(X)
        parts = self._test_parts(X)
        if "center" in parts:
            return parts["center"].mean(axis=1)
        return (parts["lower"].mean(axis=1) + parts["upper"].mean(axis=1)) / 2.0

    def predict_interval(self, X, confidence_level=None):
        """CV+ / jackknife+ (or minmax) prediction intervals.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float in (0, 1) or sequence of such floats, default=None
            Overrides the fitted level without refitting (for CQR the quantile models stay
            those trained for the fitted level). A sequence gives the intervals at each of its
            levels, stacked on a last axis.

        Returns
        -------
        intervals : ndarray of shape (n_samples, 2) or (n_samples, 2, n_levels)
            ``[lower, upper]`` per sample; ``-inf`` / ``+inf`` when the ``n`` calibration
            samples are too few for the level. After ``set_output(predict="pandas")``, a
            DataFrame with columns ``lower``, ``upper`` and the index of ``X``.
        """
        check_is_fitted(self)
        X_checked = self._validate(X)
        n_test = _num_samples(X_checked)
        parts = self._test_parts(X_checked)
        if self.method == "minmax":
            at_level = self._minmax_level(X_checked, parts, n_test)
        else:
            at_level = self._plus_level(X_checked, parts, n_test)
        return per_level(self, X, confidence_level, at_level, "interval")

    def _intervals(self, threshold, parts, n_rows):
        intervals = np.asarray(self.conformity_score_.intervals(threshold, parts), dtype=float)
        if intervals.shape != (n_rows, 2):
            raise ValueError(
                f"{type(self.conformity_score_).__name__}.intervals returned shape "
                f"{intervals.shape}; expected ({n_rows}, 2)."
            )
        return intervals

    def _minmax_level(self, X, parts, n_test):
        def at_level(level):
            q = conformal_quantile(self.conformity_scores_, level)
            lower = np.full(n_test, np.inf)
            upper = np.full(n_test, -np.inf)
            for k in range(len(self.estimators_)):
                fold = {key: values[:, k] for key, values in parts.items()}
                fold["X"] = X
                bounds = self._intervals(q, fold, n_test)
                lower = np.minimum(lower, bounds[:, 0])
                upper = np.maximum(upper, bounds[:, 1])
            return np.column_stack([lower, upper])

        return at_level

    def _plus_level(self, X, parts, n_test):
        scores = self.conformity_scores_
        n_cal = len(scores)
        # calibration samples sharing one out-of-fold weighting (one per fold for a
        # partition) share the test parts: compute them once per group
        weights = self.oof_weights_[self.calibration_mask_]
        unique, inverse = np.unique(weights, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        groups = [np.flatnonzero(inverse == g) for g in range(len(unique))]
        n_features = max(int(getattr(self, "n_features_in_", 1)), 1)
        rows = max(1, _CHUNK_ELEMENTS // (max(n_cal, 1) * (n_features + 4)))

        def group_parts(g, chunk):
            w = unique[g]
            used = np.flatnonzero(w)
            if len(used) == 1 and w[used[0]] == 1.0:
                return {key: values[chunk, used[0]] for key, values in parts.items()}
            return {key: values[chunk][:, used] @ w[used] for key, values in parts.items()}

        def at_level(level):
            k_rank = conformal_rank(n_cal, level)
            out = np.empty((n_test, 2))
            if k_rank > n_cal:
                out[:, 0], out[:, 1] = -np.inf, np.inf
                return out
            for start in range(0, n_test, rows):
                chunk = np.arange(start, min(start + rows, n_test))
                c = len(chunk)
                lows = np.empty((c, n_cal))
                highs = np.empty((c, n_cal))
                X_chunk = _safe_indexing(X, chunk)
                for g, members in enumerate(groups):
                    m = len(members)
                    base = group_parts(g, chunk)
                    repeat = np.repeat(np.arange(c), m)
                    rep = {key: values[repeat] for key, values in base.items()}
                    rep["X"] = _safe_indexing(X_chunk, repeat)
                    bounds = self._intervals(np.tile(scores[members], c), rep, c * m)
                    lows[:, members] = bounds[:, 0].reshape(c, m)
                    highs[:, members] = bounds[:, 1].reshape(c, m)
                # lower: the k-th largest low (= the floor(alpha (n+1))-th smallest),
                # upper: the k-th smallest high, k = ceil((1 - alpha)(n + 1))
                out[chunk, 0] = np.partition(lows, n_cal - k_rank, axis=1)[:, n_cal - k_rank]
                out[chunk, 1] = np.partition(highs, k_rank - 1, axis=1)[:, k_rank - 1]
            return out

        return at_level


def _fit_fold(models, scale_estimator, needs, X, y, train, test, params):
    """Fit the models of one fold on its training rows (runs in a joblib worker)."""
    X_train, y_train = _safe_indexing(X, train), y[train]
    if "lower_estimator" in params:
        model_params = [params["lower_estimator"], params["upper_estimator"]]
    else:
        model_params = [params["estimator"]] * len(models)
    fitted = [
        clone(model).fit(X_train, y_train, **model_params_)
        for model, model_params_ in zip(models, model_params)
    ]
    fold = {"models": fitted[0] if len(fitted) == 1 else tuple(fitted)}
    if "scale" in needs:
        if len(y_train) < _SCALE_FOLDS:
            raise ValueError(
                f"conformity_score='normalized' fits each fold's spread model on "
                f"{_SCALE_FOLDS}-fold out-of-fold residuals, which needs at least "
                f"{_SCALE_FOLDS} training samples per fold; got {len(y_train)}."
            )
        out_of_fold = cross_val_predict(
            clone(models[0]), X_train, y_train, cv=_SCALE_FOLDS, params=params["estimator"]
        )
        residuals = np.abs(y_train - out_of_fold)
        fold["floor"] = _SCALE_FLOOR * max(float(residuals.mean()), np.finfo(float).tiny)
        base = models[0] if scale_estimator is None else scale_estimator
        scale_params = params.get("scale_estimator", params["estimator"])
        fold["scale"] = clone(base).fit(X_train, residuals, **scale_params)
    return fold
