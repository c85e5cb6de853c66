"""Parameter objects of the torch estimators (torch-free).

Small scikit-learn estimators that group the optimiser, objective and multiplier parameters of
:class:`~sklearn_conformal.classification.CaCTClassifier` and
:class:`~sklearn_conformal.regression.CoCPRegressor`. Passed as ``optimizer=``, ``objective=`` or
``multipliers=``, their parameters are nested ones of the estimator (``get_params(deep=True)``
lists ``multipliers__rho_init``), so ``set_params`` and ``GridSearchCV`` reach them::

    GridSearchCV(CaCTClassifier(multipliers=ALMMultipliers()),
                 {"multipliers__rho_init": [0.01, 0.1]})

The string values of those parameters (``"alm"``, ``"hr"``, ``"cact"``, ``"focal"``, ...) are
shortcuts for the objects with their defaults; the estimators resolve them in ``fit``
(:func:`resolve`). This module imports no torch, so ``import sklearn_conformal`` stays torch-free.
"""

from numbers import Integral, Real

from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import Interval, StrOptions

__all__ = [
    "ALMMultipliers",
    "AdamWOptimizer",
    "CALSObjective",
    "CaCTObjective",
    "ConfTrObjective",
    "CrossEntropyObjective",
    "FocalObjective",
    "HRMultipliers",
    "SGDOptimizer",
    "resolve",
]


class _ParameterGroup(BaseEstimator):
    """Base of the parameter objects: a name (the string shortcut) and checked parameters."""

    #: the string shortcut of this object with its defaults
    name = None

    def check(self):
        """Validate the parameters (``InvalidParameterError``, a ValueError, naming them)."""
        self._validate_params()
        return self


