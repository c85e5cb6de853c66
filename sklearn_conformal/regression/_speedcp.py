"""SpeedCP: exact RKHS conditional conformal prediction intervals (numba path solvers)."""

import numbers
import os
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context, clone
from sklearn.linear_model import LinearRegression
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, RealNotInt, StrOptions
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping
from sklearn.utils.parallel import delayed
from sklearn.utils.validation import check_is_fitted, validate_data

from .._core import check_confidence_level, min_calibration_size, warn_small_calibration
from .._core._row_keys import keyed_uniforms, row_keys
from .._core._validation import SmallCalibrationWarning
from .._estimator_mixins import ConformalRegressorMixin
from .._output import per_level
from .._parallel import parallel, run_task
from .._progress import progress
from .._estimator_utils import (
    SPARSE_FORMATS,
    add_splitter_routing,
    check_groups_use,
    is_frozen,
    keep_frame,
    model_allows_nan,
    resolve_confidence_level,
    route_fit_params,
    split_fit_params,
    split_indices,
    splitter_params,
    wrapped_input_tag,
)
from .._kqr import (
    KERNELS,
    SPathSolver,
    default_max_steps,
    gamma_grid,
    in_row_space,
    kernel_matrix,
    lambda_path,
    linear_qr_start,
    phi_design,
    select_gamma_cv,
)
from .._kqr._kernels import check_memory
from ..exceptions import InsufficientMemoryError

_CHUNK = 2048
# "auto" keeps the calibration kernel after fit up to this size (n_cal <= 5792)
_KEEP_KERNEL_BYTES = 256 * 2**20


def _column(X, col):
    """Column ``col`` (a position, or a DataFrame column name) of ``X``, as a 1-d ndarray."""
    vals = _safe_indexing(X, col, axis=1)
    vals = vals.toarray() if sp.issparse(vals) else np.asarray(vals)
    vals = vals.reshape(-1)
    if vals.dtype.kind == "f" and np.any(np.isnan(vals)):
        raise ValueError(
            f"phi={col!r} names a column holding group labels, and it contains NaN; give every "
            "row a group (e.g. a separate label for missing values)."
        )
    return vals


def _as_float(Z):
    Z = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)
    return np.ascontiguousarray(Z, dtype=np.float64)


