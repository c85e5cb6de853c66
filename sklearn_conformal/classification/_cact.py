"""Class-adaptive conformal training (CaCT) with class-wise augmented-Lagrangian multipliers.

The estimator composes a skorch net built inside ``fit`` (``net_``) and the shared split-conformal
calibrator, so every objective (CaCT, ConfTr, plain or class-balanced cross-entropy, CALS) shares the
data splits, the calibration and the metrics. Torch is imported only here and in ``_training``.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.model_selection import PredefinedSplit
from sklearn.utils._param_validation import HasMethods, Interval, RealNotInt, StrOptions
from sklearn.utils.metadata_routing import MetadataRouter
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._core import ClassificationConformalizer
from .._core._calibrators import MODES
from ..conformity_scores._classification import CLASSIFICATION_SCORES
from .._estimator_mixins import ConformalClassifierMixin
from .._estimator_utils import (
    add_splitter_routing,
    is_splitter,
    refuse_fit_metadata,
    split_calibration,
    split_indices,
    splitter_params,
)
from .._training._cact import fit_network
from .._training._inference import float64_copy, forward_float64
from .._training._params import MULTIPLIERS, OBJECTIVES, SGDOptimizer, resolve
from .._training._random import RandomScope
from .._training._soft_quantile import QUANTILE_METHODS
from .._training._validation import check_device, check_float32_range, device_type
from ..exceptions import EmptyClassWarning


_X_REMEDY = (
    "standardise the features first, e.g. make_pipeline(StandardScaler(), CaCTClassifier())."
)


def _check_labels(y, name):
    """Class labels of one kind (numbers or strings) as an array, or a ValueError naming ``name``.

    Object arrays are inspected element by element: missing labels (None, NaN) and a mix of
    strings and numbers are rejected with the offending values; object arrays of numbers become
    numeric arrays (sklearn would call them of unknown type).
    """
    y = np.asarray(y)
    if y.dtype.kind == "f" and np.isnan(y).any():
        missing = y[np.isnan(y)].tolist()
    elif y.dtype == object:
        missing = [v for v in y.ravel() if v is None or (isinstance(v, float) and np.isnan(v))]
    else:
        missing = []
    if missing:
        raise ValueError(
            f"{name} contains missing labels ({missing[0]!r}, {len(missing)} in all); "
            "CaCTClassifier needs a class label for every sample: drop those samples or "
            "give them a class of their own."
        )
    if y.dtype == object:
        flat = y.ravel()
        is_str = np.array([isinstance(v, str) for v in flat], dtype=bool)
        is_num = np.array(
            [isinstance(v, (Integral, Real, np.bool_)) for v in flat], dtype=bool
        )
        if is_str.any() and not is_str.all():
            other = flat[~is_str][0]
            raise ValueError(
                f"{name} mixes label types: strings (e.g. {flat[is_str][0]!r}) and "
                f"{type(other).__name__} (e.g. {other!r}); CaCTClassifier needs labels of one "
                f"kind, e.g. {name}.astype(str)."
            )
        if not is_str.any():
            if not is_num.all():
                other = flat[~is_num][0]
                raise ValueError(
                    f"{name} holds labels of type {type(other).__name__} (e.g. {other!r}); "
                    "CaCTClassifier needs int, bool or str labels."
                )
            y = np.asarray(flat.tolist()).reshape(y.shape)
    try:
        check_classification_targets(y)
    except ValueError as exc:
        raise ValueError(
            f"{name} must hold class labels (ints, bools or strings), got e.g. "
            f"{y.ravel()[:3].tolist()} ({exc}). CaCTClassifier is a classifier: for a "
            "continuous target use a conformal regressor."
        ) from exc
    return y


def _label_kind(y):
    return "str" if y.dtype.kind in "OUS" else "numeric"


class CaCTClassifier(ConformalClassifierMixin, ClassifierMixin, BaseEstimator):
    """Conformal training with class-wise multipliers (CaCT), then split-conformal calibration.

    ``fit`` splits the data into training, ALM-validation and calibration parts (disjoint), trains a
    torch module with cross-entropy (``pretrain_epochs``), fine-tunes it with the chosen
    ``objective`` (``max_epochs``), and calibrates prediction sets on the calibration part with the
    exact finite-sample threshold, so ``predict_set`` has the usual coverage guarantee whatever the
    training did.

    CaCT (Class Adaptive Conformal Training; Marani, Silva-Rodríguez, Ben Ayed, Vakalopoulou,
    Christodoulidis & Dolz) penalises the class-mean smooth set size ``d_k`` of every class ``k``
    with its own multiplier: the batch loss is
    ``CE + mean_k P(d_k / eta - 1, lambda_k, rho_k)`` and after every epoch
    ``lambda_k <- clip(P'(z_k), lambda_min, lambda_max)`` with ``z_k`` measured on the validation
    split (augmented Lagrangian, ``multipliers="alm"``), or a multiplicative heuristic rule
    (``"hr"``). Classes whose sets are too large (typically the rare ones) get larger multipliers.

    **Defaults are not the paper's literal settings.** With the paper's target ``eta = 1`` at a
    training miscoverage of 0.01 the constraints are infeasible on small long-tailed problems: every
    multiplier grows by about ``rho * (K - 1)`` per epoch and test sets end up holding every label
    (design notes, sections 9 and 12). The defaults therefore fine-tune from a cross-entropy model
    (``pretrain_epochs``), use a relative target ``target_size="auto"`` (``eta = max(1,
    target_ratio * mean validation set size of the starting model)``, ``target_ratio=0.6``),
    ``rho_init=0.01``, ``lambda_max=0.5``, ``rho_max=10``, hard validation sizes, temperature
    0.5, gradient-norm clipping at 2 and a class-balanced cross-entropy term
    (``class_weight="balanced"``: on a grid of long-tailed problems the defaults were not tuned
    on, it is what makes CaCT beat budget-matched cross-entropy and tuned ConfTr in most cells).
    The literal settings stay reachable: ``class_weight=None,
    pretrain_epochs=0, objective=CaCTObjective(target_size=1.0),
    multipliers=ALMMultipliers(rho_init=1.0, lambda_max=1e6, rho_max=None,
    validation_sizes="soft"), gradient_clip=None`` (and an
    :class:`~sklearn_conformal.exceptions.InfeasibleConstraintWarning` then reports the runaway
    multipliers).

    **Parameter objects.** The objective, multiplier and optimiser settings are grouped in small
    parameter objects (:class:`~sklearn_conformal.classification.CaCTObjective`,
    :class:`~sklearn_conformal.classification.ALMMultipliers`,
    :class:`~sklearn_conformal.classification.SGDOptimizer`, ...); the strings ``"cact"``,
    ``"alm"``, ``"sgd"`` ... are shortcuts for them with their defaults. Passed as objects, their
    parameters are nested parameters of the estimator, e.g. ``multipliers__rho_init`` for
    ``set_params`` and ``GridSearchCV``.

    Parameters
    ----------
    module : torch.nn.Module, callable or None, default=None
        The network; it must map a float32 batch ``(n, n_features)`` to logits ``(n, n_classes)``
        (training; the module is converted with ``module.float()``), and the same in float64
        after ``module.double()`` (prediction).
        ``None`` builds a ReLU MLP with ``hidden_layer_sizes`` (``()`` gives a linear model). A
        callable (e.g. a module class) is called as ``module(n_features, n_classes)``; a module
        instance is deep-copied (its weights are the initialisation).
    objective : {"cact", "conftr", "ce", "cals", "focal"} or objective object, default="cact"
        Fine-tuning objective: CaCT (class-wise multipliers on class-mean set sizes,
        :class:`~sklearn_conformal.classification.CaCTObjective`), ConfTr
        (``CE + size_weight * mean max(0, |C| - eta)``,
        :class:`~sklearn_conformal.classification.ConfTrObjective`), cross-entropy only
        (:class:`~sklearn_conformal.classification.CrossEntropyObjective`), CALS (class-wise
        multipliers on logit margins, Liu et al. 2023,
        :class:`~sklearn_conformal.classification.CALSObjective`) or the focal loss (Lin et al.
        2017; ``gamma`` in :class:`~sklearn_conformal.classification.FocalObjective`). A string
        is the object with its defaults.
    multipliers : {"alm", "hr"} or multiplier object, default="alm"
        Multiplier rule of the CaCT and CALS objectives: augmented Lagrangian
        (:class:`~sklearn_conformal.classification.ALMMultipliers`) or the heuristic rule
        (:class:`~sklearn_conformal.classification.HRMultipliers`; with the CALS objective:
        CALS-HR). Unused by the other objectives.
    optimizer : "sgd" or SGDOptimizer, default="sgd"
        SGD settings besides ``lr`` and ``weight_decay``: momentum (Nesterov) and the
        fine-tuning learning rate (:class:`~sklearn_conformal.classification.SGDOptimizer`).
    class_weight : {"balanced"}, dict or None, default="balanced"
        Weights of the cross-entropy term, in the pre-training and in every fine-tuning
        objective (a dict maps labels to weights; ``"balanced"`` weights classes inversely to
        their training frequency: a class-balanced primal; ``None``: unweighted). The default
        is the evidence of the sampled long-tailed grid (``doc/cact.rst``): with the balanced
        primal CaCT meets its acceptance criterion in most cells, unweighted in few.
    confidence_level : float in (0, 1), default=0.9
        Coverage target of the calibrated sets.
    conformity_score : str or BaseClassificationScore, default="lac"
        Test-time score (``"lac"`` is THR): a shortcut of
        :func:`~sklearn_conformal.conformity_scores.check_classification_score` or a score
        object, as in :class:`SplitConformalClassifier`.
    mode : {"marginal", "class", "cluster"} or BaseCalibrator, default="marginal"
        Split CP, LabelCP or ClusterCP calibration, or a calibrator object (e.g. a
        :class:`~sklearn_conformal.calibrators.MondrianCalibrator` on a column or a callable of
        ``X``; CaCT takes no ``groups=`` metadata for it).
    randomized : bool, default=True
        Randomised APS/RAPS; ``False`` is the non-randomised rule of
        :class:`SplitConformalClassifier` (the crossing label kept, never empty).
    k_reg, lambda_reg : int, float, default=1, 0.1
        RAPS regularisation (:class:`SplitConformalClassifier`'s defaults and measurements).
    hidden_layer_sizes : tuple of int, default=(64,)
        Hidden widths of the default MLP (ignored with a user ``module``).
    pretrain_epochs : int, default=30
        Cross-entropy epochs before fine-tuning (the paper fine-tunes from a CE model).
    max_epochs : int, default=30
        Fine-tuning epochs with ``objective``.
    select_epoch : bool, default=True
        With a validation split (``validation_size`` > 0 or ``validation_data``), keep the
        fine-tuning epoch, the pre-trained network included, whose network gives the smallest
        mean THR set size on the validation split at ``confidence_level`` (threshold from the
        validation scores themselves, so every candidate is compared at the same coverage):
        by construction the fitted network is never worse on that criterion than the one
        fine-tuning started from. ``False`` keeps the last epoch (the paper's protocol).
    batch_size : int, default=500
        Mini-batch size; half of each batch calibrates the training quantile, so at the training
        level 0.99 batches of at least 200 avoid reading the batch maximum.
    lr : float, default=0.05
        SGD (Nesterov momentum) learning rate of the pre-training (and of the fine-tuning unless
        ``optimizer`` sets ``finetune_lr``).
    weight_decay : float, default=0.0
    gradient_clip : float or None, default=2.0
        Gradient-norm clipping (CALS uses 2).
    train_confidence_level : float, default=0.99
        Level of the training quantile and of the validation sizes (``1 - alpha_train``).
    temperature : float, default=0.5
        Sigmoid temperature of the soft sets.
    soft_quantile : {"sortnet", "neuralsort", "hard"}, default="sortnet"
        Differentiable quantile of the batch calibration scores.
    steepness : float, default=10.0
        Sorting-network steepness.
    neuralsort_tau : float, default=0.1
    quantile_window : int or None, default=16
        Run the sorting network on the ``quantile_window`` batch scores whose ranks are nearest
        the quantile rank (at the training level 0.99 these are the largest scores), gradients
        flowing through their values; ``None`` sorts the whole calibration half. The full
        network has ``log2(n)(log2(n)+1)/2`` sequential stages (36 for a batch of 500) and made
        a fine-tuning epoch 2.2x a CE epoch in our timing; the window of 16 (10 stages) 1.24x.
    batch_calibration_fraction : float, default=0.5
    validation_size : float or int, default=0.15
        Share (or number) of the samples used for the ALM-validation split.
    calibration_size : float, int or splitter, default=0.25
        Share (or number) of the samples used for calibration (stratified by class where
        possible), or a scikit-learn splitter with ``split(X, y, groups)`` (e.g.
        ``GroupShuffleSplit(n_splits=1, test_size=0.25)``, ``PredefinedSplit``) whose first
        split's test part calibrates; ``groups`` passed to ``fit`` reach its ``split``. The
        parts must be disjoint and non-empty. ``fit``'s ``calibration_data`` is the same
        mechanism with the explicit rows (and excludes a splitter).
    device : str or torch.device, default="cpu"
        Training device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``
        (checked in ``fit``: an unavailable device raises a ValueError). Predictions run a
        float64 copy of the network on the CPU.
    random_state : int, RandomState instance or None, default=None
        Controls the splits, the torch initialisation, the batch order and split, and the APS/RAPS
        uniforms: equal seeds give equal sets bit for bit on CPU, also for fits running in
        concurrent threads. Torch draws come from generators of the fit's own; torch's global
        generator is neither used nor advanced by ``fit`` or the predictions (a user module's
        dropout, alpha dropout, RReLU and Gumbel-softmax draws included).
    verbose : int, default=0
        ``> 0`` prints skorch's per-epoch table (losses, multipliers, validation size) and
        shows skorch's :class:`~skorch.callbacks.ProgressBar` over the batches of each epoch
        (a tqdm widget in Jupyter). Results do not depend on it.

    Attributes
    ----------
    net_ : skorch.NeuralNetClassifier
        The trained net (labels encoded as ``0..K-1``), a ``ConformalNet`` of the training
        engine: during the fine-tune the objective is its second criterion
        ``train_objective_``, removed after ``fit``.
    inference_module_ : torch.nn.Module
        Float64 CPU copy of ``net_.module_`` that ``predict_proba`` and the calibration run:
        a float32 forward pass rounds differently for different batch shapes, so probabilities
        would change by ~1e-7 with the other rows of the call and their order.
    classes_ : ndarray of shape (n_classes,)
    multipliers_ : ndarray of shape (n_classes,) or None
        Final class-wise multipliers (``None`` for ``"ce"`` and ``"conftr"``).
    multiplier_history_ : ndarray of shape (n_updates + 1, n_classes) or None
        Multipliers after every epoch of fine-tuning (first row: initial values).
    rho_history_ : ndarray of shape (n_updates + 1, n_classes) or None
        Penalty parameters ``rho`` per epoch (``None`` for the heuristic rule, which has none).
    constraint_history_ : ndarray of shape (n_updates, n_classes) or None
        Class-mean normalised constraint ``d_k / eta - 1`` on the validation split per epoch.
    target_size_ : float or None
        The ``eta`` used.
    selected_epoch_ : int or None
        The fine-tuning epoch kept (``select_epoch``; 0: the pre-trained network), or None.
    validation_sizes_ : ndarray of shape (n_epochs + 1,) or None
        Mean validation THR set size at ``confidence_level`` of the starting network and after
        each fine-tuning epoch (``select_epoch``).
    history_ : list of dict
        skorch's per-epoch history (losses, ``dur``, ``phase`` ("pretrain" or "finetune"), ``lambda_mean``, ``lambda_max``,
        ``rho_max``, ``val_size``, ``val_z_max``).
    conformalizer_ : ClassificationConformalizer
    conformity_scores_ : ndarray of shape (n_calibration,)
    thresholds_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn_conformal.classification import CaCTClassifier
    >>> from sklearn_conformal.datasets import make_long_tailed_classification
    >>> X, y = make_long_tailed_classification(n_samples=600, n_classes=4, random_state=0)
    >>> clf = CaCTClassifier(pretrain_epochs=5, max_epochs=3, batch_size=128, random_state=0)
    >>> clf.fit(X, y).predict_set(X[:2]).shape
    (2, 4)
    """

    _parameter_constraints = {
        "module": [callable, None],
        "objective": [StrOptions(set(OBJECTIVES)), *OBJECTIVES.values()],
        "multipliers": [StrOptions(set(MULTIPLIERS)), *MULTIPLIERS.values()],
        "optimizer": [StrOptions({"sgd"}), SGDOptimizer],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "conformity_score": [
            StrOptions(set(CLASSIFICATION_SCORES)),
            HasMethods(["label_scores", "calibration_scores", "prediction_sets"]),
        ],
        "mode": [StrOptions(set(MODES)), HasMethods(["fit", "thresholds"])],
        "randomized": ["boolean"],
        "k_reg": [Interval(Integral, 0, None, closed="left")],
        "lambda_reg": [Interval(Real, 0, None, closed="left")],
        "hidden_layer_sizes": [tuple, list],
        "pretrain_epochs": [Interval(Integral, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "select_epoch": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "gradient_clip": [Interval(Real, 0, None, closed="neither"), None],
        "train_confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "soft_quantile": [StrOptions(set(QUANTILE_METHODS))],
        "steepness": [Interval(Real, 0, None, closed="neither")],
        "neuralsort_tau": [Interval(Real, 0, None, closed="neither")],
        "quantile_window": [Interval(Integral, 2, None, closed="left"), None],
        "batch_calibration_fraction": [Interval(Real, 0, 1, closed="neither")],
        "validation_size": [
            Interval(RealNotInt, 0, 1, closed="neither"),
            Interval(Integral, 1, None, closed="left"),
        ],
        "calibration_size": [
            Interval(RealNotInt, 0, 1, closed="neither"),
            Interval(Integral, 1, None, closed="left"),
            HasMethods(["split"]),
        ],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        module=None,
        *,
        objective="cact",
        multipliers="alm",
        optimizer="sgd",
        class_weight="balanced",
        confidence_level=0.9,
        conformity_score="lac",
        mode="marginal",
        randomized=True,
        k_reg=1,
        lambda_reg=0.1,
        hidden_layer_sizes=(64,),
        pretrain_epochs=30,
        max_epochs=30,
        select_epoch=True,
        batch_size=500,
        lr=0.05,
        weight_decay=0.0,
        gradient_clip=2.0,
        train_confidence_level=0.99,
        temperature=0.5,
        soft_quantile="sortnet",
        steepness=10.0,
        neuralsort_tau=0.1,
        quantile_window=16,
        batch_calibration_fraction=0.5,
        validation_size=0.15,
        calibration_size=0.25,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.module = module
        self.objective = objective
        self.multipliers = multipliers
        self.optimizer = optimizer
        self.class_weight = class_weight
        self.confidence_level = confidence_level
        self.conformity_score = conformity_score
        self.mode = mode
        self.randomized = randomized
        self.k_reg = k_reg
        self.lambda_reg = lambda_reg
        self.hidden_layer_sizes = hidden_layer_sizes
        self.pretrain_epochs = pretrain_epochs
        self.max_epochs = max_epochs
        self.select_epoch = select_epoch
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.train_confidence_level = train_confidence_level
        self.temperature = temperature
        self.soft_quantile = soft_quantile
        self.steepness = steepness
        self.neuralsort_tau = neuralsort_tau
        self.quantile_window = quantile_window
        self.batch_calibration_fraction = batch_calibration_fraction
        self.validation_size = validation_size
        self.calibration_size = calibration_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, validation_data=None, calibration_data=None, **fit_params):
        """Split, train (CE, then the objective), and calibrate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        validation_data : tuple (X_val, y_val), optional
            Explicit ALM-validation set (e.g. a balanced one, as in the paper's protocol); by
            default ``validation_size`` of ``X`` is held out.
        calibration_data : tuple (X_cal, y_cal), optional
            Explicit calibration set; by default ``calibration_size`` of ``X`` is held out. It
            is the same mechanism as a splitter ``calibration_size``: the rows of
            ``calibration_data`` are appended to ``X`` and a ``PredefinedSplit`` marks them as
            the calibration part, so the result equals a fit on the concatenated data with
            ``calibration_size=PredefinedSplit(...)`` (same seed; a fractional
            ``validation_size`` is a share of the rows of ``X``), and all of ``X`` trains. It
            cannot be combined with a splitter ``calibration_size`` (a ValueError); a numeric
            ``calibration_size`` is then unused.
        **fit_params : dict
            Only ``groups`` (one label per sample of ``X``), for a splitter
            ``calibration_size`` (with metadata routing enabled: what its ``split`` requests).
            Other metadata, e.g. ``sample_weight``, is refused with a TypeError naming it: the
            network's training losses are unweighted per sample (``class_weight`` weighs
            classes) and calibration is never weighted.

        Returns
        -------
        self : object
        """
        refuse_fit_metadata(
            self, fit_params,
            "CaCTClassifier trains on losses that are not weighted per sample. Use "
            "class_weight for class-level weights, or resample the rows according to the "
            "weights before fit.",
        )
        if calibration_data is not None and is_splitter(self.calibration_size):
            raise ValueError(
                f"calibration_data and calibration_size={type(self.calibration_size).__name__} "
                "both choose the calibration rows; pass one of them (calibration_data is an "
                "explicit hold-out, a splitter picks rows of X)."
            )
        device = check_device(self.device, "CaCTClassifier")
        labels_checked = y is not None and np.asarray(y).ndim == 1
        if labels_checked:
            y = _check_labels(y, "y")  # before validate_data, whose NaN message names no label
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_float32_range(X, "X", "CaCTClassifier", _X_REMEDY)
        if not labels_checked:  # a column vector, raveled by validate_data
            y = _check_labels(y, "y")
        extra = [
            (name, data)
            for name, data in (("validation_data", validation_data), ("calibration_data", calibration_data))
            if data is not None
        ]
        checked = {}
        for name, (Xe, ye) in extra:
            Xe = validate_data(self, Xe, reset=False, dtype=np.float64)
            check_float32_range(Xe, f"{name}[0]", "CaCTClassifier", _X_REMEDY)
            ye = _check_labels(ye, f"{name}[1]")
            if _label_kind(ye) != _label_kind(y):
                raise ValueError(
                    f"{name}[1] holds {_label_kind(ye)} labels but y holds {_label_kind(y)} "
                    f"labels (e.g. {ye.ravel()[:1].tolist()[0]!r} and "
                    f"{y.ravel()[:1].tolist()[0]!r}); give both labels of the same type."
                )
            checked[name] = (Xe, ye)
        labels = np.concatenate([y] + [d[1] for d in checked.values()])
        self._label_encoder = LabelEncoder().fit(labels)
        self.classes_ = self._label_encoder.classes_
        K = len(self.classes_)
        if K < 2:
            raise ValueError(
                f"CaCTClassifier needs at least two classes; y has only one class ({self.classes_[0]!r})."
            )
        rng = check_random_state(self.random_state)
        y_idx = self._label_encoder.transform(y).astype(np.int64)

        # ---- disjoint splits: calibration first (never seen by training), then ALM validation.
        # One mechanism: explicit calibration_data is a PredefinedSplit over X + those rows.
        if "calibration_data" in checked:
            X_extra, y_extra = checked["calibration_data"]
            n = len(y_idx)
            X_all = np.concatenate([X, X_extra])
            y_all = np.concatenate([y_idx, self._encode(y_extra)])
            splitter = PredefinedSplit(np.r_[np.full(n, -1), np.zeros(len(y_extra), int)])
            groups = None
        else:
            X_all, y_all, splitter = X, y_idx, self.calibration_size
            groups = splitter_params(self, fit_params, len(y_idx)).get("groups")
        if is_splitter(splitter):
            rest, cal = split_indices(y_all, splitter, None, X=X_all, groups=groups)
            X_rest, X_cal, y_rest, y_cal = X_all[rest], X_all[cal], y_all[rest], y_all[cal]
        else:
            X_rest, X_cal, y_rest, y_cal = split_calibration(
                X, y_idx, self.calibration_size, rng.randint(2**31 - 1), stratify=True
            )
        if "validation_data" in checked:
            X_val, y_val = checked["validation_data"][0], self._encode(checked["validation_data"][1])
            X_tr, y_tr = X_rest, y_rest
        else:
            size = self.validation_size
            if isinstance(size, Real) and not isinstance(size, Integral):
                # validation_size is a share of all samples, not of what calibration left over
                size = min(max(int(round(size * len(y_idx))), 1), len(y_rest) - 1)
            X_tr, X_val, y_tr, y_val = split_calibration(
                X_rest, y_rest, size, rng.randint(2**31 - 1), stratify=True
            )
        self._warn_missing(y_val, K, "ALM-validation", "its multiplier stays at its initial value")
        self._warn_missing(y_cal, K, "calibration", "marginal/cluster modes fall back to the shared threshold, class mode to the full label set")

        # every torch draw of this fit comes from generators of its own (the global torch
        # generator is neither read nor advanced, so fits in concurrent threads are reproducible)
        scope = RandomScope(int(rng.randint(2**31 - 1)))
        # training runs in float32 (the range was checked above); calibration in float64
        self._train(
            X_tr.astype(np.float32), y_tr, X_val.astype(np.float32), y_val, K, scope, device
        )

        # ---- calibration with the shared conformalizer (exact finite-sample threshold)
        self.conformalizer_ = ClassificationConformalizer(
            score=self.conformity_score,
            mode=self.mode,
            randomized=self.randomized,
            k_reg=self.k_reg,
            lambda_reg=self.lambda_reg,
        ).fit(self._net_proba(X_cal), y_cal, K, self.confidence_level, random_state=rng, X=X_cal)
        self.conformity_scores_ = self.conformalizer_.conformity_scores_
        self.thresholds_ = self.conformalizer_.thresholds_
        return self

    def get_metadata_routing(self):
        """Routing of metadata: ``fit``'s ``groups`` (or what it requests) goes to a splitter
        ``calibration_size``'s ``split``; nothing else is consumed.

        Returns
        -------
        routing : MetadataRouter
        """
        return add_splitter_routing(MetadataRouter(owner=self), self.calibration_size)

    def _train(self, X_tr, y_tr, X_val, y_val, K, scope, device):
        # the string shortcuts become their parameter objects here, never in __init__
        objective = resolve(self.objective, OBJECTIVES)
        multipliers = resolve(self.multipliers, MULTIPLIERS)
        optimizer = resolve(self.optimizer, {"sgd": SGDOptimizer})
        result = fit_network(
            self, objective, multipliers, optimizer, X_tr, y_tr, X_val, y_val, K, scope, device
        )
        net, mult, z_history = result["net"], result["multipliers"], result["z_history"]
        self.target_size_ = result["target_size"]
        self.multipliers_ = None
        self.multiplier_history_ = None
        self.rho_history_ = None
        self.constraint_history_ = None
        if mult is not None:
            self.multipliers_ = mult.lambdas.copy()
            self.multiplier_history_ = np.asarray(mult.history)
            if mult.rule == "alm":
                self.rho_history_ = np.asarray(mult.rho_history)
            self.constraint_history_ = np.asarray(z_history) if z_history else None
            if z_history and objective.name == "cact" and mult.rule == "alm":
                mult.check_feasibility(z_history)
        selection = getattr(net, "epoch_selection_", None)
        self.selected_epoch_ = None if selection is None else selection.best_epoch_
        self.validation_sizes_ = None if selection is None else np.asarray(selection.sizes_)
        self.net_ = net
        # predictions run in float64 so that a row's probabilities do not depend on the batch
        self.inference_module_ = float64_copy(net.module_, X_tr[:2], "CaCTClassifier")
        self.history_ = [dict(row) for row in net.history]

    @staticmethod
    def _warn_missing(y_part, K, name, fallback):
        counts = np.bincount(y_part, minlength=K) if len(y_part) else np.zeros(K, int)
        missing = np.flatnonzero(counts == 0)
        if missing.size:
            warnings.warn(
                f"{missing.size} class(es) (indices {missing[:10].tolist()}) have no sample in the "
                f"{name} split; {fallback}.",
                EmptyClassWarning,
                stacklevel=3,
            )

    # ---------------------------------------------------------------------------- predict
    def _net_proba(self, X):
        logits = forward_float64(self.inference_module_, X)
        return torch.softmax(logits, dim=1).numpy()

    def predict_proba(self, X):
        """Softmax probabilities of the trained network, in the order of ``classes_``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._net_proba(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = device_type(self.device) != "cpu"
        return tags
