"""skorch callbacks of the training engine.

* :class:`MultiplierUpdate` (CaCT, CALS): the per-epoch multiplier (outer) step on the validation
  set;
* :class:`EpochSelection` (CaCT and the other fine-tuned objectives): the fine-tuning epoch of
  smallest validation set size, the starting network included;
* :class:`PhaseEarlyStopping` and :class:`BetaSchedule` (CoCP phases).

Validation data is read from the ``dataset_valid`` that skorch passes to the epoch hooks (the
net's ``train_split``), not held by the callbacks.
"""

import copy

import numpy as np
import torch
import torch.nn.functional as F
from skorch.callbacks import Callback

from .._core import conformal_quantile, conformal_rank
from ._conformal_losses import smooth_set_size
from ._loss_kernels import hard_set_sizes
from ._nets import module_logits


def validation_set_sizes(logits, y, confidence_level, temperature=None, hard=True):
    """Set sizes on the validation set at ``confidence_level`` with an exact conformal threshold.

    The threshold is the conformal quantile of the validation true-label scores ``-log p_y``
    (the largest score when the validation set is too small for the level), so the constraint the
    multipliers see is the one the inner loss optimises, measured on held-out data.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, K)
    y : ndarray of shape (n,)
        Label indices.
    confidence_level : float
    temperature : float, optional
        Needed when ``hard=False``.
    hard : bool, default=True
        Hard set sizes (counts) or sigmoid-smoothed sizes.

    Returns
    -------
    sizes : ndarray of shape (n,)
    """
    log_proba = F.log_softmax(logits.detach().double(), dim=1)
    lp = log_proba.numpy()
    y = np.asarray(y, dtype=np.int64)
    if hard:
        # hard_set_size on the CPU in one kernel (the same order statistic, comparison and count)
        return hard_set_sizes(lp, y, conformal_rank(lp.shape[0], confidence_level))
    scores = -lp[np.arange(lp.shape[0]), y]
    q = conformal_quantile(scores, confidence_level)
    if not np.isfinite(q):
        q = float(scores.max())
    return smooth_set_size(log_proba, q, temperature).numpy()


def epoch_validation_logits(net, X):
    """Logits on the epoch's validation features ``X``: those of the net's own validation pass
    where the net keeps them (:meth:`~._nets.ConformalNet.validation_logits`), else a fresh
    pass (any other skorch net)."""
    shared = getattr(net, "validation_logits", None)
    return module_logits(net, X) if shared is None else shared(X)


def class_means(values, y, n_classes):
    """Per-class means of ``values`` (NaN for classes without samples) and the presence mask."""
    counts = np.bincount(y, minlength=n_classes)
    sums = np.bincount(y, weights=values, minlength=n_classes)
    present = counts > 0
    means = np.full(n_classes, np.nan)
    means[present] = sums[present] / counts[present]
    return means, present


