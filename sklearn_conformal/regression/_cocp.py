"""CoCP: co-optimised centre and radius intervals with split-conformal calibration.

Su, Zhou & Luo, "Co-optimization for Adaptive Conformal Prediction" (arXiv 2603.01719, 2026).
Design notes: ``design/cocp.md``. Torch and skorch are imported here and in ``_training`` only.
"""

import numbers
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.model_selection import KFold
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metadata_routing import MetadataRouter
from sklearn.utils.parallel import delayed
from sklearn.utils.validation import check_is_fitted, validate_data

from .._core import check_confidence_level, conformal_quantile
from .._core._validation import warn_small_calibration
from .._estimator_mixins import ConformalRegressorMixin
from .._estimator_utils import (
    add_splitter_routing,
    is_splitter,
    refuse_fit_metadata,
    split_indices,
    splitter_params,
)
from .._output import check_levels, per_level
from .._parallel import default_process_pool, parallel, run_here_and_in_processes
from .._progress import progress
from .._training._params import AdamWOptimizer, resolve

__all__ = ["CoCPRegressor"]


def _split_sizes(n, calibration_size, validation_size, val_scheme, n_folds):
    """Numbers of calibration and validation rows, or a ValueError naming n_samples.

    ``calibration_size`` is a fraction or a number of rows (for a splitter: the number of
    calibration rows it gave).
    """
    if isinstance(calibration_size, numbers.Integral):
        n_cal = int(calibration_size)
    else:
        n_cal = int(np.floor(calibration_size * n))
    n_pool = n - n_cal
    if val_scheme == "global":
        if isinstance(validation_size, numbers.Integral):
            n_val = int(validation_size)
        else:
            n_val = int(np.ceil(validation_size * n_pool))
        n_train = n_pool - n_val
        ok = n_cal >= 1 and n_val >= 1 and n_train >= n_folds
    else:  # the paper's scheme: every fold of the pool is a validation set once
        n_val, n_train = 0, n_pool
        ok = n_cal >= 1 and n_train >= n_folds
    if not ok:
        raise ValueError(
            f"CoCPRegressor needs a calibration point, a validation point and at least n_folds="
            f"{n_folds} training points; got n_samples={n} (calibration {n_cal}, validation "
            f"{n_val}, training {max(n_train, 0)}). Use more data or change calibration_size / "
            "validation_size / n_folds."
        )
    return n_cal, n_val


def _fold_assignments(n_train, n_folds, val_scheme, seed):
    """Index arrays (into the training pool) ``(centre, radius, validation-or-None)`` per fold."""
    kfold = KFold(n_folds, shuffle=True, random_state=seed)
    folds = [test for _, test in kfold.split(np.zeros((n_train, 1)))]
    out = []
    for k in range(n_folds):
        if val_scheme == "global":
            # the authors' code: m on the K-1 other folds, h on fold k, one shared validation set
            centre = np.concatenate([folds[j] for j in range(n_folds) if j != k])
            out.append((np.sort(centre), np.sort(folds[k]), None))
        else:
            # the paper (App. C.3): fold k validates, fold k+1 fits h, the rest fit m
            k_h = (k + 1) % n_folds
            centre = np.concatenate([folds[j] for j in range(n_folds) if j not in (k, k_h)])
            out.append((np.sort(centre), np.sort(folds[k_h]), np.sort(folds[k])))
    return out


