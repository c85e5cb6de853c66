"""Machinery shared by the SpeedCP estimators (regression and classification).

Both calibrate one conformity score per calibration row with the exact kernel quantile
regression paths of :mod:`sklearn_conformal._kqr` and cut each test row's score at its
conditional cutoff ``S*(x)``; only how the scores are made and how a cutoff becomes an interval
or a set differs. :class:`SpeedCPMixin` holds the rest: the function class ``Phi`` (intercept,
group column, callable or transformer), the kernel's embedding, gamma/lambda selection, the
prepared S-path solver (kept or rebuilt per call) and the cutoffs of test rows.
"""

import numbers
import os
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.utils import _safe_indexing
from sklearn.utils.parallel import delayed

from ._core import check_confidence_level, min_calibration_size, warn_small_calibration
from ._core._row_keys import keyed_uniforms, row_keys
from ._core._validation import SmallCalibrationWarning
from ._estimator_utils import is_frozen
from ._kqr import (
    NystroemFeatures,
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
from ._kqr._kernels import check_memory
from ._parallel import parallel, run_task
from ._progress import progress
from .exceptions import InsufficientMemoryError

_CHUNK = 2048
# "auto" keeps the calibration kernel after fit up to this size (n_cal <= 5792)
_KEEP_KERNEL_BYTES = 256 * 2**20


def column_values(X, col):
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


def as_float(Z):
    Z = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)
    return np.ascontiguousarray(Z, dtype=np.float64)


def is_transformer(obj):
    """Whether ``obj`` is an (unfitted or fitted) transformer, rather than a plain callable."""
    return hasattr(obj, "fit") and hasattr(obj, "transform")


