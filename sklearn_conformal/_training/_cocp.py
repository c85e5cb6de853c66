"""Torch pieces of CoCP (co-optimised centre and radius): losses, default modules, phase training.

Every CoCP phase is a plain supervised fit of one network with the other network frozen, so the
frozen network's output is precomputed once per phase and passed inside the target:

* warm start and centre: target ``y`` (MSE), then target ``(y, h(x))`` for the boundary-local
  soft-coverage loss;
* radius: target ``|y - m(x)|`` for the folded pinball loss.

This is the paper's "stop-gradient" (Su, Zhou & Luo 2026, Alg. 1): the radius step never
back-propagates into ``m`` and the centre step never into ``h``. Each phase is one skorch ``NeuralNet``
(fresh AdamW and cosine schedule, as in the authors' code) that shares the module instance with the
previous phases of the same fold, so the networks keep training across alternations.
"""

import copy
import functools
import math
import time

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch import nn

__all__ = [
    "CoCPMLP",
    "FoldedPinballLoss",
    "PhaseEarlyStopping",
    "RadiusHead",
    "ScalarHead",
    "SoftCoverageLoss",
    "TensorBatchIterator",
    "predict_module",
    "train_phase",
]


# --------------------------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------------------------
class CoCPMLP(nn.Module):
    """Fully connected ReLU network with a scalar output (the paper's 2 x 64 default).

    Parameters
    ----------
    n_features : int
        Input dimension.
    hidden_sizes : tuple of int, default=(64, 64)
        Widths of the hidden layers.
    """

    def __init__(self, n_features, hidden_sizes=(64, 64)):
        super().__init__()
        layers, width = [], n_features
        # float32 explicitly: the initial weights must not depend on torch's default dtype
        for size in hidden_sizes:
            layers += [nn.Linear(width, size, dtype=torch.float32), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1, dtype=torch.float32))
        self.body = nn.Sequential(*layers)

    def forward(self, X):
        return self.body(X).squeeze(-1)