# ------------------------------------------------------------------------------ optimisers
class SGDOptimizer(_ParameterGroup):
    """SGD settings of :class:`~sklearn_conformal.classification.CaCTClassifier`.

    The learning rate (``lr``) and the weight decay (``weight_decay``) are the estimator's own
    parameters, with the same names as in :class:`~sklearn_conformal.regression.CoCPRegressor`.

    Parameters
    ----------
    momentum : float in [0, 1), default=0.9
        Momentum (Nesterov when positive).
    finetune_lr : float or None, default=None
        Learning rate of the fine-tuning phase (``None``: ``lr``); the optimiser restarts there.
    """

    name = "sgd"
    _parameter_constraints = {
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(self, momentum=0.9, finetune_lr=None):
        self.momentum = momentum
        self.finetune_lr = finetune_lr


class AdamWOptimizer(_ParameterGroup):
    """AdamW and cosine-schedule settings of :class:`~sklearn_conformal.regression.CoCPRegressor`.

    Every phase starts a fresh AdamW at the estimator's ``lr`` (with its ``weight_decay``),
    annealed over ``max_epochs`` by a cosine schedule down to ``lr_min``.

    Parameters
    ----------
    lr_min : float, default=0.0
        Floor of the cosine schedule (the authors use 2e-4 on real data).
    """

    name = "adamw"
    _parameter_constraints = {"lr_min": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, lr_min=0.0):
        self.lr_min = lr_min


# ------------------------------------------------------------------------------ multipliers
class ALMMultipliers(_ParameterGroup):
    """Augmented-Lagrangian class-wise multipliers (CaCT's and CALS's outer step).

    After every fine-tuning epoch ``lambda_k <- clip(P'(z_k, lambda_k, rho_k), 1e-6,
    lambda_max)`` with ``z_k`` the class's normalised constraint on the validation split, and
    every ``rho_update_every`` epochs ``rho_k <- rho_growth * rho_k`` where the constraint did
    not improve (``z_k > rho_tol * max(0, z_prev_k)``), capped at ``rho_max``.

    Parameters
    ----------
    penalty : {"phr", "p2", "p3"}, default="phr"
        Penalty-Lagrangian function ``P``.
    lambda_init : float, default=1e-6
    rho_init : float, default=0.01
        Initial penalty parameter (paper: 1). With PHR an infeasible class raises its multiplier
        by about ``rho * z`` per epoch, so this sets how fast the multipliers rise.
    rho_growth : float, default=1.2
    rho_update_every : int, default=10
    rho_tol : float, default=1.0
    rho_max : float or None, default=10.0
    lambda_max : float, default=0.5
        Cap of the multipliers (paper: 1e6). With the class-mean reduction a multiplier
        ``lambda`` weighs each prediction-half sample's soft size by about
        ``lambda / (eta * n_pred)``, i.e. like a ConfTr ``size_weight`` of ``lambda / eta``;
        larger caps let infeasible classes drown the cross-entropy.
    validation_sizes : {"hard", "soft"}, default="hard"
        Set sizes used for the multiplier step (CaCT).
    """

    name = "alm"
    _parameter_constraints = {
        "penalty": [StrOptions({"phr", "p2", "p3"})],
        "lambda_init": [Interval(Real, 0, None, closed="left")],
        "rho_init": [Interval(Real, 0, None, closed="neither")],
        "rho_growth": [Interval(Real, 1, None, closed="left")],
        "rho_update_every": [Interval(Integral, 1, None, closed="left")],
        "rho_tol": [Interval(Real, 0, None, closed="left")],
        "rho_max": [Interval(Real, 0, None, closed="neither"), None],
        "lambda_max": [Interval(Real, 0, None, closed="neither")],
        "validation_sizes": [StrOptions({"hard", "soft"})],
    }

    def __init__(
        self,
        penalty="phr",
        lambda_init=1e-6,
        rho_init=0.01,
        rho_growth=1.2,
        rho_update_every=10,
        rho_tol=1.0,
        rho_max=10.0,
        lambda_max=0.5,
        validation_sizes="hard",
    ):
        self.penalty = penalty
        self.lambda_init = lambda_init
        self.rho_init = rho_init
        self.rho_growth = rho_growth
        self.rho_update_every = rho_update_every
        self.rho_tol = rho_tol
        self.rho_max = rho_max
        self.lambda_max = lambda_max
        self.validation_sizes = validation_sizes


class HRMultipliers(_ParameterGroup):
    """Heuristic-rule class-wise multipliers (CaCT eq. 9; CALS's HR variant).

    With ``P_k = lambda_k * e_k``, ``e_k`` the class's mean constraint excess on the validation
    split (CaCT: ``mean max(0, |C(x)| - eta)`` over the class's samples; CALS: ``mean_i max(0,
    z_ik)`` over all samples), after every fine-tuning epoch ``lambda_k <- mu * lambda_k`` if
    ``P_k > tau * P_k_prev`` and ``lambda_k / mu`` if ``P_k_prev > tau * P_k``, clipped to
    ``[1e-6, lambda_max]``. The training penalty is linear: ``lambda_k`` times the excess.

    Parameters
    ----------
    lambda_init : float, default=0.01
    mu : float >= 1, default=1.1
        Step factor.
    tau : float >= 1, default=1.1
        Hysteresis.
    lambda_max : float, default=0.5
    validation_sizes : {"hard", "soft"}, default="hard"
        Set sizes used for the multiplier step (CaCT).
    """

    name = "hr"
    _parameter_constraints = {
        "lambda_init": [Interval(Real, 0, None, closed="left")],
        "mu": [Interval(Real, 1, None, closed="left")],
        "tau": [Interval(Real, 1, None, closed="left")],
        "lambda_max": [Interval(Real, 0, None, closed="neither")],
        "validation_sizes": [StrOptions({"hard", "soft"})],
    }

    def __init__(self, lambda_init=0.01, mu=1.1, tau=1.1, lambda_max=0.5, validation_sizes="hard"):
        self.lambda_init = lambda_init
        self.mu = mu
        self.tau = tau
        self.lambda_max = lambda_max
        self.validation_sizes = validation_sizes


# ------------------------------------------------------------------------------ objectives
_TARGET = {
    "target_size": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
    "target_ratio": [Interval(Real, 0, None, closed="neither")],
}


class CaCTObjective(_ParameterGroup):
    """CaCT's fine-tuning objective: ``CE + reduce_k P(d_k / eta - 1, lambda_k, rho_k)``.

    ``d_k`` is the class-mean soft set size of class ``k`` on the prediction half of a batch;
    the multipliers follow ``multipliers``.

    Parameters
    ----------
    target_size : "auto" or float, default="auto"
        ``eta``. ``"auto"``: ``max(1, target_ratio * s0)`` with ``s0`` the starting model's mean
        hard set size on the validation split at ``train_confidence_level``.
    target_ratio : float, default=0.6
    penalty_reduction : {"mean", "sum"}, default="mean"
        Mean or sum of the class penalties in the batch loss.
    """

    name = "cact"
    _parameter_constraints = {
        **_TARGET,
        "penalty_reduction": [StrOptions({"mean", "sum"})],
    }

    def __init__(self, target_size="auto", target_ratio=0.6, penalty_reduction="mean"):
        self.target_size = target_size
        self.target_ratio = target_ratio
        self.penalty_reduction = penalty_reduction


class ConfTrObjective(_ParameterGroup):
    """ConfTr's fine-tuning objective ``CE + size_weight * mean max(0, |C| - eta)``.

    Parameters
    ----------
    size_weight : float, default=0.01
    target_size : "auto" or float, default="auto"
        ``eta``, as in :class:`CaCTObjective`.
    target_ratio : float, default=0.6
    """

    name = "conftr"
    _parameter_constraints = {**_TARGET, "size_weight": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, size_weight=0.01, target_size="auto", target_ratio=0.6):
        self.size_weight = size_weight
        self.target_size = target_size
        self.target_ratio = target_ratio


class CrossEntropyObjective(_ParameterGroup):
    """Fine-tuning with cross-entropy only (the ``class_weight`` of the estimator applies)."""

    name = "ce"
    _parameter_constraints = {}


class CALSObjective(_ParameterGroup):
    """CALS (Liu et al., CVPR 2023): cross-entropy plus class-wise penalties on logit margins.

    The constraint of sample ``i`` and class ``k`` is ``z_ik = (max_j l_ij - l_ik - margin) /
    margin <= 0``. With :class:`ALMMultipliers` the loss is ``CE + mean_{i,k} P(z_ik, lambda_k,
    rho_k)`` (CALS-ALM); with :class:`HRMultipliers` it is ``CE + mean_{i,k} lambda_k max(0,
    z_ik)`` with heuristic-rule multipliers (CALS-HR).

    Parameters
    ----------
    margin : float, default=10.0
    """

    name = "cals"
    _parameter_constraints = {"margin": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, margin=10.0):
        self.margin = margin


class FocalObjective(_ParameterGroup):
    """Focal-loss fine-tuning (Lin et al. 2017; Mukhoti et al. 2020 for calibration).

    ``mean_i w_{y_i} (1 - p_{i y_i})^gamma (-log p_{i y_i}) / mean_i w_{y_i}`` with ``w`` the
    estimator's class weights (1 without); ``gamma=0`` is the cross-entropy.

    Parameters
    ----------
    gamma : float >= 0, default=2.0
        Focusing parameter.
    """

    name = "focal"
    _parameter_constraints = {"gamma": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, gamma=2.0):
        self.gamma = gamma


OPTIMIZERS = {cls.name: cls for cls in (SGDOptimizer, AdamWOptimizer)}
MULTIPLIERS = {cls.name: cls for cls in (ALMMultipliers, HRMultipliers)}
OBJECTIVES = {
    cls.name: cls
    for cls in (CaCTObjective, ConfTrObjective, CrossEntropyObjective, CALSObjective, FocalObjective)
}


def resolve(value, kinds):
    """The parameter object of an estimator parameter: a checked clone, or the shortcut's object.

    Parameters
    ----------
    value : str or parameter object
    kinds : dict of str to class
        The shortcuts allowed (``OBJECTIVES``, ``MULTIPLIERS``, ``OPTIMIZERS``).

    Returns
    -------
    group : _ParameterGroup
        A fresh object (the estimator's parameter is never modified).
    """
    if isinstance(value, str):
        return kinds[value]().check()
    return clone(value).check()
