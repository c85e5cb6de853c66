"""SpeedCP for classification: prediction sets with coverage conditional on a function class."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, RealNotInt, StrOptions
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._core import check_confidence_level
from .._core._row_keys import keyed_uniforms, row_keys
from .._estimator_mixins import (
    ConformalClassifierMixin,
    check_label_types,
    check_same_label_kind,
    sorted_labels,
)
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
from .._output import per_level
from .._speedcp_common import SpeedCPMixin, is_transformer
from ..conformity_scores import check_calibration_scores, check_classification_score
from ..conformity_scores._classification import CLASSIFICATION_SCORES
from ._split import _warn_unknown_to_model, model_probabilities


class SpeedCPClassifier(SpeedCPMixin, ConformalClassifierMixin, ClassifierMixin, BaseEstimator):
    """Conditional conformal prediction sets over an RKHS function class, computed exactly.

    The conditional conformal method of Gibbs, Cherian & Candes (2025) conditions any
    conformity score: here the classification score ``s(x, y)`` of a probabilistic classifier
    (LAC ``1 - p_y`` by default, or APS). The calibration scores ``S_i = s(x_i, y_i)`` are fitted
    by the kernel quantile regression over ``{Phi(x)'eta + h(x), h in H}`` (RKHS ``H`` of
    ``kernel``) augmented with the test point, and each test row's cutoff ``S*(x)`` is the
    supremum of the imputed scores whose dual weight stays below ``U``, found by the exact
    piecewise-linear path in that score (SpeedCP, Jung et al. 2025), as in
    :class:`~sklearn_conformal.SpeedCPRegressor`. The set is ``{y : s(x, y) <= S*(x)}``.

    With ``randomized=True`` (``U ~ Unif[-alpha, 1 - alpha]``), coverage is exactly
    ``confidence_level`` under every covariate shift in the function class, in particular
    within each group of a one-hot ``phi``: ``phi="predicted_label"`` gives coverage within
    each predicted label (the classification set-up of Gibbs et al.), ``phi=<column>`` within
    each group of a column. The deterministic rule (``U = 1 - alpha``) over-covers slightly.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``, default=None
        ``None`` means ``LogisticRegression()``. Wrap a trained model in
        ``sklearn.frozen.FrozenEstimator`` to calibrate on all of ``fit``'s data. It receives
        ``X`` as passed (a DataFrame stays a DataFrame).
    conformity_score : str or BaseClassificationScore, default="lac"
        A score of :mod:`sklearn_conformal.conformity_scores`: ``"lac"`` (``1 - p_y``),
        ``"aps"`` (randomised by ``randomized``; ``APSScore(randomized=False)`` for the
        conservative non-randomised sets), ``"raps"`` (``k_reg=1``, ``lambda_reg=0.1``; pass a
        :class:`~sklearn_conformal.conformity_scores.RAPSScore` for others), ``"top_k"``,
        ``"saps"``, ``"margin"``, or a score object (a subclass of
        :class:`~sklearn_conformal.conformity_scores.BaseClassificationScore`). Its calibration
        scores are conditioned; its label-wise scores of a test row are cut at the row's
        cutoff.
    embedding : transformer, default=None
        Maps ``X`` to the kernel's input space (e.g. ``PCA(10)``); fitted on the training part
        (on the calibration ``X`` when the estimator is frozen). ``None`` uses ``X`` as is.
    phi : "intercept", "predicted_label", int, str, callable or transformer, \
            default="intercept"
        Finite-dimensional part ``Phi(x)`` of the function class: an intercept (marginal
        coverage plus the kernel part); ``"predicted_label"``: intercept + one-hot of the
        model's most probable label (coverage within every predicted label; a label never
        predicted in calibration gets every label in its sets); a column of ``X`` holding group
        labels, by index or DataFrame name (intercept + one-hot of the groups seen in
        calibration); a callable ``X -> array (n_samples, d)``; or a transformer (e.g. a
        ``ColumnTransformer`` with a ``OneHotEncoder``), fitted like ``embedding``. The strings
        ``"intercept"`` and ``"predicted_label"`` never name columns.
    kernel : {"rbf", "laplacian", "matern32", "matern52", "imq"}, default="rbf"
        Kernel on the embedding.
    gamma : float > 0 or "auto", default="auto"
        Kernel inverse bandwidth; ``"auto"``: ``n_folds``-fold cross-validation of the pinball
        loss over exact lambda paths, on ``gamma_grid``.
    lambda_ : float > 0, "cv" or "auto", default="cv"
        RKHS penalty; ``"cv"`` takes the lambda of least validation loss in the
        cross-validation of ``gamma`` (see :class:`~sklearn_conformal.SpeedCPRegressor`);
        ``"auto"`` minimises the Schwarz information criterion over the lambda path, which on
        these discrete-valued scores sometimes picks a near-interpolating fit (digits,
        predicted-label ``phi``, 6 draws: mean set size 1.49, up to 2.15 in a draw, against
        1.12 with ``"cv"`` at the same coverage per predicted label).
    gamma_grid : array-like, default=None
        Candidates for ``gamma="auto"``; default 30 log-spaced values in
        ``[0.1, 100] / median squared distance``.
    n_folds : int, default=5
        Folds of the gamma cross-validation.
    gamma_patience : int >= 1 or None, default=3
        Early stop of the gamma cross-validation (see
        :class:`~sklearn_conformal.SpeedCPRegressor`).
    gamma_cv_size : int >= 10 or None, default=2000
        Rows of the gamma cross-validation subsample (see
        :class:`~sklearn_conformal.SpeedCPRegressor`).
    n_components : int or None, default=None
        ``None``: the exact kernel. An int: the Nystrom kernel of that many landmarks, solved
        exactly from its features (memory ``O(n_cal r)``), as in
        :class:`~sklearn_conformal.SpeedCPRegressor`.
    randomized : bool, default=True
        Randomised cutoff (exact coverage) or the deterministic one (``U = 1 - alpha``); also
        the randomisation of the ``"aps"``/``"raps"``/``"saps"`` strings' scores (a score
        object keeps its own). A test row's uniforms are keyed hashes of its content, so a row
        gets the same set however rows are batched.
    confidence_level : float in (0, 1), default=0.9
        Target coverage.
    calibration_size : float in (0, 1), int or splitter, default=0.3
        Fraction (or number) of samples held out for calibration (stratified when possible),
        or a splitter whose first split gives ``(train, calibration)``. Ignored for a frozen
        estimator.
    lambda_min_ratio : float, default=1e-3
        The lambda paths end at this fraction of their first breakpoint.
    max_steps : int, default=None
        Step cap of each path (``20 n + 100`` by default).
    n_jobs : int, default=None
        Threads running the numba solvers; ``None`` uses every core.
    keep_kernel : "auto" or bool, default="auto"
        Keep the calibration kernel and the prepared solver after ``fit`` (``"auto"``: up to
        256 MiB).
    random_state : int, RandomState instance or None, default=None
        Controls the calibration split, the cross-validation folds and the uniforms.
    verbose : int, default=0
        Progress bars for the gamma cross-validation and the test rows' S-paths.

    Attributes
    ----------
    estimator_ : classifier
    classes_ : ndarray of shape (n_classes,)
    conformity_score_ : BaseClassificationScore
        The score used (the built-in of a string, or a clone of the object given).
    conformity_scores_ : ndarray of shape (n_calibration,)
        Calibration scores of the observed labels.
    embedding_ : transformer or None
    phi_ : transformer or None
        The fitted transformer ``phi`` (None for the other kinds).
    phi_categories_ : ndarray or None
        Groups seen in calibration (predicted labels for ``phi="predicted_label"``, or the
        values of the column named by ``phi``).
    gamma_, lam_, confidence_level_, path_lambdas_, path_sic_, path_elbow_sizes_, \