class ScalarHead(nn.Module):
    """Flatten a user network's ``(n, 1)`` output to ``(n,)`` so the losses never broadcast."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, X):
        return self.body(X).reshape(X.shape[0])


class RadiusHead(nn.Module):
    """Positive radius ``h(x) = softplus(g(x)) + floor`` on top of any scalar network ``g``.

    The floor keeps the normalised score ``|y - m| / h`` finite when the network collapses towards
    zero (e.g. constant targets), and it keeps the radius step differentiable, unlike a clamp.

    Parameters
    ----------
    body : torch.nn.Module
        Network returning one value per row (shape ``(n,)`` or ``(n, 1)``).
    floor : float, default=1e-6
        Smallest radius, in units of the (rescaled) target.
    """

    def __init__(self, body, floor=1e-6):
        super().__init__()
        self.body = body
        self.floor = float(floor)

    def forward(self, X):
        out = self.body(X)
        if out.ndim > 1:
            out = out.reshape(out.shape[0])
        return nn.functional.softplus(out) + self.floor


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
class FoldedPinballLoss(nn.Module):
    """Folded quantile loss ``mean rho_tau(|y - m(x)| - h(x))`` of the radius step.

    The target is the precomputed residual ``r = |y - m(x)|`` (``m`` frozen); the population
    minimiser is ``h(x) = Q_tau(|Y - m(X)| | X = x)``, the smallest symmetric radius around ``m(x)``
    holding mass ``tau``.

    Parameters
    ----------
    tau : float
        Quantile level, the confidence level ``1 - alpha``.
    """

    def __init__(self, tau):
        super().__init__()
        self.tau = float(tau)

    def forward(self, radius, residual):
        u = residual.reshape(radius.shape) - radius
        return torch.mean(torch.maximum(self.tau * u, (self.tau - 1.0) * u))


class SoftCoverageLoss(nn.Module):
    """Boundary-local soft coverage ``-mean sigmoid((h(x) - |y - m(x)|) / beta)`` of the centre step.

    The target has two columns, ``y`` and the frozen radius ``h(x)``. The derivative with respect
    to ``m`` carries the factor ``sigmoid'(.) / beta``, which vanishes unless ``|y - m|`` is within
    a few ``beta`` of ``h``: only points near the interval's boundary move the centre, and the
    stationary point balances the (beta-smoothed) densities at ``m - h`` and ``m + h``.

    Parameters
    ----------
    beta : float
        Temperature, in units of the target.
    """

    def __init__(self, beta):
        super().__init__()
        self.beta = float(beta)

    def forward(self, centre, target):
        y, radius = target[:, 0], target[:, 1]
        return -torch.mean(torch.sigmoid((radius - torch.abs(y - centre)) / self.beta))


# --------------------------------------------------------------------------------------------
# skorch plumbing
# --------------------------------------------------------------------------------------------
class TensorBatchIterator:
    """Minibatches by slicing whole tensors (skorch's ``iterator_train`` / ``iterator_valid``).

    The default ``DataLoader`` collates 512 single rows per batch, which costs more than the
    forward/backward pass of a 2 x 64 network; slicing a permuted index keeps the same sampling
    (shuffled, without replacement, last batch smaller) at a fraction of the cost. The permutation
    is drawn from ``generator`` (torch's global generator if ``None``).

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Dataset whose ``X`` and ``y`` are tensors.
    batch_size : int
        Rows per batch (``-1`` or ``None``: the whole set).
    shuffle : bool, default=False
        Draw a fresh permutation per pass.
    generator : torch.Generator or None, default=None
        Source of the permutations, on the device of ``dataset.X``.
    """

    def __init__(self, dataset, batch_size=None, shuffle=False, generator=None, **kwargs):
        self.X, self.y = dataset.X, dataset.y
        n = len(self.X)
        self.batch_size = n if batch_size in (None, -1) else int(batch_size)
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        n = len(self.X)
        if self.shuffle:
            order = torch.randperm(n, device=self.X.device, generator=self.generator)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield self.X[idx], self.y[idx]
        else:
            for start in range(0, n, self.batch_size):
                yield self.X[start : start + self.batch_size], self.y[start : start + self.batch_size]


class PhaseEarlyStopping(Callback):
    """Early stopping on the phase's own validation loss, starting from the incoming weights.

    Unlike ``skorch.callbacks.EarlyStopping`` the validation loss of the *incoming* weights is the
    first "best" value, so a phase that cannot improve its objective by more than ``min_delta``
    returns the network unchanged (e.g. a centre step with a very large ``beta``, whose objective is
    flat). The best weights are restored at the end. A non-finite training or validation loss
    stops the fit with a ``FloatingPointError`` naming the phase.

    Parameters
    ----------
    valid_X, valid_y : torch.Tensor
        Validation set of the phase.
    patience : int
        Epochs without improvement before stopping.
    min_delta : float
        Minimal absolute decrease counted as an improvement.
    phase : str
        Name used in messages.
    """

    def __init__(self, valid_X, valid_y, patience, min_delta, phase):
        self.valid_X = valid_X
        self.valid_y = valid_y
        self.patience = patience
        self.min_delta = min_delta
        self.phase = phase

    def on_train_begin(self, net, **kwargs):
        with torch.no_grad():
            net.module_.eval()
            loss = net.criterion_(net.module_(self.valid_X), self.valid_y)
        self.initial_loss_ = float(loss)
        self._check_finite(self.initial_loss_, "validation loss of the incoming weights")
        self.best_loss_ = self.initial_loss_
        self.best_epoch_ = 0
        self.best_state_ = copy.deepcopy(net.module_.state_dict())
        self.bad_epochs_ = 0

    def on_epoch_end(self, net, **kwargs):
        last = net.history[-1]
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
        net.module_.load_state_dict(self.best_state_)

    def _check_finite(self, value, what):
        if not np.isfinite(value):
            raise FloatingPointError(
                f"CoCP phase {self.phase!r}: non-finite {what} ({value}). The targets or features "
                "are probably too large for float32 training or the learning rate too high; "
                "rescale y (target_scale='mean_abs'), standardise X (StandardScaler) or lower lr."
            )


class _BetaSchedule(Callback):
    """Exponential temperature schedule ``beta_e = beta * (beta_end / beta)**(e / (E - 1))``."""

    def __init__(self, beta, beta_end, max_epochs):
        self.beta, self.beta_end, self.max_epochs = beta, beta_end, max_epochs

    def on_epoch_begin(self, net, **kwargs):
        e = len(net.history) - 1  # skorch appends the epoch row before on_epoch_begin
        frac = e / max(self.max_epochs - 1, 1)
        net.criterion_.beta = self.beta * (self.beta_end / self.beta) ** frac


@functools.lru_cache(maxsize=None)
def _fused_adamw_supported(device_type):
    """Whether ``torch.optim.AdamW(fused=True)`` runs on this device type (CPU: torch >= 2.4).

    The fused kernel updates all parameters in one call; for the small CoCP networks the
    per-tensor Python loop of the default implementation costs about a fifth of a phase.
    """
    try:
        param = torch.zeros(1, device=device_type, requires_grad=True)
        param.grad = torch.zeros_like(param)
        torch.optim.AdamW([param], fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


class _PhaseNet(NeuralNet):
    """``NeuralNet`` with the per-minibatch overhead of a tiny network trimmed.

    A 2 x 64 network's forward/backward pass on 512 rows costs less than skorch's generic
    per-batch work, so two things move out of the generic path (the optimisation itself is
    unchanged): switching train/eval mode walks the module tree only when the mode changes,
    and gradient-norm clipping happens right after ``backward`` instead of through the
    ``on_grad_computed`` callback machinery.
    """

    def __init__(self, *args, grad_clip=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.grad_clip = grad_clip

    def _set_training(self, training=True):
        if self.module_.training != training or self.criterion_.training != training:
            super()._set_training(training)

    def train_step_single(self, batch, **fit_params):
        step = super().train_step_single(batch, **fit_params)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module_.parameters(), self.grad_clip)
        return step


def train_phase(
    module,
    criterion,
    X_train,
    y_train,
    X_valid,
    y_valid,
    *,
    phase,
    lr=1e-3,
    lr_min=0.0,
    weight_decay=1e-5,
    grad_clip=5.0,
    batch_size=512,
    max_epochs=1000,
    patience=100,
    min_delta=1e-6,
    beta_schedule=None,
    device="cpu",
    generator=None,
):
    """Train ``module`` in place for one phase through a fresh skorch ``NeuralNet``.

    Parameters
    ----------
    module : torch.nn.Module
        Network to train (already on ``device``); shared with earlier phases.
    criterion : torch.nn.Module
        Loss ``criterion(module(X), y)``.
    X_train, y_train, X_valid, y_valid : torch.Tensor
        Phase data on ``device``.
    phase : str
        Name for the history and messages.
    lr, lr_min, weight_decay, grad_clip, batch_size, max_epochs, patience, min_delta
        AdamW learning rate, cosine floor, weight decay, gradient-norm clip (0 = off), minibatch
        size, epoch budget, early-stopping patience and minimal improvement.
    beta_schedule : tuple (beta, beta_end) or None
        Anneal ``criterion.beta`` over the epochs.
    device : str
    generator : torch.Generator or None
        Source of the minibatch order (on ``device``); ``None``: torch's global generator.

    Returns
    -------
    record : dict
        ``phase``, ``epochs`` run, ``best_epoch`` (0 = incoming weights kept),
        ``initial_valid_loss``, ``best_valid_loss``, ``seconds``.
    """
    tic = time.perf_counter()
    stopper = PhaseEarlyStopping(X_valid, y_valid, patience, min_delta, phase)
    callbacks = [
        ("lr", LRScheduler(policy="CosineAnnealingLR", T_max=max_epochs, eta_min=lr_min)),
        ("stop", stopper),
    ]
    if beta_schedule is not None:
        callbacks.append(("beta", _BetaSchedule(*beta_schedule, max_epochs)))
    fused = {"optimizer__fused": True} if _fused_adamw_supported(torch.device(device).type) else {}
    net = _PhaseNet(
        module=module,
        criterion=criterion,
        grad_clip=grad_clip,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=weight_decay,
        **fused,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        iterator_train=TensorBatchIterator,
        iterator_train__shuffle=True,
        iterator_train__generator=generator,
        iterator_valid=TensorBatchIterator,
        iterator_valid__batch_size=-1,
        train_split=predefined_split(Dataset(X_valid, y_valid)),
        callbacks=callbacks,
        callbacks__print_log=None,
        device=device,
        verbose=0,
    )
    net.fit(X_train, y_train)
    return {
        "phase": phase,
        "epochs": len(net.history),
        "best_epoch": stopper.best_epoch_,
        "initial_valid_loss": stopper.initial_loss_,
        "best_valid_loss": stopper.best_loss_,
        "seconds": time.perf_counter() - tic,
    }


def predict_module(module, X, batch_size=65536):
    """Evaluate ``module`` on tensor ``X`` in eval mode without gradients, as a 1-D tensor."""
    module.eval()
    with torch.no_grad():
        out = [module(X[i : i + batch_size]).reshape(-1) for i in range(0, len(X), batch_size)]
    return torch.cat(out) if out else X.new_zeros(0)