class SpeedCPRegressor(ConformalRegressorMixin, RegressorMixin, BaseEstimator):
    """Conditional conformal intervals over an RKHS function class, computed exactly.

    Calibrates the scores ``S = |y - f(x)|`` of a point regressor ``f`` with the kernel quantile
    regression of Gibbs, Cherian & Candes (2025) over the class ``{Phi(x)'eta + h(x), h in H}``
    (RKHS ``H`` of ``kernel``): for each test point the cutoff ``S*(x)`` is the supremum of the
    imputed scores whose dual weight stays below ``U``, found by the exact piecewise-linear
    path in that score (SpeedCP, Jung et al. 2025). The interval is ``[f(x) - S*, f(x) + S*]``.
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
        calibration: coverage holds within every group), or a callable
        ``X -> array (n_samples, d)`` (given ``X`` as passed). The string ``"intercept"`` always
        means the intercept, never a column of that name.
    kernel : {"rbf", "laplacian", "matern32", "matern52", "imq"}, default="rbf"
        Kernel on the embedding; every choice has ``k(x, x) = 1``.
    gamma : float > 0 or "auto", default="auto"
        Kernel inverse bandwidth; ``"auto"`` picks it by ``n_folds``-fold cross-validation of
        the pinball loss over exact lambda paths (minimum over each path), on ``gamma_grid``.
    lambda_ : float > 0 or "auto", default="auto"
        RKHS penalty ``lam`` in ``sum rho(S - g) + lam/2 ||h||^2``; ``"auto"`` minimises the
        Schwarz information criterion over all breakpoints of the exact lambda path. A fixed
        value carries the units of ``1 / S``: the loss grows like the scores and the penalty
        like their square, so a target rescaled by ``c`` needs ``lambda_ / c`` for the same
        fit (``"auto"`` is scale-free).
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
    estimator_ : regressor
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
    gamma_grid_ : ndarray or None
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
        "estimator": [HasMethods(["fit", "predict"]), None],
        "embedding": [HasMethods(["fit", "transform"]), None],
        "phi": [str, Interval(Integral, None, None, closed="neither"), callable],
        "kernel": [StrOptions(set(KERNELS))],
        "gamma": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "lambda_": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "gamma_grid": ["array-like", None],
        "n_folds": [Interval(Integral, 2, None, closed="left")],
        "gamma_patience": [Interval(Integral, 1, None, closed="left"), None],
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
        embedding=None,
        phi="intercept",
        kernel="rbf",
        gamma="auto",
        lambda_="auto",
        gamma_grid=None,
        n_folds=5,
        gamma_patience=3,
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
        self.embedding = embedding
        self.phi = phi
        self.kernel = kernel
        self.gamma = gamma
        self.lambda_ = lambda_
        self.gamma_grid = gamma_grid
        self.n_folds = n_folds
        self.gamma_patience = gamma_patience
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
        estimator = self._estimator()
        check_groups_use(self, fit_params)
        params = route_fit_params(
            self, fit_params, {"estimator": estimator}, len(y), splitter_groups=True
        )
        if is_frozen(estimator):
            X_train, X_cal, y_cal = None, X, y
            self.estimator_ = estimator
        else:
            groups = splitter_params(self, fit_params, len(y)).get("groups")
            train, cal = split_indices(
                y, self.calibration_size, rng.randint(2**31 - 1), X=X, groups=groups
            )
            X_train, X_cal = _safe_indexing(X, train), _safe_indexing(X, cal)
            y_train, y_cal = y[train], y[cal]
            self.estimator_ = clone(estimator).fit(
                X_train, y_train, **split_fit_params(X, params["estimator"], train)
            )
        if self.embedding is None:
            self.embedding_ = None
        else:
            self.embedding_ = clone(self.embedding) if not is_frozen(self.embedding) else (
                self.embedding
            )
            self.embedding_.fit(X_train if X_train is not None else X_cal)
        cv_seed = rng.randint(2**31 - 1)
        self._u_seed = int(rng.randint(2**31 - 1))

        scores = np.abs(y_cal - np.asarray(self.estimator_.predict(X_cal), dtype=float).ravel())
        self.conformity_scores_ = scores
        self.n_calibration_ = scores.shape[0]
        self._phi_basis, Phi = phi_design(self._phi_fit(X_cal))
        self._Z_cal = self._embed(X_cal)
        self._S = scores  # the solvers merge duplicate rows and break ties
        self._Phi = Phi
        # the level of the fitted path; predictions follow self.confidence_level (also after
        # set_params without refitting) and solve their own path when it differs
        self.confidence_level_ = check_confidence_level(self.confidence_level)
        alpha = 1.0 - self.confidence_level_
        n = scores.shape[0]
        self._max_steps = default_max_steps(n, self.max_steps)
        self.cv_loss_ = None
        self.gamma_grid_ = None

        too_small = n < min_calibration_size(self.confidence_level)
        if too_small:
            warn_small_calibration(n, self.confidence_level)
        self._check_memory(n, "fit")
        if self.gamma == "auto":
            grid = gamma_grid(self._Z_cal, self.gamma_grid)
            self.gamma_grid_ = grid
            if n >= 2 * self.n_folds and not too_small:
                self.gamma_, self.cv_loss_, info = select_gamma_cv(
                    self._Z_cal, Phi, self._S, alpha, grid, kernel=self.kernel,
                    n_folds=self.n_folds, random_state=cv_seed,
                    lam_min_ratio=self.lambda_min_ratio, max_steps=self._max_steps,
                    n_jobs=self.n_jobs, verbose=self.verbose, patience=self.gamma_patience,
                )
                self.cv_n_breakpoints_ = info["n_breakpoints"]
                self.cv_mean_elbow_ = info["mean_elbow"]
            else:
                self.gamma_ = float(grid[grid.size // 2])
        else:
            self.gamma_ = float(self.gamma)
        K = self._kernel_cal()
        lam_stop = None if self.lambda_ == "auto" else float(self.lambda_)
        path = self._lambda_path(K, alpha, lam_stop)
        self.lam_ = float(path.lam)
        self.path_lambdas_ = path.lambdas
        self.path_sic_ = path.sic
        self.path_elbow_sizes_ = path.elbow_sizes
        self.path_truncated_ = bool(path.truncated)
        # the solution at lam_ (O(n)); unless keep_kernel, the kernel matrix (O(n^2)) is not
        # kept: predict rebuilds it for the duration of the call. Preparing the S-path solver
        # here raises on a singular elbow system at fit time rather than at the first predict.
        self._path_state, self._path_v = path.state, path.v
        solver = SPathSolver(K, Phi, self._S, alpha, self.lam_, path.state, path.v,
                             max_steps=self._max_steps)
        self._kept_solver = solver if self._keeps_kernel(n) else None
        return self

    def _keeps_kernel(self, n_calibration):
        if self.keep_kernel == "auto":
            return 8 * n_calibration**2 <= _KEEP_KERNEL_BYTES
        return bool(self.keep_kernel)

    def _prediction_solver(self, alpha):
        """The S-path solver for a prediction call (the kept one, or one built for the call)."""
        kept = getattr(self, "_kept_solver", None)
        if kept is not None and alpha == 1.0 - self.confidence_level_:
            return kept
        if kept is not None:
            return self._solver(kept.K, alpha)
        self._check_memory(self.n_calibration_, "predict_cutoff")
        return self._solver(self._kernel_cal(), alpha)

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("_kept_solver") is not None:
            # the kernel (O(n^2)) never travels in a pickle; __setstate__ rebuilds it
            state = dict(state, _kept_solver=None, _rebuild_kept_solver=True)
        return state

    def __setstate__(self, state):
        rebuild = state.pop("_rebuild_kept_solver", False)
        super().__setstate__(state)
        if rebuild:
            try:
                self._kept_solver = self._prediction_solver(1.0 - self.confidence_level_)
            except InsufficientMemoryError:  # loads; predictions then rebuild per call
                self._kept_solver = None

    def _lambda_path(self, K, alpha, lam_stop):
        start = linear_qr_start(self._S, self._Phi, -alpha, 1.0 - alpha)
        return lambda_path(
            K, self._Phi, self._S, alpha, lam_stop=lam_stop, lam_min_ratio=self.lambda_min_ratio,
            max_steps=self._max_steps, start=start,
        )

    def _check_memory(self, n, when):
        """Fail early, with the remedy, when the n_cal x n_cal kernel would not fit in memory."""
        check_memory(
            int(n * n * 8 * 1.05) + n * 64 * 8,
            f"SpeedCPRegressor.{when} with n_calibration={n} (an {n} x {n} float64 kernel "
            "matrix)",
            "use a smaller calibration_size (the kernel grows as n_calibration**2) or free "
            "memory.",
        )

    def _kernel_cal(self):
        """The calibration kernel matrix, built for the caller (never stored on ``self``)."""
        return kernel_matrix(self._Z_cal, None, self.kernel, self.gamma_, n_jobs=self.n_jobs)

    def _solver(self, K, alpha):
        """The S-path solver at level ``1 - alpha`` on ``K``, local to the calling method: at
        the fitted level from the fitted solution, at another level from a lambda path run to
        ``lam_`` (nothing is cached on the estimator, so predict never mutates it)."""
        if alpha == 1.0 - self.confidence_level_:
            lam, state, v = self.lam_, self._path_state, self._path_v
        else:
            path = self._lambda_path(K, alpha, self.lam_)
            lam, state, v = path.lam, path.state, path.v
        return SPathSolver(K, self._Phi, self._S, alpha, lam, state, v,
                           max_steps=self._max_steps)

    # ------------------------------------------------------------------------------------
    def _estimator(self):
        return LinearRegression() if self.estimator is None else self.estimator

    def _accepts_sparse(self):
        """Whether sparse ``X`` may reach the point model and the embedding (their ``sparse``
        tags; the kernel densifies its input itself). Never raises."""
        models = [self._estimator()] + ([] if self.embedding is None else [self.embedding])
        return wrapped_input_tag(models, "sparse")

    def _phi_column(self):
        """The group column named by ``phi`` (an int, or a str other than "intercept"), or None."""
        if isinstance(self.phi, str):
            return None if self.phi == "intercept" else self.phi
        if isinstance(self.phi, numbers.Integral):
            return int(self.phi)
        return None

    def _phi_fit(self, X):
        col = self._phi_column()
        if col is None:
            self.phi_categories_ = None
            if isinstance(self.phi, str):
                return np.ones((X.shape[0], 1))
            return self._phi_transform(X)
        if isinstance(col, str):
            columns = getattr(X, "columns", None)
            if columns is None or col not in list(columns):
                where = (
                    f"X's columns are {list(columns)[:10]}" if columns is not None
                    else f"X is a {type(X).__name__}, which has no column names"
                )
                raise ValueError(
                    f"phi={col!r} names a column of a DataFrame X, but {where}. Pass a DataFrame "
                    "with that column, or the column's index."
                )
        elif not -X.shape[1] <= col < X.shape[1]:
            raise ValueError(f"phi={col} is not a column index of X ({X.shape[1]} columns).")
        self.phi_categories_ = np.unique(_column(X, col))
        return self._phi_transform(X)

    def _phi_transform(self, X):
        n = X.shape[0]
        if isinstance(self.phi, str) and self.phi == "intercept":
            return np.ones((n, 1))
        col = self._phi_column()
        if col is not None:
            vals = _column(X, col)
            cats = self.phi_categories_
            onehot = (vals[:, None] == cats[None, :]).astype(float)
            return np.column_stack([np.ones(n), onehot])
        out = np.asarray(self.phi(X), dtype=float)
        if out.ndim == 1:
            out = out[:, None]
        if out.shape[0] != n or not np.all(np.isfinite(out)):
            raise ValueError("phi(X) must return a finite array of shape (n_samples, d).")
        return out

    def _embed(self, X):
        """The kernel's input: ``embedding_.transform(X)``, or ``X`` itself; finite numbers."""
        source = (
            "X itself (embedding=None)" if self.embedding_ is None
            else f"the output of embedding={type(self.embedding_).__name__}"
        )
        remedy = (
            "pass embedding= a transformer mapping X to finite numbers, e.g. a "
            "ColumnTransformer with OneHotEncoder for categories and SimpleImputer for missing "
            "values (the point estimator still receives X unchanged)."
        )
        Z = X if self.embedding_ is None else self.embedding_.transform(X)
        try:
            Z = _as_float(Z)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"The kernel's input is {source}, which is not numeric ({exc}); {remedy}"
            ) from None
        if Z.ndim == 1:
            Z = Z[:, None]
        if not np.all(np.isfinite(Z)):
            what = "NaN" if np.any(np.isnan(Z)) else "infinity"
            raise ValueError(
                f"The kernel's input is {source}, which contains {what}: the kernel cannot "
                f"take NaN or infinity; {remedy}"
            )
        return Z

    # ------------------------------------------------------------------------------------
    def _check_X(self, X):
        X_checked = validate_data(
            self, X, reset=False, dtype=None, ensure_all_finite="allow-nan",
            accept_sparse=SPARSE_FORMATS if self._accepts_sparse() else False,
        )
        return keep_frame(X, X_checked)

    def predict(self, X):
        """Point prediction of the regressor.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._check_X(X)
        return np.asarray(self.estimator_.predict(X), dtype=float).ravel()

    def predict_cutoff(self, X, confidence_level=None):
        """Score cutoffs ``S*(x)`` (half-widths of the intervals, before clipping at 0).

        ``+inf`` where no finite cutoff exists: too few calibration points for the level, a
        group (``phi``) never seen in calibration, or a dual weight that never reaches ``U``.
        A negative value (possible with the randomised rule) means an empty set.
        """
        check_is_fitted(self)
        X_raw = X
        X = self._check_X(X)
        level = resolve_confidence_level(self, confidence_level)
        alpha = 1.0 - level
        n_t = X.shape[0]
        if self.n_calibration_ < min_calibration_size(level):
            warn_small_calibration(self.n_calibration_, level)
            return np.full(n_t, np.inf)
        Phi_raw = self._phi_transform(X)
        ok = in_row_space(Phi_raw, self._phi_basis)
        if not np.all(ok):
            warnings.warn(
                f"{np.sum(~ok)} test point(s) have phi(x) outside the span of the calibration "
                "features (e.g. a group absent from calibration); their intervals are infinite.",
                SmallCalibrationWarning,
                stacklevel=2,
            )
        Phi_t = Phi_raw @ self._phi_basis
        Z = self._embed(X)
        if self.randomized:
            # one uniform per row content (not per position): a row gets the same cutoff in any
            # batch, order or one-row-at-a-time; U = u - alpha is uniform on [-alpha, 1 - alpha]
            U = keyed_uniforms(row_keys(X_raw), self._u_seed) - alpha
        else:
            U = np.full(n_t, 1.0 - alpha)
        cut = np.full(n_t, np.inf)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return cut
        solver = self._prediction_solver(alpha)
        chunks = [idx[i:i + _CHUNK] for i in range(0, idx.size, _CHUNK)]
        if len(chunks) > 1 and self.n_jobs not in (None, 1):
            # one task per chunk through sklearn.utils.parallel: threads by default, or the
            # workers of a backend set by the caller (e.g. joblib.parallel_backend("dask")),
            # each running the solver single-threaded; results arrive in order as they complete
            pid = os.getpid()
            results = parallel(self.n_jobs)(
                delayed(run_task)(pid, 1, _chunk_cutoffs, solver, self._Z_cal, Z[c], Phi_t[c],
                                  U[c], self.kernel, self.gamma_, 1)
                for c in chunks
            )
        else:
            results = (
                _chunk_cutoffs(solver, self._Z_cal, Z[c], Phi_t[c], U[c], self.kernel,
                               self.gamma_, self.n_jobs)
                for c in chunks
            )
        with progress(idx.size, "S-paths (test points)", self.verbose) as bar:
            for c, r in zip(chunks, results):
                cut[c] = r
                bar.update(c.size)
        return cut

    def predict_interval(self, X, confidence_level=None):
        """Conditional conformal intervals ``[f(x) - S*(x), f(x) + S*(x)]``.

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
            ``[f(x), f(x)]``. ``intervals[:, :, j]`` is the call at ``confidence_level[j]``
            alone. After ``set_output(predict="pandas")``, a DataFrame with columns ``lower``,
            ``upper`` (MultiIndex ``(confidence_level, bound)`` for several levels) and the
            index of ``X``.
        """
        check_is_fitted(self)
        center = None

        def at_level(level):
            nonlocal center
            cut = np.maximum(self.predict_cutoff(X, level), 0.0)
            if center is None:
                center = self.predict(X)
            return np.column_stack([center - cut, center + cut])

        return per_level(self, X, confidence_level, at_level, "interval")

    def __sklearn_is_fitted__(self):
        # the parameter ``lambda_`` ends in "_", so the default attribute scan would not do
        return hasattr(self, "estimator_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN reaches the point model and the embedding; the kernel itself never takes it
        estimator = self._estimator()
        tags.input_tags.allow_nan = (
            self.embedding is not None
            and model_allows_nan(estimator)
            and model_allows_nan(self.embedding)
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
        router.add(
            estimator=self._estimator(),
            method_mapping=MethodMapping().add(caller="fit", callee="fit"),
        )
        return add_splitter_routing(router, self.calibration_size)


def _chunk_cutoffs(solver, Z_cal, Z, Phi_t, U, kernel, gamma, n_jobs):
    K_t = kernel_matrix(Z, Z_cal, kernel, gamma, n_jobs=1)
    cut, _, _, _ = solver.cutoffs(K_t, np.ones(Z.shape[0]), Phi_t, U, n_jobs=n_jobs)
    return cut
