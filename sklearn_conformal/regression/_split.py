"""Split conformal intervals around any regressor: absolute, normalized and CQR scores."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping
from sklearn.utils._param_validation import HasMethods, Interval, RealNotInt, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from .._core import check_confidence_level
from ..calibrators import CalibrationData, check_calibrator
from ..conformity_scores import check_calibration_scores, check_regression_score
from ..conformity_scores._regression import REGRESSION_SCORES
from .._estimator_mixins import ConformalRegressorMixin
from .._output import per_level
from .._estimator_utils import (
    SPARSE_FORMATS,
    add_splitter_routing,
    calibration_split_groups,
    check_groups_use,
    is_frozen,
    keep_frame,
    pop_calibration_groups,
    pop_calibration_metadata,
    calibration_extras,
    route_fit_params,
    split_fit_params,
    split_indices,
    wrapped_allows_nan,
    wrapped_input_tag,
)
from ._score_models import ScoreModelsMixin


class SplitConformalRegressor(
    ScoreModelsMixin, ConformalRegressorMixin, RegressorMixin, BaseEstimator
):
    """Prediction intervals with guaranteed marginal coverage around any regressor.

    Parameters
    ----------
    estimator : regressor, or pair of regressors for CQR, default=None
        ``"absolute"`` / ``"normalized"``: the point regressor (``None`` means
        ``LinearRegression()``). ``"cqr"``: a quantile regressor that is cloned twice with its
        quantile parameter (``quantile`` or, for gradient boosting, ``alpha``) set to
        ``(1 - confidence_level) / 2`` and ``(1 + confidence_level) / 2``, or a tuple
        ``(lower, upper)`` of regressors used as they are (``None`` means histogram gradient
        boosting with the quantile loss). The two quantile predictions are ordered per sample,
        so crossing quantile regressors still give intervals with ``lower <= upper``. Wrap
        trained models in ``sklearn.frozen.FrozenEstimator`` to calibrate on all of ``fit``'s
        data. NaN in ``X`` is passed through when every wrapped model accepts it (its
        ``allow_nan`` tag, e.g. histogram gradient boosting).
    confidence_level : float in (0, 1), default=0.9
        Target coverage.
    conformity_score : {"absolute", "normalized", "cqr"} or BaseRegressionScore, \
            default="absolute"
        ``|y - m(x)|`` (constant width), ``|y - m(x)| / sigma(x)`` (width follows a fitted
        spread model) or conformalized quantile regression (Romano et al. 2019). The strings
        are shortcuts for :class:`~sklearn_conformal.conformity_scores.AbsoluteScore`,
        :class:`~sklearn_conformal.conformity_scores.NormalizedScore` and
        :class:`~sklearn_conformal.conformity_scores.CQRScore`; pass an object for the other
        scores (``CQRScore(symmetric=False)``, ``SpreadScore(spread)`` for a known spread) or a
        subclass of :class:`~sklearn_conformal.conformity_scores.BaseRegressionScore`. The
        models fitted follow the score's ``predictions``: a point model (``"center"``), a
        spread model (``"scale"``), a pair of quantile models (``"bounds"``).
    mode : "marginal" or BaseCalibrator, default="marginal"
        ``"marginal"``: one threshold, marginal coverage. A
        :class:`~sklearn_conformal.calibrators.MondrianCalibrator` gives one threshold per
        group of rows (a column, a callable of ``X`` or ``groups=`` metadata) and coverage
        within every group; any :class:`~sklearn_conformal.calibrators.BaseCalibrator` works.
    scale_estimator : regressor, default=None
        ``"normalized"`` (scores reading ``"scale"``) only: model of ``|y - m(x)|``, fitted on out-of-fold residuals of the
        training split; ``None`` means a clone of the point regressor. Its predictions are
        floored at ``1e-3`` times their mean absolute residual so widths never collapse.
    calibration_size : float in (0, 1) or int, default=0.3
        Fraction (or number) of samples held out for calibration.
    random_state : int, RandomState instance or None, default=None
        Controls the calibration split and seeds the default CQR quantile regressors (histogram
        gradient boosting draws a validation split for early stopping above 10,000 samples),
        so equal seeds give equal intervals. Estimators you pass are used with their own
        ``random_state``, as scikit-learn's model-selection wrappers do: set it for
        reproducible fits.

    Attributes
    ----------
    estimator_ : regressor or tuple of two regressors
        The fitted point regressor, or the (lower, upper) quantile regressors.
    scale_estimator_ : regressor
        The fitted spread model (``"normalized"`` only).
    conformity_scores_ : ndarray of shape (n_calibration,) (or (n_calibration, n_parts))
    conformity_score_ : BaseRegressionScore
        The score used (the built-in of a string, or a clone of the object given).
    calibrator_ : BaseCalibrator
        The fitted calibrator (the built-in of ``mode``, or a clone of the object given).
    confidence_level_ : float
        The level ``quantile_`` belongs to (``confidence_level`` at fit). Predictions follow
        ``confidence_level``, also when it is changed by ``set_params`` without refitting; the
        threshold is then recomputed from the stored calibration scores.
    quantile_ : float or ndarray
        Conformal threshold at ``confidence_level_`` (``inf`` with too little calibration
        data): the calibrator's ``thresholds_`` (one per group for Mondrian calibration, one
        per tail for ``CQRScore(symmetric=False)``).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal import SplitConformalRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 2)); y = X[:, 0] + rng.normal(size=500)
    >>> reg = SplitConformalRegressor(random_state=0).fit(X, y)
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
        "mode": [StrOptions({"marginal"}), HasMethods(["fit", "thresholds"])],
        "scale_estimator": [HasMethods(["fit", "predict"]), None],
        "calibration_size": [
            Interval(RealNotInt, 0, 1, closed="neither"),
            Interval(Integral, 1, None, closed="left"),
            HasMethods(["split"]),
        ],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        confidence_level=0.9,
        conformity_score="absolute",
        mode="marginal",
        scale_estimator=None,
        calibration_size=0.3,
        random_state=None,
    ):
        self.estimator = estimator
        self.confidence_level = confidence_level
        self.conformity_score = conformity_score
        self.mode = mode
        self.scale_estimator = scale_estimator
        self.calibration_size = calibration_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, **fit_params):
        """Fit on a training split, then calibrate on the held-out split.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        **fit_params : dict
            Metadata for the wrapped models' ``fit``, e.g. ``sample_weight``. Per-sample arrays
            (length ``n_samples``) are split like ``X``: the models get their training rows;
            other values are passed as they are. With metadata routing enabled
            (``sklearn.set_config(enable_metadata_routing=True)``), each model receives what it
            requested with ``set_fit_request``; the routing roles are ``estimator`` (the point
            model, or the quantile model cloned for both CQR quantiles),
            ``lower_estimator`` / ``upper_estimator`` (a CQR pair) and ``scale_estimator``
            (``"normalized"``; without one, the spread model and the out-of-fold point models
            get the ``estimator``'s metadata). Without routing, only ``sample_weight`` is
            accepted and every fitted model must take it in its ``fit`` (as in
            ``CalibratedClassifierCV``); otherwise an error asks to enable routing. Frozen
            models are not fitted and ignore them, as ``FrozenEstimator.fit`` does.

            ``sample_weight`` never weights calibration: the coverage guarantee is for
            exchangeable, unweighted calibration data, so it only shapes the fitted models.
            Weighted conformal prediction under distribution shift is a calibrator:
            ``mode=WeightedCalibrator()`` with ``X_target=`` (unlabeled target rows), or
            ``LabelShiftCalibrator``; metadata a calibrator names in its
            ``calibration_metadata`` goes to it, not to the models.

        Returns
        -------
        self : object
        """
        X, y = self._validate(X, y, fitting=True)
        y = np.asarray(y, dtype=float)
        rng = check_random_state(self.random_state)
        # strings select the built-ins here, never in __init__ (set_params and clone see them)
        self.conformity_score_ = check_regression_score(self.conformity_score)
        calibrator = check_calibrator(self.mode, allowed=("marginal",))
        fit_params, groups = pop_calibration_groups(calibrator, fit_params, len(y))
        fit_params, cal_metadata = pop_calibration_metadata(calibrator, fit_params)
        models = self._models()
        frozen = all(is_frozen(model) for model in models)
        if frozen and "scale" in self._needs() and self.scale_estimator is None:
            raise ValueError(
                "conformity_score='normalized' with a FrozenEstimator needs a frozen "
                "scale_estimator too (all of fit's data is calibration data)."
            )
        roles = self._routing_roles()
        check_groups_use(self, fit_params)
        split_groups = calibration_split_groups(self, fit_params, groups, len(y))
        params = route_fit_params(self, fit_params, roles, len(y), splitter_groups=True)
        cal_groups = groups
        X_train = None
        if frozen:
            X_cal, y_cal = X, y
            fitted = models
        else:
            train, cal = split_indices(
                y, self.calibration_size, rng.randint(2**31 - 1), X=X, groups=split_groups
            )
            X_train, X_cal = _safe_indexing(X, train), _safe_indexing(X, cal)
            y_train, y_cal = y[train], y[cal]
            cal_groups = None if groups is None else groups[cal]
            train_params = {
                role: split_fit_params(X, role_params, train)
                for role, role_params in params.items()
            }
            # drawn after the split seed, so seeding the defaults leaves the split unchanged
            fitted = self._fit_models(
                X_train, y_train, train_params, roles, default_seed=rng.randint(2**31 - 1)
            )
        self.estimator_ = fitted[0] if len(fitted) == 1 else tuple(fitted)
        if "scale" in self._needs():
            if frozen:
                self.scale_estimator_, self._scale_floor = self.scale_estimator, 0.0
            else:
                self.scale_estimator_ = self._fit_scale(
                    X_train,
                    y_train,
                    train_params["estimator"],
                    train_params.get("scale_estimator", train_params["estimator"]),
                )
        self.conformity_scores_ = check_calibration_scores(
            self.conformity_score_.conformity_scores(y_cal, self._predictions(X_cal)),
            len(y_cal),
            self.conformity_score_,
            "conformity_scores",
            parts=True,
        )
        # the level the stored threshold belongs to; predictions follow self.confidence_level
        # (also after set_params without refitting) and recompute the threshold when it differs
        self.confidence_level_ = check_confidence_level(self.confidence_level)
        self.calibrator_ = calibrator.fit(
            CalibrationData(
                scores=self.conformity_scores_,
                confidence_level=self.confidence_level_,
                threshold=self.conformity_score_.threshold,
                X=X_cal,
                groups=cal_groups,
                random_state=rng,
                score=self.conformity_score_,
                **calibration_extras(cal_metadata, X_train=X_train),
            )
        )
        # a user calibrator need not expose its thresholds (they may depend on the test rows)
        self.quantile_ = getattr(self.calibrator_, "thresholds_", None)
        return self

    def predict(self, X):
        """Point prediction (the centre of the interval for CQR).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._validate(X)
        parts = self._predictions(X)
        if "center" not in parts:
            return (parts["lower"] + parts["upper"]) / 2.0
        return parts["center"]

    def predict_interval(self, X, confidence_level=None, groups=None):
        """Conformal prediction intervals.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float in (0, 1) or sequence of such floats, default=None
            Overrides the fitted level without refitting (for CQR the quantile regressors
            stay those trained for the fitted level; only the correction changes). A
            sequence gives the intervals at each of its levels, stacked on a last axis.
        groups : array-like of shape (n_samples,), default=None
            The rows' groups, for a ``MondrianCalibrator(groups=None)`` calibrated on
            ``groups=`` metadata.

        Returns
        -------
        intervals : ndarray of shape (n_samples, 2) or (n_samples, 2, n_levels)
            ``[lower, upper]`` per sample, ``lower <= upper`` (a CQR set that the threshold
            empties is returned as the point interval at the quantile midpoint);
            ``intervals[:, :, j]`` is the call at ``confidence_level[j]`` alone. After
            ``set_output(predict="pandas")``, a DataFrame with columns ``lower``, ``upper``
            (MultiIndex ``(confidence_level, bound)`` for several levels) and the index of
            ``X``.
        """
        check_is_fitted(self)
        X_checked = self._validate(X)
        parts = self._predictions(X_checked)
        n = _num_samples(X_checked)

        def at_level(level):
            thresholds = self.calibrator_.thresholds(X_checked, level, groups=groups)
            intervals = np.asarray(self.conformity_score_.intervals(thresholds, parts), dtype=float)
            if intervals.shape != (n, 2):
                raise ValueError(
                    f"{type(self.conformity_score_).__name__}.intervals returned shape "
                    f"{intervals.shape}; expected ({n}, 2)."
                )
            return intervals

        return per_level(self, X, confidence_level, at_level, "interval")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        models = self._wrapped_models()
        tags.input_tags.sparse = wrapped_input_tag(models, "sparse")
        tags.input_tags.allow_nan = wrapped_allows_nan(models)
        return tags

    def get_metadata_routing(self):
        """Routing of metadata: ``fit`` metadata goes to the wrapped models' ``fit``.

        The roles are ``estimator`` (the point model, or the quantile model cloned for both
        CQR quantiles), ``lower_estimator`` and ``upper_estimator`` (a CQR pair), and
        ``scale_estimator`` (``"normalized"`` with a spread model given).

        Returns
        -------
        routing : MetadataRouter
        """
        return add_splitter_routing(self._models_router(), self.calibration_size)

    def _models_router(self):
        """The router of the wrapped models' ``fit`` metadata, by role."""
        router = MetadataRouter(owner=self).add_self_request(self)
        for role, model in self._routing_roles().items():
            router.add(
                **{role: model},
                method_mapping=MethodMapping().add(caller="fit", callee="fit"),
            )
        return router

    def _validate(self, X, y=None, fitting=False):
        """Validated ``(X, y)`` in ``fit`` (``fitting=True``), ``X`` alone at prediction time.

        NaN in ``X`` passes when every wrapped model accepts it (their ``allow_nan`` tags);
        otherwise the error names the models that do not, rather than recommending a
        NaN-capable model that may be wrapped already.
        """
        models = self._wrapped_models()
        allow_nan = wrapped_allows_nan(models)
        options = {
            "accept_sparse": SPARSE_FORMATS,
            "dtype": None,
            "ensure_all_finite": "allow-nan" if allow_nan else True,
        }
        try:
            if fitting:
                checked = validate_data(self, X, y, y_numeric=True, **options)
            else:
                checked = validate_data(self, X, reset=False, **options)
        except ValueError as exc:
            if allow_nan or "Input X contains NaN" not in str(exc):
                raise
            refusing = [
                type(model).__name__ for model in models if not wrapped_allows_nan([model])
            ]
            raise ValueError(
                f"X contains NaN, which the wrapped model(s) {', '.join(refusing)} do not "
                "accept (their allow_nan tag is False). Impute the missing values (e.g. wrap a "
                "Pipeline(SimpleImputer(), model)) or wrap models that handle NaN, such as "
                "HistGradientBoostingRegressor, for every role (estimator and scale_estimator)."
            ) from exc
        if fitting:
            X_checked, y = checked
            return keep_frame(X, X_checked), y
        return keep_frame(X, checked)