class SpeedCPMixin:
    """Conditional cutoffs of one score per row (Gibbs, Cherian & Candes), by exact paths.

    The class using it has the SpeedCP parameters (``embedding``, ``phi``, ``kernel``,
    ``gamma``, ``lambda_``, ``gamma_grid``, ``n_folds``, ``gamma_patience``, ``gamma_cv_size``,
    ``n_components``, ``randomized``, ``confidence_level``, ``lambda_min_ratio``, ``max_steps``,
    ``n_jobs``, ``keep_kernel``, ``verbose``), calls :meth:`_fit_transformers` and :meth:`_calibrate` in ``fit`` and
    :meth:`_cutoffs` at prediction time.
    """

    #: strings of ``phi`` that never name a column of ``X``
    _phi_keywords = ("intercept",)

    # ---------------------------------------------------------------------------------- fit
    def _fit_transformers(self, X_train, X_cal):
        """Fit the embedding and a transformer ``phi`` on the training rows (on the calibration
        rows when the model is frozen, ``X_train=None``): never on calibration scores."""
        X_fit = X_train if X_train is not None else X_cal
        if self.embedding is None:
            self.embedding_ = None
        else:
            self.embedding_ = (
                self.embedding if is_frozen(self.embedding) else clone(self.embedding)
            )
            self.embedding_.fit(X_fit)
        if is_transformer(self.phi):
            self.phi_ = self.phi if is_frozen(self.phi) else clone(self.phi).fit(X_fit)
        else:
            self.phi_ = None
        # Nystrom landmarks come from rows that do not calibrate: the training rows here, or
        # (a frozen model, no training rows) rows set aside from calibration in _calibrate
        self._landmark_rows = (
            X_train if self.n_components is not None and X_train is not None else None
        )

    def _gamma_cv_rows(self, n, cv_seed):
        """The calibration rows gamma is cross-validated on: all, or a seeded subsample."""
        size = self.gamma_cv_size
        if size is None or n <= size:
            return slice(None)
        rng = np.random.RandomState(cv_seed)
        return np.sort(rng.choice(n, size=int(size), replace=False))

    def _landmarks(self, X_cal, scores, cv_seed):
        """The Nystrom landmarks (embedded), and the calibration rows and scores left.

        ``n_components`` rows drawn (seeded) from the training rows; with a frozen model, from
        the calibration rows, which then no longer calibrate."""
        rng = np.random.RandomState(np.uint32(cv_seed) ^ np.uint32(0x9E3779B9))
        source = self._landmark_rows
        self._landmark_rows = None  # not kept on the estimator
        r = int(self.n_components)
        if source is not None:
            n_src = source.shape[0]
            pick = np.sort(rng.choice(n_src, size=min(r, n_src), replace=False))
            return self._embed(_safe_indexing(source, pick)), X_cal, scores
        n = scores.shape[0]
        if r >= n:
            raise ValueError(
                f"n_components={r} landmarks are set aside from the {n} calibration rows when "
                "the model is frozen (there are no training rows to draw them from), which "
                "leaves none to calibrate; use a smaller n_components or more calibration rows."
            )
        pick = np.zeros(n, dtype=bool)
        pick[rng.choice(n, size=r, replace=False)] = True
        landmarks = self._embed(_safe_indexing(X_cal, np.flatnonzero(pick)))
        rest = np.flatnonzero(~pick)
        return landmarks, _safe_indexing(X_cal, rest), scores[rest]

    def _calibrate(self, X_cal, scores, cv_seed):
        """Tune ``gamma_`` and ``lam_`` on the calibration ``scores`` and prepare the S-path."""
        self._nystroem = None
        landmarks = None
        if self.n_components is not None:
            landmarks, X_cal, scores = self._landmarks(X_cal, scores, cv_seed)
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
        self.gamma_cv_rows_ = None

        too_small = n < min_calibration_size(self.confidence_level)
        if too_small:
            warn_small_calibration(n, self.confidence_level)
        self._check_memory(n, "fit")
        cv_gamma, cv_lambda = self.gamma == "auto", self.lambda_ == "cv"
        lam_cv = None
        self.cv_lambdas_ = None
        if cv_gamma or cv_lambda:
            # the grid's scale (median of the squared distances, O(rows^2) memory) comes from
            # the rows gamma is cross-validated on, not from all of a large calibration set
            rows = self._gamma_cv_rows(n, cv_seed)
            if cv_gamma:
                grid = self.gamma_grid_ = gamma_grid(self._Z_cal[rows], self.gamma_grid)
            else:
                grid = np.array([float(self.gamma)])
            if n >= 2 * self.n_folds and not too_small:
                self.gamma_cv_rows_ = None if isinstance(rows, slice) else rows
                self._gamma_cv_seed = cv_seed
                gamma, cv_loss, info = select_gamma_cv(
                    self._Z_cal[rows], Phi[rows], self._S[rows], alpha, grid,
                    kernel=self.kernel, n_folds=self.n_folds, random_state=cv_seed,
                    lam_min_ratio=self.lambda_min_ratio, max_steps=self._max_steps,
                    n_jobs=self.n_jobs, verbose=self.verbose, patience=self.gamma_patience,
                )
                self.gamma_, self.cv_loss_ = gamma, cv_loss
                self.cv_n_breakpoints_ = info["n_breakpoints"]
                self.cv_mean_elbow_ = info["mean_elbow"]
                if cv_lambda:
                    self.cv_lambdas_ = info["best_lambda"][int(np.argmax(grid == gamma))]
                    lam_cv = _scaled_cv_lambda(self.cv_lambdas_, n, rows, self.n_folds)
            elif cv_gamma:
                self.gamma_ = float(grid[grid.size // 2])
        if not cv_gamma:
            self.gamma_ = float(self.gamma)
        if landmarks is not None:
            self._nystroem = NystroemFeatures(landmarks, self.kernel, self.gamma_)
            self.n_components_ = self._nystroem.rank
        K = self._kernel_cal()
        if self.lambda_ in ("auto", "cv"):
            lam_stop = lam_cv  # None: SIC (also "cv" when too few rows to cross-validate)
        else:
            lam_stop = float(self.lambda_)
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

    def _keeps_kernel(self, n_calibration):
        if self.keep_kernel == "auto":
            return 8 * n_calibration * self._kernel_width(n_calibration) <= _KEEP_KERNEL_BYTES
        return bool(self.keep_kernel)

    def _prediction_solver(self, alpha):
        """The S-path solver for a prediction call (the kept one, or one built for the call)."""
        kept = getattr(self, "_kept_solver", None)
        if kept is not None and alpha == 1.0 - self.confidence_level_:
            return kept
        if kept is not None and kept.kernel is not None:
            return self._solver(kept.kernel, alpha)
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

    def _kernel_width(self, n):
        """Columns of the calibration kernel as held in memory: n, or the Nystrom rank."""
        nystroem = getattr(self, "_nystroem", None)
        return n if nystroem is None else nystroem.rank + 1

    def _check_memory(self, n, when):
        """Fail early, with the remedy, when the n_cal x n_cal kernel would not fit in memory."""
        if self.n_components is not None:
            r = int(self.n_components)
            # the factor, the test block of one chunk and the solver's O(n) state
            check_memory(
                n * (r + 1) * 8 * 2 + _chunk_rows(n) * n * 8 + n * 64 * 8,
                f"{type(self).__name__}.{when} with n_calibration={n} and n_components={r}",
                "use a smaller n_components or calibration_size, or free memory.",
            )
            return
        check_memory(
            int(n * n * 8 * 1.05) + n * 64 * 8,
            f"{type(self).__name__}.{when} with n_calibration={n} (an {n} x {n} float64 kernel "
            "matrix)",
            "use a smaller calibration_size (the kernel grows as n_calibration**2) or free "
            "memory.",
        )

    def _kernel_cal(self):
        """The calibration kernel matrix (or Nystrom factor), built for the caller (never
        stored on ``self``)."""
        if self._nystroem is not None:
            return self._nystroem.factor(self._Z_cal, n_jobs=self.n_jobs)
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

    # ---------------------------------------------------------------------------------- phi
    def _phi_column(self):
        """The group column named by ``phi`` (an int, or a str other than the keywords), or
        None."""
        if isinstance(self.phi, str):
            return None if self.phi in self._phi_keywords else self.phi
        if isinstance(self.phi, numbers.Integral):
            return int(self.phi)
        return None

    def _phi_groups(self, X):
        """Group label of every row for a ``phi`` made of groups (a column, or a keyword the
        estimator defines), or None."""
        col = self._phi_column()
        return None if col is None else column_values(X, col)

    def _phi_fit(self, X):
        col = self._phi_column()
        if col is not None:
            if isinstance(col, str):
                columns = getattr(X, "columns", None)
                if columns is None or col not in list(columns):
                    where = (
                        f"X's columns are {list(columns)[:10]}" if columns is not None
                        else f"X is a {type(X).__name__}, which has no column names"
                    )
                    raise ValueError(
                        f"phi={col!r} names a column of a DataFrame X, but {where}. Pass a "
                        "DataFrame with that column, or the column's index."
                    )
            elif not -X.shape[1] <= col < X.shape[1]:
                raise ValueError(f"phi={col} is not a column index of X ({X.shape[1]} columns).")
        groups = self._phi_groups(X)
        self.phi_categories_ = None if groups is None else np.unique(groups)
        return self._phi_transform(X)

    def _phi_transform(self, X):
        n = X.shape[0]
        if isinstance(self.phi, str) and self.phi == "intercept":
            return np.ones((n, 1))
        groups = self._phi_groups(X)
        if groups is not None:
            cats = self.phi_categories_
            onehot = (groups[:, None] == cats[None, :]).astype(float)
            return np.column_stack([np.ones(n), onehot])
        out = self.phi_.transform(X) if self.phi_ is not None else self.phi(X)
        try:
            out = as_float(out)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"phi(X) must return a numeric array; {exc}") from None
        if out.ndim == 1:
            out = out[:, None]
        if out.ndim != 2 or out.shape[0] != n or not np.all(np.isfinite(out)):
            raise ValueError("phi(X) must return a finite array of shape (n_samples, d).")
        return out

    # ---------------------------------------------------------------------------- embedding
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
            Z = as_float(Z)
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

    # ------------------------------------------------------------------------------ cutoffs
    def _cutoffs(self, X, X_raw, level, stacklevel=3):
        """Conditional cutoffs ``S*(x)`` of the validated rows ``X`` (``X_raw`` as passed: its
        row contents key the randomised rule's ``U``) at ``level``."""
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
                f"features (e.g. a group absent from calibration); {self._infinite_note}",
                SmallCalibrationWarning,
                stacklevel=stacklevel,
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
        size = _CHUNK if self._nystroem is None else _chunk_rows(self.n_calibration_)
        chunks = [idx[i:i + size] for i in range(0, idx.size, size)]
        nystroem = self._nystroem
        if len(chunks) > 1 and self.n_jobs not in (None, 1):
            # one task per chunk through sklearn.utils.parallel: threads by default, or the
            # workers of a backend set by the caller (e.g. joblib.parallel_backend("dask")),
            # each running the solver single-threaded; results arrive in order as they complete
            pid = os.getpid()
            results = parallel(self.n_jobs)(
                delayed(run_task)(pid, 1, _chunk_cutoffs, solver, self._Z_cal, Z[c], Phi_t[c],
                                  U[c], self.kernel, self.gamma_, 1, nystroem)
                for c in chunks
            )
        else:
            results = (
                _chunk_cutoffs(solver, self._Z_cal, Z[c], Phi_t[c], U[c], self.kernel,
                               self.gamma_, self.n_jobs, nystroem)
                for c in chunks
            )
        with progress(idx.size, "S-paths (test points)", self.verbose) as bar:
            for c, r in zip(chunks, results):
                cut[c] = r
                bar.update(c.size)
        return cut

    #: what an infinite cutoff gives, for the warning about groups unseen in calibration
    _infinite_note = "their intervals are infinite."

    def __sklearn_is_fitted__(self):
        # the parameter ``lambda_`` ends in "_", so the default attribute scan would not do
        return hasattr(self, "estimator_")


def _scaled_cv_lambda(fold_lambdas, n, rows, n_folds):
    """``lambda_="cv"``: the geometric mean of the folds' best lambdas, scaled from a fold's
    training rows to all ``n`` calibration rows (the loss is a sum over rows, so the same
    balance of loss and penalty needs a penalty proportional to the rows); None (SIC) when a
    fold found no finite best."""
    fold_lambdas = np.asarray(fold_lambdas, dtype=float)
    if not np.all(np.isfinite(fold_lambdas) & (fold_lambdas > 0)):
        return None
    n_cv = n if isinstance(rows, slice) else rows.size
    n_train = n_cv * (n_folds - 1) / n_folds
    return float(np.exp(np.mean(np.log(fold_lambdas))) * n / n_train)


def _chunk_rows(n_calibration):
    """Test rows per chunk with a Nystrom kernel: their kernel columns (chunk x n_cal) are
    built from the features, at most about 128 MiB at a time."""
    return int(max(64, min(_CHUNK, 2**24 // max(n_calibration, 1))))


def _chunk_cutoffs(solver, Z_cal, Z, Phi_t, U, kernel, gamma, n_jobs, nystroem=None):
    if nystroem is not None:
        K_t, k_tt = nystroem.factor(Z), None
    else:
        K_t, k_tt = kernel_matrix(Z, Z_cal, kernel, gamma, n_jobs=1), np.ones(Z.shape[0])
    cut, _, _, _ = solver.cutoffs(K_t, k_tt, Phi_t, U, n_jobs=n_jobs)
    return cut