class MultiplierUpdate(Callback):
    """Update the class-wise multipliers of the training loss after every epoch (skorch callback).

    Active only while ``net.train_objective_`` is a loss with multipliers; it evaluates the network
    on the validation set skorch hands to ``on_epoch_end`` (``dataset_valid``, from the net's
    ``train_split``; nothing is done without one), takes one step of ``multipliers`` (ALM or heuristic rule),
    pushes the new values into the loss, and records scalar summaries in ``net.history``.

    Parameters
    ----------
    multipliers : ClasswiseMultipliers
    kind : {"size", "margin"}
        ``"size"``: CaCT constraints on class-mean set sizes; ``"margin"``: CALS logit margins.
    confidence_level : float
        Level of the validation threshold (the training level).
    target_size : ndarray of shape (K,) or None
        ``eta_k`` for the size constraints (may be set once fine-tuning starts).
    temperature : float
    hard : bool
        Hard or soft validation sizes.
    margin : float, default=10.0
        CALS margin (``kind="margin"``).
    """

    def __init__(
        self, multipliers, kind, confidence_level, target_size, temperature, hard, margin=10.0,
    ):
        self.multipliers = multipliers
        self.kind = kind
        self.confidence_level = confidence_level
        self.target_size = target_size
        self.temperature = temperature
        self.hard = hard
        self.margin = margin
        self.z_history = []
        self.size_history = []

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        if dataset_valid is None or len(dataset_valid) == 0:
            return
        loss = getattr(net, "train_objective_", None)
        # before fine-tuning (no conformal objective yet) only the diagnostics are recorded, so
        # the per-epoch table has the same columns from the first epoch on
        active = loss is not None and hasattr(loss, "set_multipliers")
        K = self.multipliers.n_classes
        logits = epoch_validation_logits(net, dataset_valid.X)
        y = np.asarray(dataset_valid.y)
        sizes = None
        if self.kind == "margin":
            z = CALS_constraints(logits.double(), self.margin)
            if active and self.multipliers.rule == "hr":
                self.multipliers.hr_step(CALS_excess(z))
            elif active:
                self.multipliers.alm_step(z, samplewise=True)
            z_class, _ = class_means(z.max(axis=1), y, K)
        else:
            sizes = validation_set_sizes(
                logits, y, self.confidence_level, self.temperature, hard=self.hard
            )
            d, present = class_means(sizes, y, K)
            if self.target_size is None:
                z_class = np.full(K, np.nan)
            else:
                z_class = np.where(present, d / self.target_size - 1.0, np.nan)
            if active and self.multipliers.rule == "hr":
                excess, _ = class_means(np.maximum(sizes - self.target_size[y], 0.0), y, K)
                self.multipliers.hr_step(np.nan_to_num(excess), present)
            elif active:
                # NaN (absent classes) -> 0 as nan_to_num, cheaper (z_class has no infinities)
                self.multipliers.alm_step(np.where(np.isnan(z_class), 0.0, z_class), present)
        if active:
            loss.set_multipliers(self.multipliers.lambdas, self.multipliers.rhos)
            self.z_history.append(z_class)
        lam = self.multipliers.lambdas
        net.history.record("lambda_mean", float(lam.mean()))
        net.history.record("lambda_max", float(lam.max()))
        rho = float(self.multipliers.rhos.max()) if self.multipliers.rule == "alm" else float("nan")
        net.history.record("rho_max", rho)
        net.history.record("val_size", float(sizes.mean()) if sizes is not None else float("nan"))
        finite = np.isfinite(z_class)
        net.history.record("val_z_max", float(z_class[finite].max()) if finite.any() else float("nan"))


class EpochSelection(Callback):
    """Keep the fine-tuning epoch whose network gives the smallest validation set size.

    Added for the fine-tuning phase only: the starting network (the pre-trained one) is
    candidate 0, scored by :meth:`start` before the first epoch; after each epoch the network
    on ``dataset_valid`` is scored, and the weights of the best candidate so far are kept.
    :meth:`restore` loads them at the end, so the fitted network is never worse on the
    validation split than the one fine-tuning started from (on this criterion).

    The score is the mean THR set size at ``confidence_level`` (the test level) with the
    threshold the conformal quantile of the validation scores themselves: every candidate is
    compared at the same validation coverage.
    """

    def __init__(self, confidence_level):
        self.confidence_level = confidence_level

    def _score(self, logits, y):
        return float(validation_set_sizes(logits, y, self.confidence_level).mean())

    def start(self, net, X_val, y_val):
        self.sizes_ = [self._score(module_logits(net, X_val), y_val)]
        self.best_epoch_ = 0
        self._best = copy.deepcopy(net.module_.state_dict())

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        if dataset_valid is None or len(dataset_valid) == 0:
            return
        logits = epoch_validation_logits(net, dataset_valid.X)
        size = self._score(logits, np.asarray(dataset_valid.y))
        self.sizes_.append(size)
        if size < self.sizes_[self.best_epoch_]:
            self.best_epoch_ = len(self.sizes_) - 1
            self._best = copy.deepcopy(net.module_.state_dict())

    def restore(self, net):
        net.module_.load_state_dict(self._best)
        self._best = None


def CALS_excess(z):
    """Class-wise mean violation ``mean_i max(0, z_ik)`` of CALS's margin constraints (HR rule).

    Parameters
    ----------
    z : ndarray of shape (n, K)
        :func:`CALS_constraints` of the validation logits.

    Returns
    -------
    excess : ndarray of shape (K,)
    """
    z = np.asarray(z, dtype=np.float64)
    return np.maximum(z, 0.0).mean(axis=0) if len(z) else np.zeros(z.shape[1])