path_truncated_, cv_loss_, gamma_grid_, cv_lambdas_, n_components_
        As in :class:`~sklearn_conformal.SpeedCPRegressor`.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_conformal import SpeedCPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SpeedCPClassifier(phi="predicted_label", random_state=0).fit(X, y)
    >>> clf.predict_set(X[:2]).shape
    (2, 3)
    """

    _phi_keywords = ("intercept", "predicted_label")
    _infinite_note = "their cutoffs are infinite: their sets hold every label."

    _parameter_constraints = {
        "estimator": [HasMethods(["fit", "predict_proba"]), None],
        "conformity_score": [
            StrOptions(set(CLASSIFICATION_SCORES)),
            HasMethods(["label_scores", "calibration_scores", "prediction_sets"]),
        ],
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
        conformity_score="lac",
        embedding=None,
        phi="intercept",
        kernel="rbf",
        gamma="auto",
        lambda_="cv",
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

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, **fit_params):
        """Fit the classifier (training split), then tune and calibrate (calibration split).

        Parameters
        ----------
        X : array-like, sparse matrix or DataFrame of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        **fit_params : dict
            Metadata for ``estimator.fit`` (per-sample arrays are split like ``X``), routed as
            in :class:`SplitConformalClassifier`; ``groups`` goes to a splitter
            ``calibration_size``. The calibration is never weighted.

        Returns
        -------
        self : object
        """
        X_checked, y = validate_data(
            self, X, y, dtype=None, ensure_all_finite="allow-nan",
            accept_sparse=SPARSE_FORMATS if self._accepts_sparse() else False,
        )
        X = keep_frame(X, X_checked)
        y = np.asarray(y)
        check_label_types(y)
        check_classification_targets(y)
        rng = check_random_state(self.random_state)
        score = check_classification_score(self.conformity_score, randomized=self.randomized)
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
                y, self.calibration_size, rng.randint(2**31 - 1), stratify=True, X=X,
                groups=groups,
            )
            X_train, X_cal = _safe_indexing(X, train), _safe_indexing(X, cal)
            y_train, y_cal = y[train], y[cal]
            self.estimator_ = clone(estimator).fit(
                X_train, y_train, **split_fit_params(X, params["estimator"], train)
            )
        model_classes = np.asarray(self.estimator_.classes_)
        check_same_label_kind(model_classes, y)
        self.classes_ = sorted_labels(np.concatenate([model_classes, np.unique(y)]))
        self._model_columns = np.searchsorted(self.classes_, model_classes)
        _warn_unknown_to_model(self.classes_, model_classes, is_frozen(estimator))
        self._fit_transformers(X_train, X_cal)
        cv_seed = rng.randint(2**31 - 1)
        self._u_seed = int(rng.randint(2**31 - 1))
        self._score_seed = int(rng.randint(2**31 - 1))

        proba = self._proba(X_cal)
        y_idx = self._encode(y_cal)
        level = check_confidence_level(self.confidence_level)
        # scores that tune themselves (RAPSScore "auto") spend some calibration rows on it
        score, keep = score.prepare(proba, y_idx, level, rng)
        if keep is not None:
            keep = np.flatnonzero(keep)
            proba, y_idx, X_cal = proba[keep], y_idx[keep], _safe_indexing(X_cal, keep)
        self.conformity_score_ = score
        u = rng.uniform(size=len(y_idx)) if getattr(score, "uses_uniforms", False) else None
        scores = check_calibration_scores(
            score.calibration_scores(proba, y_idx, u), len(y_idx), score, "calibration_scores"
        )
        if not np.all(np.isfinite(scores)):
            raise ValueError(
                f"{type(score).__name__}.calibration_scores returned "
                f"{int(np.sum(~np.isfinite(scores)))} infinite score(s); the kernel quantile "
                "regression needs finite scores."
            )
        self._calibrate(X_cal, scores, cv_seed)
        return self

    # ------------------------------------------------------------------------------------
    def predict_proba(self, X):
        """Class probabilities of the underlying model, in the order of ``classes_``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        return self._proba(self._check_X(X))

    def predict_cutoff(self, X, confidence_level=None):
        """Score cutoffs ``S*(x)``: the set of a row is ``{y : s(x, y) <= S*(x)}``.

        ``+inf`` (every label) where no finite cutoff exists: too few calibration points for
        the level, a group of ``phi`` never seen in calibration, or a dual weight that never
        reaches ``U``.

        Returns
        -------
        cutoffs : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X_raw = X
        X = self._check_X(X)
        level = resolve_confidence_level(self, confidence_level)
        return self._cutoffs(X, X_raw, level)

    def predict_set(self, X, confidence_level=None):
        """Conditional conformal prediction sets ``{y : s(x, y) <= S*(x)}``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float in (0, 1) or sequence of such floats, default=None
            Overrides the fitted level (the lambda path is re-run at that level with the
            fitted ``gamma_`` and ``lam_``). A sequence gives the sets at each of its levels,
            stacked on a last axis.

        Returns
        -------
        sets : ndarray of bool, shape (n_samples, n_classes) or (n_samples, n_classes, n_levels)
            ``sets[i, k]``: ``classes_[k]`` is in the set of row ``i``. After
            ``set_output(predict="pandas")``, a boolean DataFrame with one column per class
            (MultiIndex ``(confidence_level, class)`` for several levels) and the index of
            ``X``.
        """
        check_is_fitted(self)
        X_checked = self._check_X(X)
        proba = self._proba(X_checked)
        score = self.conformity_score_
        u = (
            keyed_uniforms(row_keys(X), self._score_seed)
            if getattr(score, "uses_uniforms", False) else None
        )
        n, n_classes = proba.shape

        def at_level(level):
            cut = self._cutoffs(X_checked, X, level, stacklevel=5)
            sets = np.asarray(score.prediction_sets(proba, cut[:, None], u), dtype=bool)
            if sets.shape != (n, n_classes):
                raise ValueError(
                    f"{type(score).__name__}.prediction_sets returned shape {sets.shape}; "
                    f"expected ({n}, {n_classes})."
                )
            return sets

        return per_level(self, X, confidence_level, at_level, "set")

    # ------------------------------------------------------------------------------------
    def _estimator(self):
        return LogisticRegression() if self.estimator is None else self.estimator

    def _models_seeing_X(self):
        """The classifier, the embedding and a transformer ``phi``: what receives ``X``."""
        models = [self._estimator()]
        if self.embedding is not None:
            models.append(self.embedding)
        if is_transformer(self.phi):
            models.append(self.phi)
        return models

    def _accepts_sparse(self):
        return wrapped_input_tag(self._models_seeing_X(), "sparse")

    def _proba(self, X):
        return model_probabilities(self.estimator_, X, self._model_columns, len(self.classes_))

    def _phi_groups(self, X):
        if isinstance(self.phi, str) and self.phi == "predicted_label":
            return self.classes_[np.argmax(self._proba(X), axis=1)]
        return super()._phi_groups(X)

    def _check_X(self, X):
        X_checked = validate_data(
            self, X, reset=False, dtype=None, ensure_all_finite="allow-nan",
            accept_sparse=SPARSE_FORMATS if self._accepts_sparse() else False,
        )
        return keep_frame(X, X_checked)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN reaches the classifier, the embedding and a transformer phi; never the kernel
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
        router.add(
            estimator=self._estimator(),
            method_mapping=MethodMapping().add(caller="fit", callee="fit"),
        )
        return add_splitter_routing(router, self.calibration_size)
