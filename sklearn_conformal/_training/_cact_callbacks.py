"""skorch callbacks of conformal training: the per-epoch multiplier (outer) step on the validation set."""

import numpy as np
import torch
import torch.nn.functional as F
from skorch.callbacks import Callback

from .._core import conformal_quantile
from ._conformal_losses import hard_set_size, smooth_set_size


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
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64))
    scores = (-log_proba[torch.arange(len(y_t)), y_t]).numpy()
    q = conformal_quantile(scores, confidence_level)
    if not np.isfinite(q):
        q = float(scores.max())
    if hard:
        return hard_set_size(log_proba, q).numpy()
    return smooth_set_size(log_proba, q, temperature).numpy()


def module_logits(net, X):
    """Logits of ``net.module_`` on an in-memory float32 array in one eval-mode pass.

    A direct call instead of skorch's ``forward`` (a DataLoader loop): on small problems that loop
    costs as much as a whole training epoch. skorch puts the module back in training mode at the
    next training step.
    """
    net.module_.eval()
    with torch.no_grad():
        out = net.module_(torch.as_tensor(X, device=net.device))
    return out.detach().cpu()


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
    on the held-out validation arrays, takes one step of ``multipliers`` (ALM or heuristic rule),
    pushes the new values into the loss, and records scalar summaries in ``net.history``.

    Parameters
    ----------
    multipliers : ClasswiseMultipliers
    X_val : ndarray of shape (n_val, n_features)
    y_val : ndarray of shape (n_val,)
        Label indices.
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
        self, multipliers, X_val, y_val, kind, confidence_level, target_size, temperature, hard,
        margin=10.0,
    ):
        self.multipliers = multipliers
        self.X_val = X_val
        self.y_val = y_val
        self.kind = kind
        self.confidence_level = confidence_level
        self.target_size = target_size
        self.temperature = temperature
        self.hard = hard
        self.margin = margin
        self.z_history = []
        self.size_history = []

    def on_epoch_end(self, net, **kwargs):
        if self.X_val is None:
            return
        loss = getattr(net, "train_objective_", None)
        # before fine-tuning (no conformal objective yet) only the diagnostics are recorded, so
        # the per-epoch table has the same columns from the first epoch on
        active = loss is not None and hasattr(loss, "set_multipliers")
        K = self.multipliers.n_classes
        logits = module_logits(net, self.X_val)
        y = self.y_val
        sizes = None
        if self.kind == "margin":
            z = CALS_constraints(logits.double(), self.margin)
            if active:
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
                self.multipliers.alm_step(np.nan_to_num(z_class), present)
        if active:
            loss.set_multipliers(self.multipliers.lambdas, self.multipliers.rhos)
            self.z_history.append(z_class)
        lam = self.multipliers.lambdas
        net.history.record("lambda_mean", float(lam.mean()))
        net.history.record("lambda_max", float(lam.max()))
        net.history.record("rho_max", float(self.multipliers.rhos.max()))
        net.history.record("val_size", float(sizes.mean()) if sizes is not None else float("nan"))
        finite = np.isfinite(z_class)
        net.history.record("val_z_max", float(z_class[finite].max()) if finite.any() else float("nan"))


def CALS_constraints(logits, margin):
    """CALS's normalised logit-margin constraints ``(max_j l_j - l_k - m) / m`` as numpy."""
    gap = logits.max(dim=1, keepdim=True).values - logits
    return ((gap - margin) / margin).numpy()