def CALS_constraints(logits, margin):
    """CALS's normalised logit-margin constraints ``(max_j l_j - l_k - m) / m`` as numpy."""
    gap = logits.max(dim=1, keepdim=True).values - logits
    return ((gap - margin) / margin).numpy()


class PhaseEarlyStopping(Callback):
    """Early stopping on the phase's own validation loss, starting from the incoming weights.

    Unlike ``skorch.callbacks.EarlyStopping`` the validation loss of the *incoming* weights (on
    ``dataset_valid``, before the first training step) is the first "best" value, so a phase that
    cannot improve its objective by more than ``min_delta`` returns the network unchanged (e.g. a
    centre step with a very large ``beta``, whose objective is flat). The best weights are
    restored at the end. A non-finite training or validation loss stops the fit with a
    ``FloatingPointError`` naming the phase.

    Parameters
    ----------
    patience : int
        Epochs without improvement before stopping.
    min_delta : float
        Minimal absolute decrease counted as an improvement.
    phase : str
        Name used in messages.
    """

    def __init__(self, patience, min_delta, phase):
        self.patience = patience
        self.min_delta = min_delta
        self.phase = phase

    def on_train_begin(self, net, **kwargs):
        self.initial_loss_ = None

    def on_epoch_begin(self, net, dataset_valid=None, **kwargs):
        if self.initial_loss_ is not None:
            return
        # first epoch, no step taken yet: the incoming weights, scored as the epochs' validation
        # passes will score the later ones (a PhaseNet's compiled epochs round otherwise)
        incoming = getattr(net, "incoming_valid_loss", None)  # PhaseNet's
        loss = incoming(dataset_valid) if incoming is not None else None
        if loss is None:
            with torch.no_grad():
                net.module_.eval()
                loss = net.criterion_(net.module_(dataset_valid.X), dataset_valid.y)
        self.initial_loss_ = float(loss)
        self._check_finite(self.initial_loss_, "validation loss of the incoming weights")
        self.best_loss_ = self.initial_loss_
        self.best_epoch_ = 0
        self.best_state_ = copy.deepcopy(net.module_.state_dict())
        self.bad_epochs_ = 0

    def on_epoch_end(self, net, **kwargs):
        history = net.history
        # the epoch's row, without the generic indexing of skorch's History (a list of dicts)
        last = list.__getitem__(history, -1) if isinstance(history, list) else history[-1]
        self._check_finite(last["train_loss"], "training loss")
        self._check_finite(last["valid_loss"], "validation loss")
        if last["valid_loss"] < self.best_loss_ - self.min_delta:
            self.best_loss_ = last["valid_loss"]
            self.best_epoch_ = last["epoch"]
            self.best_state_ = copy.deepcopy(net.module_.state_dict())
            self.bad_epochs_ = 0
        else:
            self.bad_epochs_ += 1
            if self.bad_epochs_ >= self.patience:
                raise KeyboardInterrupt  # skorch's documented way to end fit_loop early

    def on_train_end(self, net, **kwargs):
        if self.initial_loss_ is not None:
            net.module_.load_state_dict(self.best_state_)

    def _check_finite(self, value, what):
        if not np.isfinite(value):
            raise FloatingPointError(
                f"CoCP phase {self.phase!r}: non-finite {what} ({value}). The targets or features "
                "are probably too large for float32 training or the learning rate too high; "
                "rescale y (target_scale='mean_abs'), standardise X (StandardScaler) or lower lr."
            )


class BetaSchedule(Callback):
    """Exponential temperature schedule ``beta_e = beta * (beta_end / beta)**(e / (E - 1))``."""

    def __init__(self, beta, beta_end, max_epochs):
        self.beta, self.beta_end, self.max_epochs = beta, beta_end, max_epochs

    def on_epoch_begin(self, net, **kwargs):
        e = len(net.history) - 1  # skorch appends the epoch row before on_epoch_begin
        frac = e / max(self.max_epochs - 1, 1)
        net.criterion_.beta = self.beta * (self.beta_end / self.beta) ** frac