class CoCPRegressor(ConformalRegressorMixin, RegressorMixin, BaseEstimator):
    """Co-optimised centre/radius intervals (CoCP) with split-conformal calibration.

    Learns a centre ``m(x)`` and a radius ``h(x) > 0`` so that ``[m - h, m + h]`` approaches the
    conditional highest-density interval: an MSE warm start for ``m``, then ``n_alternations``
    rounds of (i) a folded pinball step for ``h`` with ``m`` frozen, ``h -> Q_tau(|Y - m| | x)``,
    and (ii) a boundary-local soft-coverage step for ``m`` with ``h`` frozen, then a final radius
    step. ``n_folds`` pairs are cross-fitted and averaged; the scores ``|y - m(x)| / h(x)`` of a
    held-out calibration set give the split-conformal factor ``q``, and the interval is
    ``[m(x) - q h(x), m(x) + q h(x)]``, which covers with probability at least
    ``confidence_level`` for exchangeable data (Su, Zhou & Luo 2026, Thm 1).

    Every phase is a skorch fit (fresh AdamW and cosine schedule, batch ``batch_size``, early
    stopping on the phase's own validation loss with best weights restored, starting from the
    incoming weights). The defaults are those of the authors' public code, which reproduce the
    paper's tables; the paper's text uses ``n_folds=5, beta=0.01, val_scheme="fold"``.

    Parameters
    ----------
    confidence_level : float, default=0.9
        Target coverage ``1 - alpha``; also the quantile level of the radius step.
    n_folds : int, default=4
        Number of cross-fitted (centre, radius) pairs ``K``.
    n_alternations : int, default=5
        Rounds ``T`` of radius/centre steps. ``0`` gives the MSE centre with a folded quantile
        radius.
    beta : float, default=0.005
        Temperature of the soft-coverage centre step, **in units of the target as the networks
        see it** (after ``target_scale``). Smaller values localise the step at the interval's
        boundary (less bias, noisier gradient); the excess length of the population fixed point
        grows roughly linearly in ``beta`` on a boundary-pinned HDI (paper Prop. 3).
    beta_end : float or None, default=None
        If set, ``beta`` is annealed exponentially to ``beta_end`` over ``max_epochs`` in every
        centre step.
    target_scale : {"mean_abs"}, float or None, default="mean_abs"
        Divide ``y`` by ``mean|y_train|`` ("mean_abs") or by a given float before training, and
        multiply back at prediction (``None``: train on ``y`` as it is). The paper's real-data
        preprocessing does this outside the model. The default makes the estimator
        scale-equivariant: multiplying ``y`` by ``c > 0`` multiplies the intervals by ``c``
        (``beta``, ``radius_floor`` and the training are in units of ``mean|y_train|``). With
        ``None`` or a fixed float and targets far larger than ``beta`` (e.g. prices in dollars)
        the sigmoid saturates, the centre steps stop at their incoming weights and CoCP silently
        reduces to ``n_alternations=0``. "mean_abs" divides by the magnitude, not the spread:
        for a target with a large offset and a small spread (``1e5 + noise``) centre it first
        (e.g. ``TransformedTargetRegressor`` with a ``StandardScaler``). Calibration is
        scale-free either way.
    val_scheme : {"global", "fold"}, default="global"
        "global": one validation set (``validation_size`` of the training pool) shared by every
        fold and phase, ``m`` fitted on ``K - 1`` folds and ``h`` on the remaining one (the
        authors' code). "fold": no global set; fold ``k`` validates, fold ``k + 1`` fits ``h``
        and the other folds fit ``m`` (the paper, App. C.3; needs ``n_folds >= 3``).
    validation_size : float or int, default=1/6
        Fraction (or number) of the non-calibration rows used for validation ("global" only).
    calibration_size : float, int or splitter, default=0.25
        Fraction (or number) of the rows of ``fit`` held out for calibration. With the default
        fractions, ``fit`` on 80 % of a data set reproduces the paper's 50/10/20/20 split. A
        scikit-learn splitter with ``split(X, y, groups)`` (e.g. ``GroupShuffleSplit(n_splits=1,
        test_size=0.25)``, ``PredefinedSplit``) gives the calibration rows instead: its first
        split's test part calibrates, its training part is the pool that the validation set
        and the folds are drawn from (``groups`` passed to ``fit`` reach its ``split``). The
        parts must be disjoint and non-empty.
    centre_module, radius_module : torch.nn.Module, callable or None, default=None
        Replace the default ``hidden_layer_sizes`` ReLU network. A callable is called with
        ``n_features`` and must return a module mapping ``(n, n_features)`` float32 tensors to
        ``(n,)`` or ``(n, 1)`` (it is converted with ``module.float()`` for training, and
        must map float64 tensors after ``module.double()``, for prediction); an instance is
        deep-copied for every fold (so folds then share
        its initial weights). The radius network's output goes through ``softplus`` plus
        ``radius_floor``.
    hidden_layer_sizes : tuple of int, default=(64, 64)
        Hidden layer widths of the default networks.
    lr : float, default=1e-3
        AdamW learning rate at the start of every phase.
    weight_decay : float, default=1e-5
        AdamW weight decay.
    optimizer : "adamw" or AdamWOptimizer, default="adamw"
        Optimiser settings besides ``lr`` and ``weight_decay``: the floor ``lr_min`` of the
        cosine schedule (:class:`~sklearn_conformal.regression.AdamWOptimizer`; the authors use
        ``lr_min=2e-4`` on real data). Passed as an object, its parameters are nested ones
        (``optimizer__lr_min`` for ``set_params`` and ``GridSearchCV``).
    gradient_clip : float or None, default=5.0
        Gradient-norm clipping (``0`` or ``None`` disables).
    batch_size : int, default=512
        Minibatch size.
    max_epochs : int, default=1000
        Epoch budget per phase (also the cosine period).
    patience : int, default=100
        Early-stopping patience per phase.
    min_delta : float, default=1e-6
        Minimal decrease of the validation loss counted as an improvement.
    radius_floor : float, default=1e-6
        Added to the softplus radius so that a collapsing radius network (e.g. constant targets)
        keeps the normalised scores finite; in units of the rescaled target.
    device : str or torch.device, default="cpu"
        Torch device for training: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
        ``torch.device`` (checked in ``fit``: an unavailable device raises a ValueError). The
        fitted networks are moved to the CPU (prediction and pickles are CPU-only).
    n_jobs : int or None, default=None
        Folds trained in parallel (``None`` = 1), each worker taking the next fold when free:
        the default networks in ``n_jobs`` threads of this process (their compiled training
        epochs release the GIL); user networks, trained by torch's mostly-Python loop, in this
        process and ``n_jobs - 1`` joblib (loky) worker processes; under a joblib backend the
        caller sets (``parallel_backend("dask")``), tasks of ``sklearn.utils.parallel.Parallel``
        in its workers. Results do not depend on it.
    torch_threads : int or None, default=1
        Torch intra-op threads while training a fold (restored afterwards); the small default
        networks train fastest single-threaded, and parallel folds must not oversubscribe cores.
        ``None`` keeps torch's setting.
    random_state : int, RandomState instance or None, default=None
        Seeds the splits, the fold assignment, the initial weights and the minibatch order. Torch
        draws come from generators of each fold's own: the global torch generator is neither used
        nor advanced, and fits running in concurrent threads equal the serial fits bit for bit
        (a user module's dropout, alpha dropout, RReLU and Gumbel-softmax draws included).
    verbose : int, default=0
        Print one line per phase (fold, epochs, best epoch, validation loss, seconds) and show
        a progress bar over the ``n_folds x (2 n_alternations + 2)`` phases (tqdm if installed,
        e.g. with the ``notebook`` extra, else plain lines on stderr; with ``n_jobs`` other than
        1 it advances as folds finish). Results do not depend on it.
    hidden_sizes, grad_clip, lr_min : deprecated
        Former names of ``hidden_layer_sizes``, ``gradient_clip`` and ``optimizer__lr_min``
        (the names :class:`~sklearn_conformal.classification.CaCTClassifier` uses); still
        honoured, with a ``FutureWarning``.

    Attributes
    ----------
    centres_ : list of torch.nn.Module
        The ``n_folds`` centre networks (CPU, eval mode). They train in float32 and are stored
        as float64 copies, so predictions do not depend on the other rows of the call (float32
        kernels round differently by batch shape) and inputs up to the float64 range stay finite.
    radii_ : list of torch.nn.Module
        The ``n_folds`` radius networks (including the softplus head), float64 like ``centres_``.
    history_ : list of list of dict
        Per fold, one record per phase: ``phase``, ``epochs``, ``best_epoch``,
        ``initial_valid_loss``, ``best_valid_loss``, ``seconds``.
    stages_ : list of (list, list)
        For ``t = 0, ..., n_alternations``, the fold centres and radii after ``t`` alternations
        and a radius fit (the last stage equals ``centres_``, ``radii_``); see
        :meth:`staged_predict_interval`.
    staged_conformity_scores_ : list of ndarray
        Calibration scores of every stage.
    fit_seconds_ : float
        Wall time of the network training.
    y_scale_ : float
        Factor the target was divided by during training.
    conformity_scores_ : ndarray of shape (n_calibration,)
        Calibration scores ``|y - m(x)| / h(x)``.
    confidence_level_ : float
        The level ``quantile_`` belongs to (``confidence_level`` at fit). Predictions follow
        ``confidence_level``, also when it is changed by ``set_params`` without refitting; the
        threshold is then recomputed from the stored calibration scores.
    quantile_ : float
        Conformal factor ``q`` at ``confidence_level`` (``inf`` if the calibration set is too
        small).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.

    See Also
    --------
    SplitConformalRegressor : absolute, normalized and CQR split-conformal baselines.

    Examples
    --------
    >>> from sklearn_conformal.datasets import make_heteroscedastic_regression
    >>> from sklearn_conformal.regression import CoCPRegressor
    >>> X, y = make_heteroscedastic_regression(2000, noise="exponential", random_state=0)
    >>> model = CoCPRegressor(n_folds=2, n_alternations=1, max_epochs=20, random_state=0)
    >>> model.fit(X, y).predict_interval(X[:3]).shape
    (3, 2)
    """

    _parameter_constraints = {
        "confidence_level": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_folds": [Interval(numbers.Integral, 2, None, closed="left")],
        "n_alternations": [Interval(numbers.Integral, 0, None, closed="left")],
        "beta": [Interval(numbers.Real, 0, None, closed="neither")],
        "beta_end": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "target_scale": [
            StrOptions({"mean_abs"}),
            Interval(numbers.Real, 0, None, closed="neither"),
            None,
        ],
        "val_scheme": [StrOptions({"global", "fold"})],
        "validation_size": [
            Interval(numbers.Real, 0, 1, closed="neither"),
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
        "calibration_size": [
            Interval(numbers.Real, 0, 1, closed="neither"),
            Interval(numbers.Integral, 1, None, closed="left"),
            HasMethods(["split"]),
        ],
        "centre_module": [None, callable],
        "radius_module": [None, callable],
        "hidden_layer_sizes": ["array-like"],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "optimizer": [StrOptions({"adamw"}), AdamWOptimizer],
        "gradient_clip": [Interval(numbers.Real, 0, None, closed="left"), None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "patience": [Interval(numbers.Integral, 1, None, closed="left")],
        "min_delta": [Interval(numbers.Real, 0, None, closed="left")],
        "radius_floor": [Interval(numbers.Real, 0, None, closed="left")],
        "device": "no_validation",  # str or torch.device, checked in fit (torch imported there)
        "n_jobs": [numbers.Integral, None],
        "torch_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "hidden_sizes": [StrOptions({"deprecated"}), "array-like"],
        "grad_clip": [StrOptions({"deprecated"}), Interval(numbers.Real, 0, None, closed="left")],
        "lr_min": [StrOptions({"deprecated"}), Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        confidence_level=0.9,
        n_folds=4,
        n_alternations=5,
        beta=0.005,
        beta_end=None,
        target_scale="mean_abs",
        val_scheme="global",
        validation_size=1 / 6,
        calibration_size=0.25,
        centre_module=None,
        radius_module=None,
        hidden_layer_sizes=(64, 64),
        lr=1e-3,
        weight_decay=1e-5,
        optimizer="adamw",
        gradient_clip=5.0,
        batch_size=512,
        max_epochs=1000,
        patience=100,
        min_delta=1e-6,
        radius_floor=1e-6,
        device="cpu",
        n_jobs=None,
        torch_threads=1,
        random_state=None,
        verbose=0,
        hidden_sizes="deprecated",
        grad_clip="deprecated",
        lr_min="deprecated",
    ):
        self.confidence_level = confidence_level
        self.n_folds = n_folds
        self.n_alternations = n_alternations
        self.beta = beta
        self.beta_end = beta_end
        self.target_scale = target_scale
        self.val_scheme = val_scheme
        self.validation_size = validation_size
        self.calibration_size = calibration_size
        self.centre_module = centre_module
        self.radius_module = radius_module
        self.hidden_layer_sizes = hidden_layer_sizes
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.gradient_clip = gradient_clip
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_delta = min_delta
        self.radius_floor = radius_floor
        self.device = device
        self.n_jobs = n_jobs
        self.torch_threads = torch_threads
        self.random_state = random_state
        self.verbose = verbose
        self.hidden_sizes = hidden_sizes
        self.grad_clip = grad_clip
        self.lr_min = lr_min

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # score() is the negative interval score, not R^2, so sklearn's "score > 0.5" check
        # does not apply
        tags.regressor_tags.poor_score = True
        # GPU kernels (atomics in reductions) are not bit-reproducible; the CPU path is
        from .._training._validation import device_type

        tags.non_deterministic = device_type(self.device) != "cpu"
        return tags

    # ----------------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, **fit_params):
        """Split, train the ``n_folds`` centre/radius pairs and calibrate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        **fit_params : dict
            Only ``groups`` (one label per sample), for a splitter ``calibration_size`` (with
            metadata routing enabled: what its ``split`` requests). Other metadata, e.g.
            ``sample_weight``, is refused with a TypeError: the networks are trained on
            unweighted losses, and the coverage guarantee is for unweighted exchangeable
            calibration data, so silently dropping weights would mislead.

        Returns
        -------
        self : CoCPRegressor
        """
        from .._training._validation import check_device, check_float32_range

        refuse_fit_metadata(
            self, fit_params,
            "CoCPRegressor trains its networks on unweighted losses. Resample the rows "
            "according to the weights (e.g. rng.choice(n, size=n, p=w / w.sum())) before fit, "
            "or use SplitConformalRegressor with an estimator that takes sample_weight.",
        )

        device = check_device(self.device, "CoCPRegressor")
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        check_float32_range(
            X, "X", "CoCPRegressor",
            "standardise the features first, e.g. make_pipeline(StandardScaler(), "
            "CoCPRegressor()).",
        )
        level = check_confidence_level(self.confidence_level)
        if self.val_scheme == "fold" and self.n_folds < 3:
            raise ValueError(
                f"val_scheme='fold' needs n_folds >= 3 (validation, radius and centre folds), "
                f"got n_folds={self.n_folds}."
            )
        hidden_layer_sizes, gradient_clip, optimizer = self._renamed_params()
        hidden = np.asarray(hidden_layer_sizes)
        if hidden.ndim != 1 or hidden.size == 0 or np.any(hidden < 1) or not np.all(
            np.equal(np.mod(hidden, 1), 0)
        ):
            raise ValueError(
                f"hidden_layer_sizes must be a non-empty sequence of positive integers, got "
                f"{hidden_layer_sizes!r}."
            )
        n = X.shape[0]
        rng = check_random_state(self.random_state)
        if is_splitter(self.calibration_size):
            groups = splitter_params(self, fit_params, n).get("groups")
            pool, cal = split_indices(y, self.calibration_size, None, X=X, groups=groups)
            n_cal, n_val = _split_sizes(
                len(pool) + len(cal), len(cal), self.validation_size, self.val_scheme,
                self.n_folds,
            )
            pool = rng.permutation(pool)
            val, train = pool[:n_val], pool[n_val:]
        else:
            n_cal, n_val = _split_sizes(
                n, self.calibration_size, self.validation_size, self.val_scheme, self.n_folds
            )
            perm = rng.permutation(n)
            cal, val, train = perm[:n_cal], perm[n_cal : n_cal + n_val], perm[n_cal + n_val :]
        fold_seed = int(rng.randint(np.iinfo(np.int32).max - self.n_folds))

        y_train = y[train]
        if self.target_scale is None:
            scale = 1.0
        elif self.target_scale == "mean_abs":
            scale = float(np.mean(np.abs(y_train)))
            if not np.isfinite(scale) or scale <= 0:  # y == 0 everywhere: nothing to rescale
                scale = 1.0
        else:
            scale = float(self.target_scale)
        self.y_scale_ = scale

        params = {
            "confidence_level": level,
            "n_alternations": int(self.n_alternations),
            "beta": float(self.beta),
            "beta_end": None if self.beta_end is None else float(self.beta_end),
            "centre_module": self.centre_module,
            "radius_module": self.radius_module,
            "hidden_layer_sizes": tuple(int(h) for h in hidden),
            "lr": float(self.lr),
            "lr_min": float(optimizer.lr_min),
            "weight_decay": float(self.weight_decay),
            "gradient_clip": float(gradient_clip or 0.0),
            "batch_size": int(self.batch_size),
            "max_epochs": int(self.max_epochs),
            "patience": int(self.patience),
            "min_delta": float(self.min_delta),
            "radius_floor": float(self.radius_floor),
            "device": device,
        }
        data = (X[train], y_train / scale, X[val], y[val] / scale)
        check_float32_range(
            np.concatenate([data[1], data[3]]), "y (after target_scale)", "CoCPRegressor",
            "rescale the target (target_scale='mean_abs' or a float).",
        )
        assignments = _fold_assignments(len(train), self.n_folds, self.val_scheme, fold_seed)
        from .._training._phases import fit_fold, folds_release_gil

        tic = time.perf_counter()
        n_jobs = 1 if self.n_jobs is None else self.n_jobs
        phases = 2 * int(self.n_alternations) + 2  # warm start, T x (radius, centre), radius
        with progress(self.n_folds * phases, "CoCP training phases", self.verbose) as bar:
            # in this process the bar advances per phase; from workers, per finished fold
            on_phase = bar.update if (n_jobs == 1 and self.verbose) else None
            jobs = (
                delayed(fit_fold)(
                    k, self.n_folds, data, assignments[k], params, fold_seed + k,
                    self.torch_threads, self.verbose, on_phase,
                )
                for k in range(self.n_folds)
            )
            if n_jobs == 1:
                results = list(_run_sequential(jobs))
            elif folds_release_gil(params) and default_process_pool():
                # GIL-free compiled epochs: folds side by side in threads of this process,
                # without a worker's start (importing torch: 3 to 4 s of a 20 s fit)
                results = []
                for r in parallel(n_jobs, prefer="threads")(jobs):
                    results.append(r)
                    bar.update(phases)
            elif default_process_pool():
                # worker processes for user networks, trained by torch: two folds in threads
                # of one process share its GIL, and the small networks' training loop is mostly
                # Python (on two idle cores, n = 20,000, T = 5: 75 s in threads against 61 s
                # in processes before the compiled epochs); this process trains folds too, so
                # n_jobs=2 starts one worker (torch's import, seconds)
                results = run_here_and_in_processes(
                    jobs, n_jobs, on_result=lambda _: bar.update(phases)
                )
            else:
                # a backend set by the caller (dask) runs the same tasks in its workers
                results = []
                for r in parallel(n_jobs, prefer="processes")(jobs):
                    results.append(r)
                    bar.update(phases)
        # the networks trained in float32; they predict in float64, so that a row's prediction
        # does not depend on the other rows of the call (float32 kernels round by batch shape)
        # and inputs up to the float64 range stay finite
        from .._training._inference import float64_copy

        def copy64(module):
            return float64_copy(module, X[train[:2]], "CoCPRegressor")

        self.centres_ = [copy64(r[0]) for r in results]
        self.radii_ = [copy64(r[1]) for r in results]
        self.history_ = [r[2] for r in results]
        # stage t: every fold's (centre, radius) after t alternations plus a radius fit
        self.stages_ = [
            ([copy64(r[3][t][0]) for r in results], [copy64(r[3][t][1]) for r in results])
            for t in range(self.n_alternations + 1)
        ]
        self.fit_seconds_ = time.perf_counter() - tic
        if self.verbose:
            print(f"[CoCP] trained {self.n_folds} folds in {self.fit_seconds_:.1f} s", flush=True)

        centre, radius = self._centre_radius(X[cal])
        self.conformity_scores_ = np.abs(y[cal] - centre) / radius
        self.staged_conformity_scores_ = []
        for centres, radii in self.stages_:
            c, r = self._centre_radius(X[cal], centres, radii)
            self.staged_conformity_scores_.append(np.abs(y[cal] - c) / r)
        # the level of the stored factor; predictions follow self.confidence_level (also after
        # set_params without refitting) and recompute q when it differs
        self.confidence_level_ = level
        self.quantile_ = self._quantile(level)
        return self

    def _renamed_params(self):
        """``hidden_layer_sizes``, ``gradient_clip`` and the optimiser object, from the former
        names (with a FutureWarning) where those are set."""
        hidden, clip = self.hidden_layer_sizes, self.gradient_clip
        optimizer = resolve(self.optimizer, {"adamw": AdamWOptimizer})
        renamed = {
            "hidden_sizes": "hidden_layer_sizes (as in CaCTClassifier)",
            "grad_clip": "gradient_clip (as in CaCTClassifier)",
            "lr_min": "optimizer=AdamWOptimizer(lr_min=...)",
        }
        for old, new in renamed.items():
            value = getattr(self, old)
            if isinstance(value, str) and value == "deprecated":
                continue
            warnings.warn(
                f"CoCPRegressor's {old} was renamed: use {new}. {old} will be removed in a "
                "future version.",
                FutureWarning,
                stacklevel=4,  # the caller of fit (through sklearn's fit context)
            )
            if old == "hidden_sizes":
                hidden = value
            elif old == "grad_clip":
                clip = value
            else:
                optimizer.set_params(lr_min=value).check()
        return hidden, clip, optimizer

    def get_metadata_routing(self):
        """Routing of metadata: ``fit``'s ``groups`` (or what it requests) goes to a splitter
        ``calibration_size``'s ``split``; nothing else is consumed.

        Returns
        -------
        routing : MetadataRouter
        """
        return add_splitter_routing(MetadataRouter(owner=self), self.calibration_size)

    # ----------------------------------------------------------------------------------------
    def _centre_radius(self, X, centres=None, radii=None):
        """Ensemble centre and radius in the units of ``y`` (float64)."""
        import torch

        from .._training._inference import forward_float64

        centres = self.centres_ if centres is None else centres
        radii = self.radii_ if radii is None else radii
        X = np.ascontiguousarray(X, dtype=np.float64)
        centre = torch.stack([forward_float64(m, X).reshape(-1) for m in centres]).mean(0)
        radius = torch.stack([forward_float64(h, X).reshape(-1) for h in radii]).mean(0)
        centre = centre.numpy().astype(np.float64) * self.y_scale_
        # the floor also guards user radius modules whose output may underflow
        floor = max(self.radius_floor, np.finfo(np.float32).tiny)
        radius = np.maximum(radius.numpy().astype(np.float64), floor) * self.y_scale_
        return centre, radius

    def _quantile(self, level):
        q = conformal_quantile(self.conformity_scores_, level)
        if not np.isfinite(q):
            warn_small_calibration(len(self.conformity_scores_), level)
        return q

    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

    def predict(self, X):
        """Ensemble centre ``m(x)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        X = self._check_X(X)
        return self._centre_radius(X)[0]

    def predict_radius(self, X):
        """Uncalibrated ensemble radius ``h(x) > 0`` (the interval's half-width before ``q``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        radius : ndarray of shape (n_samples,)
        """
        X = self._check_X(X)
        return self._centre_radius(X)[1]

    def predict_interval(self, X, confidence_level=None):
        """Conformal intervals ``[m(x) - q h(x), m(x) + q h(x)]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float, sequence of floats or None, default=None
            Override of the fitted ``confidence_level``; ``q`` is recomputed from
            ``conformity_scores_`` (the networks were trained for the fitted level, so the
            interval stays valid but may be less efficient at another level). A sequence
            gives the intervals at each of its levels, stacked on a last axis.

        Returns
        -------
        intervals : ndarray of shape (n_samples, 2) or (n_samples, 2, n_levels)
            Lower and upper bounds; infinite when the calibration set is too small.
            ``intervals[:, :, j]`` is the call at ``confidence_level[j]`` alone. After
            ``set_output(predict="pandas")``, a DataFrame with columns ``lower``, ``upper``
            (MultiIndex ``(confidence_level, bound)`` for several levels) and the index of
            ``X``.
        """
        X_checked = self._check_X(X)
        centre, radius = self._centre_radius(X_checked)

        def at_level(level):
            if level == self.confidence_level_:
                q = self.quantile_
                if not np.isfinite(q):
                    warn_small_calibration(len(self.conformity_scores_), level)
            else:
                q = self._quantile(level)
            if np.isinf(q):
                half = np.full_like(radius, np.inf)
            else:
                half = q * radius
            return np.column_stack([centre - half, centre + half])

        return per_level(self, X, confidence_level, at_level, "interval")

    def staged_predict_interval(self, X, confidence_level=None):
        """Conformal intervals of the models with ``t = 0, ..., n_alternations`` alternations.

        Stage ``t`` is exactly what ``fit`` with ``n_alternations=t`` (same other parameters and
        ``random_state``) returns: its phases are a prefix of this fit's, so the ablation over
        ``T`` costs one fit. Each stage is calibrated on the same calibration set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        confidence_level : float or None, default=None

        Yields
        ------
        intervals : ndarray of shape (n_samples, 2) or (n_samples, 2, n_levels), or DataFrame
            As :meth:`predict_interval` returns them.
        """
        X_checked = self._check_X(X)
        check_levels(confidence_level, self.confidence_level)  # fail before the first stage
        for (centres, radii), scores in zip(self.stages_, self.staged_conformity_scores_):
            centre, radius = self._centre_radius(X_checked, centres, radii)

            def at_level(level, scores=scores, centre=centre, radius=radius):
                q = conformal_quantile(scores, level)
                if not np.isfinite(q):
                    warn_small_calibration(len(scores), level)
                half = np.full_like(radius, np.inf) if np.isinf(q) else q * radius
                return np.column_stack([centre - half, centre + half])

            yield per_level(self, X, confidence_level, at_level, "interval")


def _run_sequential(jobs):
    """Run ``delayed`` calls sequentially in this process (no pickling, no joblib)."""
    for func, args, kwargs in jobs:
        # sklearn's delayed wraps the function to carry the configuration to joblib workers
        yield getattr(func, "function", func)(*args, **kwargs)
