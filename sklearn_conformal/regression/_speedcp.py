"""SpeedCP: exact RKHS conditional conformal prediction intervals (numba path solvers)."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, RealNotInt, StrOptions
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping
from sklearn.utils.validation import check_is_fitted, validate_data

from .._estimator_mixins import ConformalRegressorMixin
from .._output import per_level
from .._estimator_utils import (
    SPARSE_FORMATS,
    add_splitter_routing,
    check_groups_use,
    is_frozen,
    keep_frame,
    resolve_confidence_level,
    route_fit_params,
    split_fit_params,
    split_indices,
    splitter_params,
    wrapped_allows_nan,
    wrapped_input_tag,
)
from .._kqr import KERNELS
from .._speedcp_common import SpeedCPMixin, is_transformer
from ..conformity_scores import check_calibration_scores, check_regression_score
from ..conformity_scores._regression import (
    REGRESSION_SCORES,
    AbsoluteScore,
    NormalizedScore,
    SpreadScore,
)
from ._score_models import ScoreModelsMixin


class SpeedCPRegressor(
    SpeedCPMixin, ScoreModelsMixin, ConformalRegressorMixin, RegressorMixin, BaseEstimator
):
    """Conditional conformal intervals over an RKHS function class, computed exactly.

    Calibrates the conformity scores ``S`` (by default ``|y - f(x)|`` of a point regressor
    ``f``; any one-part score of :mod:`sklearn_conformal.conformity_scores`) with the kernel
    quantile regression of Gibbs, Cherian & Candes (2025) over the class
    ``{Phi(x)'eta + h(x), h in H}`` (RKHS ``H`` of ``kernel``): for each test point the cutoff
    ``S*(x)`` is the supremum of the imputed scores whose dual weight stays below ``U``, found
    by the exact piecewise-linear path in that score (SpeedCP, Jung et al. 2025). The interval
    is the score's ``{y : s(x, y) <= S*(x)}``: ``[f(x) - S*, f(x) + S*]`` for the absolute
    score, ``f(x) -/+ S* sigma(x)`` for ``"normalized"``, ``[lo(x) - S*, hi(x) + S*]`` for
    ``"cqr"``.
    With ``randomized=True`` (``U ~ Unif[-alpha, 1 - alpha]``), coverage is exactly
    ``confidence_level`` under every covariate shift ``dP'/dP`` in the function class, in
    particular within each group of a one-hot ``phi``; the deterministic rule (``U = 1 - alpha``)
    over-covers slightly.

    Unlike the reference implementation, which re-solves a box QP after every event and
    approximates the stop, the path here is exact: breakpoints follow direction-aware events,
    the elbow system is maintained by bordered inverse updates, and the cutoff is interpolated
    inside the final segment, so it matches a dense QP solver to solver precision.

    Parameters
    ----------
    estimator : regressor, default=None
        Point regressor ``f`` (``None`` means ``LinearRegression()``). Wrap a trained model in
        ``sklearn.frozen.FrozenEstimator`` to calibrate on all of ``fit``'s data. It receives
        ``X`` as passed: a DataFrame stays a DataFrame, a sparse matrix stays sparse (CSR/CSC)
        when the estimator (and the embedding, if any) accept sparse input, and NaN passes when
        they accept NaN (see ``embedding``).
    conformity_score : {"absolute", "normalized", "cqr"} or BaseRegressionScore, \
            default="absolute"
        The score whose cutoff is conditioned, with the models it reads fitted as
        :class:`SplitConformalRegressor` fits them: ``|y - f(x)|``, ``|y - f(x)| / sigma(x)``
        (a spread model on out-of-fold residuals, see ``scale_estimator``) or CQR (``estimator``
        a quantile regressor cloned at ``(1 -/+ confidence_level) / 2``, or a ``(lower,
        upper)`` pair; ``None`` means histogram gradient boosting with the quantile loss), or a
        one-part score object (a subclass of
        :class:`~sklearn_conformal.conformity_scores.BaseRegressionScore`). Multi-part scores
        (``CQRScore(symmetric=False)``) are refused: the cutoff conditions one score per row.
    scale_estimator : regressor, default=None
        ``"normalized"`` only: model of ``|y - f(x)|`` (``None``: a clone of the point
        regressor), as in :class:`SplitConformalRegressor`.
    embedding : transformer, default=None
        Maps ``X`` to the kernel's input space (e.g. ``PCA(3)``); fitted on the training part
        only (on the calibration ``X`` when the estimator is frozen) and applied to calibration
        and test points alike. ``None`` uses ``X`` as is. The point
        regressor always receives ``X`` as passed (a DataFrame stays a DataFrame, e.g. for a
        ``ColumnTransformer`` pipeline); only the kernel needs finite numbers, so ``X`` with
        NaN or non-numeric columns needs an embedding that maps it to finite numbers (e.g. a
        ``ColumnTransformer`` with ``OneHotEncoder`` and ``SimpleImputer``) and a point
        regressor that accepts it.
    phi : "intercept", int, str or callable, default="intercept"
        Finite-dimensional part ``Phi(x)`` of the function class: an intercept (marginal
        coverage plus the kernel part), a column of ``X`` holding group labels, by index or, for
        a DataFrame, by name (e.g. ``phi="season"``; intercept + one-hot of the groups seen in
        calibration: coverage holds within every group), a callable
        ``X -> array (n_samples, d)`` (given ``X`` as passed), or a transformer (e.g. a
        ``ColumnTransformer`` with a ``OneHotEncoder``) fitted like ``embedding``. The string
        ``"intercept"`` always means the intercept, never a column of that name.
    kernel : {"rbf", "laplacian", "matern32", "matern52", "imq"}, default="rbf"
        Kernel on the embedding; every choice has ``k(x, x) = 1``.
    gamma : float > 0 or "auto", default="auto"
        Kernel inverse bandwidth; ``"auto"`` picks it by ``n_folds``-fold cross-validation of
        the pinball loss over exact lambda paths (minimum over each path), on ``gamma_grid``.
    lambda_ : float > 0, "auto" or "cv", default="auto"
        RKHS penalty ``lam`` in ``sum rho(S - g) + lam/2 ||h||^2``; ``"auto"`` minimises the
        Schwarz information criterion over all breakpoints of the exact lambda path. A fixed
        value carries the units of ``1 / S``: the loss grows like the scores and the penalty
        like their square, so a target rescaled by ``c`` needs ``lambda_ / c`` for the same
        fit (``"auto"`` is scale-free). ``"cv"``: the breakpoint of least validation loss in
        the cross-validation of ``gamma`` (the same folds; with a fixed ``gamma``, on that
        one value), the geometric mean over folds scaled from a fold's training rows to all
        calibration rows; SIC when there are too few rows to cross-validate. It guards
        against SIC's occasional near-interpolating choice on discrete-valued scores
        (classification, see :ref:`speedcp`).
    gamma_grid : array-like, default=None
        Candidates for ``gamma="auto"``; default 30 log-spaced values in
        ``[0.1, 100] / median squared distance``.
    n_folds : int, default=5
        Folds of the gamma cross-validation.
    gamma_patience : int >= 1 or None, default=3
        ``gamma="auto"`` evaluates the candidates in increasing order and stops once the
        cross-validated loss has exceeded its running minimum at ``gamma_patience``
        consecutive candidates; ``None`` evaluates the whole grid. Larger ``gamma`` past the
        minimum give near-interpolating kernels with the longest paths: on friedman1 (5
        features, 1,500 calibration points) the full grid cross-validation took 340 s on a
        busy 2-core machine and the early stop 21 s, selecting the same ``gamma``. Unevaluated
        candidates have a NaN ``cv_loss_``.
    gamma_cv_size : int >= 10 or None, default=2000
        With more calibration rows than this, ``gamma="auto"`` cross-validates on a random
        subsample of this many rows (drawn from ``random_state``), which also sets the scale
        of the default grid (the median heuristic, ``O(rows^2)`` memory); the lambda path and
        the cutoffs always use every row. A path costs about ``n^2`` per breakpoint and has
        ``O(n)`` breakpoints, so tuning on all of 20,000 rows would take hours; ``None`` tunes
        on every row.
    n_components : int or None, default=None
        ``None``: the exact kernel (an ``n_cal x n_cal`` matrix: time and memory grow as
        ``n_cal^2``). An int ``r``: the Nystrom kernel of ``r`` landmarks, ``k(x, C) K_CC^+
        k(C, x')``, whose paths are solved exactly from the ``n_cal x r`` features (memory and
        time per path step ``O(n_cal r)``): what makes ``n_cal`` of 100,000 practical. The
        guarantee holds for the function class of that kernel, as for any kernel. The landmarks
        are drawn (``random_state``) from the training rows; with a frozen model, ``r``
        calibration rows are set aside as landmarks and do not calibrate. ``gamma="auto"`` is
        cross-validated with the exact kernel (on ``gamma_cv_size`` rows).
    randomized : bool, default=True
        Randomised cutoff (exact coverage) or the deterministic one (``U = 1 - alpha``). A test
        row's ``U`` is a keyed hash of its content and a seed drawn at fit, so a row gets the
        same interval however rows are batched, ordered or sent one at a time.
    confidence_level : float in (0, 1), default=0.9
        Target coverage.
    calibration_size : float in (0, 1), int or splitter, default=0.3
        Fraction (or number) of samples held out for calibration (ignored for a frozen
        estimator), or a scikit-learn splitter with ``split(X, y, groups)`` (e.g.
        ``GroupShuffleSplit(n_splits=1, test_size=0.3)``, ``PredefinedSplit``) whose first
        ``(train, test)`` split gives the training and calibration rows; ``groups`` passed to
        ``fit`` reach its ``split``. The parts must be disjoint and non-empty. ``fit`` and each ``predict_cutoff``/``predict_interval`` call hold one
        ``n_cal x n_cal`` float64 kernel matrix (``8 n_cal^2`` bytes: 3.2 GB at 20,000) while
        they run; none is kept between calls. When it would not fit in the available memory
        they raise :class:`~sklearn_conformal.exceptions.InsufficientMemoryError` before
        allocating it.
    lambda_min_ratio : float, default=1e-3
        The lambda paths end at this fraction of their first breakpoint.
    max_steps : int, default=None
        Step cap of each path (``20 n + 100`` by default); a lambda path that hits it is
        reported as truncated (``path_truncated_``), an S-path raises ``RuntimeError``.
    n_jobs : int, default=None
        Threads running the GIL-free numba solvers (cross-validation paths and S-paths);
        ``None`` uses every core. With more than 2048 test points and ``n_jobs`` not in
        ``(None, 1)``, chunks of test points are tasks of ``sklearn.utils.parallel.Parallel``,
        and so are the cross-validation paths of ``fit``: a joblib backend set by the caller
        (``joblib.parallel_backend("dask")`` with a ``dask.distributed`` client, or Ray)
        spreads them over a cluster, each task single-threaded in its worker; results are
        identical either way (see :ref:`dask`).
    keep_kernel : "auto" or bool, default="auto"
        Keep the ``n_cal x n_cal`` kernel matrix and the solver prepared at the fitted level
        after ``fit`` (``8 n_cal^2`` bytes held for the estimator's lifetime), so that each
        prediction call at the fitted level skips their ``O(n_cal^2)`` rebuild: what serving
        one row at a time needs. ``"auto"`` keeps them while they take at most 256 MiB
        (``n_cal <= 5792``); ``False`` frees them after ``fit`` (predict rebuilds them for the
        duration of each call). Results are identical either way and prediction never
        modifies the estimator. A pickle never contains the kernel; loading rebuilds it (when
        it fits in memory).
    random_state : int, RandomState instance or None, default=None
        Controls the calibration split, the cross-validation folds and ``U``.
    verbose : int, default=0
        ``0``: silent. ``>= 1``: progress bars over the ``n_gammas x n_folds`` paths of the
        gamma cross-validation (``fit``) and over the test points whose S-paths are run, in
        chunks of 2048 (``predict_cutoff`` / ``predict_interval``): tqdm if installed (e.g. with
        the ``notebook`` extra; a widget in Jupyter), else plain lines on stderr. Results do not
        depend on it.

    Attributes
    ----------
    estimator_ : regressor or tuple of two regressors
        The point regressor, or the (lower, upper) quantile regressors (CQR).
    scale_estimator_ : regressor
        The spread model (``"normalized"`` only).
    conformity_score_ : BaseRegressionScore
        The score used (the built-in of a string, or a clone of the object given).
    phi_ : transformer or None
        The fitted transformer ``phi`` (None for the other kinds).
    embedding_ : transformer or None
    gamma_ : float
        Kernel parameter in use.
    confidence_level_ : float
        The level of the fitted path (``confidence_level`` at fit). Predictions follow
        ``confidence_level``, also when it is changed by ``set_params`` without refitting;
        another level solves its own path.
    lam_ : float
        Penalty in use (the fixed ``lambda_`` or the SIC choice). Named ``lam_`` because the
        parameter already owns ``lambda_``.
    conformity_scores_ : ndarray of shape (n_calibration,)
    path_lambdas_, path_sic_, path_elbow_sizes_ : ndarray
        Breakpoints of the calibration lambda path at ``gamma_``, their SIC and elbow sizes.
    path_truncated_ : bool
    cv_loss_ : ndarray of shape (n_gammas,) or None
        Cross-validated pinball loss per candidate in ``gamma_grid_`` (``gamma="auto"``); NaN
        for candidates the early stop (``gamma_patience``) did not evaluate.
    gamma_cv_rows_ : ndarray of int or None
        The calibration rows the gamma cross-validation used (None: all of them; see
        ``gamma_cv_size``).
    gamma_grid_ : ndarray or None
    cv_lambdas_ : ndarray of shape (n_folds,) or None
        ``lambda_="cv"``: each fold's lambda of least validation loss at ``gamma_``.
    n_components_ : int
        Rank of the Nystrom kernel in use (``n_components`` set; at most ``n_components``).
    phi_categories_ : ndarray or None
        Group labels seen in calibration (``phi`` naming a column, by index or name).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_conformal import SpeedCPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-2, 2, size=(600, 1)); y = X[:, 0] + rng.normal(size=600) * np.abs(X[:, 0])
    >>> reg = SpeedCPRegressor(random_state=0).fit(X, y)
    >>> reg.predict_interval(X[:2]).shape
    (2, 2)
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict"]), tuple, None],
        "conformity_score": [
            StrOptions(set(REGRESSION_SCORES)),
            HasMethods(["conformity_scores", "intervals"]),
        ],
        "scale_estimator": [HasMethods(["fit", "predict"]), None],
        "embedding": [HasMethods(["fit", "transform"]), None],
        "phi": [
            str,
            Interval(Integral, None, None, closed="neither"),
            callable,
            HasMethods(["fit", "transform"]),
        ],
        "kernel": [StrOptions(set(KERNELS))],
        "gamma": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "lambda_": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto", "cv"})],
        "gamma_grid": ["array-like", None],
        "n_folds": [Interval(Integral, 2, None, closed="left")],
        "gamma_patience": [Interval(Integral, 1, None, closed="left"), None],
        "gamma_cv_size": [Interval(Integral, 10, None, closed="left"), None],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "randomized": ["boolean"],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "calibration_size": [
            Interval(RealNotInt, 0, 1, closed="neither"),
            Interval(Integral, 1, None, closed="left"),
            HasMethods(["split"]),
        ],
        "lambda_min_ratio": [Interval(Real, 0, 1, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
        "keep_kernel": [StrOptions({"auto"}), "boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        conformity_score="absolute",
        scale_estimator=None,
        embedding=None,
        phi="intercept",
        kernel="rbf",
        gamma="auto",
        lambda_="auto",
        gamma_grid=None,
        n_folds=5,
        gamma_patience=3,
        gamma_cv_size=2000,
        n_components=None,
        randomized=True,
        confidence_level=0.9,
        calibration_size=0.3,
        lambda_min_ratio=1e-3,
        max_steps=None,
        n_jobs=None,
        keep_kernel="auto",
        random_state=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.conformity_score = conformity_score
        self.scale_estimator = scale_estimator
        self.embedding = embedding
        self.phi = phi
        self.kernel = kernel
        self.gamma = gamma
        self.lambda_ = lambda_
        self.gamma_grid = gamma_grid
        self.n_folds = n_folds
        self.gamma_patience = gamma_patience
        self.gamma_cv_size = gamma_cv_size
        self.n_components = n_components
        self.randomized = randomized
        self.confidence_level = confidence_level
        self.calibration_size = calibration_size
        self.lambda_min_ratio = lambda_min_ratio
        self.max_steps = max_steps
        self.n_jobs = n_jobs
        self.keep_kernel = keep_kernel
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, **fit_params):
        """Fit the point regressor (training split), then tune and calibrate (calibration split).

        Parameters
        ----------
        X : array-like, sparse matrix or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        **fit_params : dict
            Metadata for ``estimator.fit``, routed as in :class:`SplitConformalRegressor`:
            per-sample arrays (e.g. ``sample_weight``) are split like ``X`` and the point model
            gets their training rows. With metadata routing enabled
            (``sklearn.set_config(enable_metadata_routing=True)``) the estimator (routing role
            ``estimator``) receives what it requested with ``set_fit_request``, and a splitter
            ``calibration_size`` what its ``split`` requests (group splitters: ``groups``).
            Without routing, ``sample_weight`` is accepted (the estimator must take it in its
            ``fit``) and ``groups`` goes to a splitter ``calibration_size``. A frozen
            estimator ignores them. The calibration (the kernel quantile regression) is never
            weighted.

        Returns
        -------
        self : object
        """
        # the point model and the embedding see X as passed (a DataFrame stays one, for column
        # transformers; a sparse matrix when they accept it); NaN is left to them (see _embed
        # for the kernel's own input)
        X_checked, y = validate_data(
            self, X, y, y_numeric=True, dtype=None, ensure_all_finite="allow-nan",
            accept_sparse=SPARSE_FORMATS if self._accepts_sparse() else False,
        )
        X = keep_frame(X, X_checked)
        y = np.asarray(y, dtype=float)
        rng = check_random_state(self.random_state)
        # strings select the built-ins here, never in __init__ (set_params and clone see them)
        self.conformity_score_ = score = check_regression_score(self.conformity_score)
        needs = self._needs()
        models = self._models()
        frozen = all(is_frozen(model) for model in models)
        if frozen and "scale" in needs and self.scale_estimator is None:
            raise ValueError(
                "conformity_score='normalized' with a FrozenEstimator needs a frozen "
                "scale_estimator too (all of fit's data is calibration data)."
            )
        roles = self._routing_roles()
        check_groups_use(self, fit_params)
        params = route_fit_params(self, fit_params, roles, len(y), splitter_groups=True)
        if frozen:
            X_train, X_cal, y_cal = None, X, y
            fitted = models
        else:
            groups = splitter_params(self, fit_params, len(y)).get("groups")
            train, cal = split_indices(
                y, self.calibration_size, rng.randint(2**31 - 1), X=X, groups=groups
            )
            X_train, X_cal = _safe_indexing(X, train), _safe_indexing(X, cal)
            y_train, y_cal = y[train], y[cal]
            train_params = {
                role: split_fit_params(X, role_params, train)
                for role, role_params in params.items()
            }
            # the default CQR quantile models' seed, drawn only for them (after the split
            # seed), so that the other scores' random draws are those of the absolute score
            default_seed = (
                rng.randint(2**31 - 1) if "bounds" in needs and self.estimator is None else None
            )
            fitted = self._fit_models(X_train, y_train, train_params, roles, default_seed)
        self.estimator_ = fitted[0] if len(fitted) == 1 else tuple(fitted)
        if "scale" in needs:
            if frozen:
                self.scale_estimator_, self._scale_floor = self.scale_estimator, 0.0
            else:
                self.scale_estimator_ = self._fit_scale(
                    X_train,
                    y_train,
                    train_params["estimator"],
                    train_params.get("scale_estimator", train_params["estimator"]),
                )
        self._fit_transformers(X_train, X_cal)
        cv_seed = rng.randint(2**31 - 1)
        self._u_seed = int(rng.randint(2**31 - 1))

        scores = check_calibration_scores(
            score.conformity_scores(y_cal, self._score_parts(X_cal)),
            len(y_cal), score, "conformity_scores", parts=True,
        )
        if scores.ndim != 1:
            raise ValueError(
                f"conformity_score={type(score).__name__}(...) has {scores.shape[1]} parts per "
                "sample (e.g. CQRScore(symmetric=False)); SpeedCPRegressor conditions one score "
                "per sample: pass a one-part score (e.g. conformity_score='cqr')."
            )
        if not np.all(np.isfinite(scores)):
            raise ValueError(
                f"{type(score).__name__}.conformity_scores returned "
                f"{int(np.sum(~np.isfinite(scores)))} infinite calibration score(s); the kernel "
                "quantile regression needs finite scores."
            )
        self._calibrate(X_cal, scores, cv_seed)
        return self

    # ------------------------------------------------------------------------------------
    def _accepts_sparse(self):
        """Whether sparse ``X`` may reach the models, the embedding and a transformer ``phi``
        (their ``sparse`` tags; the kernel densifies its input itself). Never raises."""
        return wrapped_input_tag(self._models_seeing_X(), "sparse")

    def _models_seeing_X(self):
        """The models, the embedding and a transformer ``phi``: what receives ``X`` as passed."""
        models = list(self._wrapped_models())
        if self.embedding is not None:
            models.append(self.embedding)
        if is_transformer(self.phi):
            models.append(self.phi)
        return models

    def _score_parts(self, X):
        """``X`` and the score's predictions, as 1-d float arrays."""
        parts = self._predictions(X)
        return {
            key: value if key == "X" else np.asarray(value, dtype=float).ravel()
            for key, value in parts.items()
        }

    # ------------------------------------------------------------------------------------
    def _check_X(self, X):
        X_checked = validate_data(
            self, X, reset=False, dtype=None, ensure_all_finite="allow-nan",
            accept_sparse=SPARSE_FORMATS if self._accepts_sparse() else False,
        )
        return keep_frame(X, X_checked)

    def predict(self, X):
        """Point prediction of the regressor (the midpoint of the quantile models for CQR).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._check_X(X)
        if "bounds" in self._needs():
            parts = self._score_parts(X)
            return (parts["lower"] + parts["upper"]) / 2.0
        return np.asarray(self.estimator_.predict(X), dtype=float).ravel()

    def predict_cutoff(self, X, confidence_level=None):
        """Score cutoffs ``S*(x)`` (for the absolute score the half-widths of the intervals,
        before clipping at 0).

        ``+inf`` where no finite cutoff exists: too few calibration points for the level, a
        group (``phi``) never seen in calibration, or a dual weight that never reaches ``U``.
        A negative value (possible with the randomised rule) means an empty set.
        """
        check_is_fitted(self)
        X_raw = X
        X = self._check_X(X)
        level = resolve_confidence_level(self, confidence_level)
        return self._cutoffs(X, X_raw, level)

    def predict_interval(self, X, confidence_level=None):
        """Conditional conformal intervals ``{y : s(x, y) <= S*(x)}`` of the score
        (``[f(x) - S*(x), f(x) + S*(x)]`` for the absolute score).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float in (0, 1) or sequence of such floats, default=None
            Overrides the fitted level (the lambda path is re-run at the new level with the
            fitted ``gamma_`` and ``lam_``, on every such call: predictions never modify the
            estimator, so calls at any levels may run concurrently). A sequence gives the
            intervals at each of its levels, stacked on a last axis.

        Returns
        -------
        intervals : ndarray of shape (n_samples, 2) or (n_samples, 2, n_levels)
            Infinite bounds where no finite cutoff exists (see :meth:`predict_cutoff`); a
            negative randomised cutoff (an empty set) is returned as the zero-width interval
            ``[f(x), f(x)]`` (for other scores, at the midpoint of the emptied interval).
            ``intervals[:, :, j]`` is the call at ``confidence_level[j]`` alone. After
            ``set_output(predict="pandas")``, a DataFrame with columns ``lower``, ``upper``
            (MultiIndex ``(confidence_level, bound)`` for several levels) and the index of
            ``X``.
        """
        check_is_fitted(self)
        parts = None

        def at_level(level):
            nonlocal parts
            cut = self.predict_cutoff(X, level)
            if parts is None:
                parts = self._score_parts(self._check_X(X))
            return _intervals(self.conformity_score_, cut, parts)

        return per_level(self, X, confidence_level, at_level, "interval")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN reaches the models, the embedding and a transformer phi; the kernel itself never
        # takes it
        tags.input_tags.allow_nan = self.embedding is not None and wrapped_allows_nan(
            self._models_seeing_X()
        )
        tags.input_tags.sparse = self._accepts_sparse()
        tags.non_deterministic = False
        return tags

    def get_metadata_routing(self):
        """Routing of metadata: ``fit`` metadata goes to ``estimator.fit`` (training rows), and
        to a splitter ``calibration_size``'s ``split`` (e.g. ``groups``).

        Returns
        -------
        routing : MetadataRouter
        """
        router = MetadataRouter(owner=self).add_self_request(self)
        for role, model in self._routing_roles().items():
            router.add(
                **{role: model},
                method_mapping=MethodMapping().add(caller="fit", callee="fit"),
            )
        return add_splitter_routing(router, self.calibration_size)


# scores that are never negative: a negative cutoff (possible with the randomised rule) is an
# empty set, returned as the zero-width interval at the centre
_NONNEGATIVE_SCORES = (AbsoluteScore, NormalizedScore, SpreadScore)


def _intervals(score, cut, parts):
    """The score's intervals at the per-row cutoffs ``cut``; an emptied set (lower above upper)
    becomes the zero-width interval at its midpoint."""
    if isinstance(score, _NONNEGATIVE_SCORES):
        cut = np.maximum(cut, 0.0)
    n = cut.shape[0]
    intervals = np.array(score.intervals(cut, parts), dtype=float)
    if intervals.shape != (n, 2):
        raise ValueError(
            f"{type(score).__name__}.intervals returned shape {intervals.shape}; expected "
            f"({n}, 2)."
        )
    empty = intervals[:, 0] > intervals[:, 1]
    if np.any(empty):
        middle = 0.5 * (intervals[empty, 0] + intervals[empty, 1])
        intervals[empty, 0] = middle
        intervals[empty, 1] = middle
    return intervals
