"""Conformal-training losses as standalone ``torch.nn.Module`` objects usable in any training loop.

Every loss takes ``(logits, target)`` for one mini-batch and returns a scalar. The conformal ones
split the batch at random into a calibration half and a prediction half (ConfTr, Stutz et al. 2022):

1. non-conformity score ``s(x, k) = -log softmax(f(x))_k`` (ConfTr's ``threshold_logp``, which CaCT
   uses for training whatever the test-time score);
2. a differentiable threshold ``q`` = the soft ``ceil((n_cal + 1) level)``-th smallest true-label
   score of the calibration half (:func:`~._soft_quantile.soft_quantile`);
3. soft membership ``c_k(x) = sigmoid((q - s(x, k)) / T)`` and soft size ``sum_k c_k(x)`` on the
   prediction half;
4. a size penalty added to the cross-entropy of the whole batch.

The losses differ in step 4: :class:`ConfTrLoss` (one global weight), :class:`CaCTLoss` (class-wise
multipliers on the class-mean sizes through a penalty-Lagrangian function, or per-sample weights for
the heuristic rule), and :class:`CALSLoss` (CALS's class-wise logit-margin constraint; no set sizes).
The multipliers are plain tensors in the loss (not parameters); an outer loop updates them, see
:mod:`._multipliers`.
"""

import warnings
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..exceptions import SmallBatchWarning
from ._penalties import get_penalty
from ._loss_kernels import (
    PENALTY_CODES, class_mean_penalty_terms, prediction_logits, sizes_backward_rows,
    sizes_backward_scores, training_quantile,
)
from ._soft_quantile import _comparator_table, _numpy_path, quantile_rank, soft_quantile


def smooth_set_size(log_proba, threshold, temperature):
    """Soft prediction-set size ``sum_k sigmoid((q + log p_k) / T)`` for each row.

    Parameters
    ----------
    log_proba : torch.Tensor of shape (n, K)
        Log-probabilities.
    threshold : torch.Tensor (scalar) or float
        Threshold ``q`` on the score ``-log p``.
    temperature : float
        Sigmoid temperature ``T > 0``; the hard size is recovered as ``T -> 0``.

    Returns
    -------
    size : torch.Tensor of shape (n,)
    """
    return torch.sigmoid((threshold + log_proba) / temperature).sum(dim=1)


def hard_set_size(log_proba, threshold):
    """Hard set size ``#{k : -log p_k <= q}`` for each row (no gradient)."""
    return (-log_proba <= threshold).sum(dim=1).to(log_proba.dtype)


def _float32_copy(values):
    """A float32 tensor copy of ``values`` (as ``torch.as_tensor(values, float32).clone()``)."""
    if isinstance(values, torch.Tensor):
        return torch.as_tensor(values, dtype=torch.float32).clone()
    # the multiplier step hands numpy float64 arrays once per epoch: numpy's cast rounds the same
    return torch.from_numpy(np.array(values, dtype=np.float32))


class _ConformalBatchLoss(torch.nn.Module):
    """Shared batch split, training quantile and soft sizes of the conformal-training losses."""

    def __init__(
        self,
        n_classes,
        confidence_level=0.99,
        temperature=0.5,
        calibration_fraction=0.5,
        quantile_method="sortnet",
        steepness=10.0,
        neuralsort_tau=0.1,
        quantile_window=None,
        class_weight=None,
        min_calibration=2,
        generator=None,
    ):
        super().__init__()
        self.n_classes = int(n_classes)
        self.confidence_level = float(confidence_level)
        self.temperature = float(temperature)
        self.calibration_fraction = float(calibration_fraction)
        self.quantile_method = quantile_method
        self.steepness = float(steepness)
        self.neuralsort_tau = float(neuralsort_tau)
        self.quantile_window = quantile_window
        self.min_calibration = int(min_calibration)
        self.class_weight = None if class_weight is None else torch.as_tensor(class_weight)
        # set when a batch falls back to cross-entropy; the warning is issued once per instance
        self.small_batch_warned = False
        # torch.Generator of the batch splits (None: torch's global one)
        self.generator = generator

    def cross_entropy(self, logits, target):
        weight = None
        if self.class_weight is not None:
            weight = self.class_weight.to(dtype=logits.dtype, device=logits.device)
        return F.cross_entropy(logits, target, weight=weight)

    def ce_and_log_proba(self, logits, target):
        """Cross-entropy and, for the fused CPU path, the log-probabilities it was computed from.

        ``F.cross_entropy`` is ``nll_loss(log_softmax(logits))``; on the fused path the conformal
        term reads the same ``log_softmax``, so the batch pays for one (forward and backward)
        instead of two. Elsewhere ``log_proba`` is None (the torch path computes its own).
        """
        if self.quantile_method != "sortnet" or not _numpy_path(logits):
            return self.cross_entropy(logits, target), None
        log_proba = F.log_softmax(logits, dim=1)
        weight = None
        if self.class_weight is not None:
            weight = self.class_weight.to(dtype=logits.dtype, device=logits.device)
        return F.nll_loss(log_proba, target, weight=weight), log_proba

    def _fused_args(self, n_classes, target, perm, n_cal):
        """Arguments of :func:`_sizes_forward` after ``log_proba``: the batch split as numpy."""
        p = perm.numpy()
        cal, pred = p[:n_cal], p[n_cal:]
        y = target.numpy()
        return (
            cal * n_classes + y[cal],
            pred,
            quantile_rank(n_cal, self.confidence_level),
            self.steepness,
            self.quantile_window,
            self.temperature,
        )

    def draw_split(self, logits, generator=None):
        """``(n_cal, perm)``: the size of the calibration half and a random permutation of the batch.

        ``None`` (with a :class:`~sklearn_conformal.exceptions.SmallBatchWarning`, once per
        instance) when the batch cannot hold both halves; such batches use cross-entropy only.
        """
        n = logits.shape[0]
        n_cal = int(self.calibration_fraction * n)
        if n_cal < self.min_calibration or n - n_cal < 1:
            if not self.small_batch_warned:
                warnings.warn(
                    f"a training batch of {n} samples leaves {n_cal} for the training quantile "
                    f"(need {self.min_calibration}); such batches use cross-entropy only. "
                    "Increase batch_size.",
                    SmallBatchWarning,
                    stacklevel=3,
                )
                self.small_batch_warned = True
            return None
        if generator is None:
            generator = self.generator
        return n_cal, torch.randperm(n, device=logits.device, generator=generator)

    def split_sizes(self, logits, target, generator=None, log_proba=None):
        """Split the batch, compute ``q`` on one half and soft sizes on the other.

        Returns ``None`` when the batch cannot hold both halves; otherwise
        ``(size_pred, target_pred, threshold, log_proba_pred)``. ``log_proba``: the
        ``log_softmax`` of ``logits`` if already computed.
        """
        split = self.draw_split(logits, generator)
        if split is None:
            return None
        n_cal, perm = split
        if log_proba is None:
            log_proba = F.log_softmax(logits, dim=1)
        if self.quantile_method == "sortnet" and _numpy_path(log_proba):
            # the same threshold and sizes, forward and backward fused in numpy (CPU)
            args = self._fused_args(log_proba.shape[1], target, perm, n_cal)
            size, threshold = _SoftSetSizes.apply(log_proba, *args)
            pred = torch.from_numpy(args[1])
            return size, target.index_select(0, pred), threshold, log_proba.index_select(0, pred)
        cal, pred = perm[:n_cal], perm[n_cal:]
        # row selections by index_select (backward: index_add) rather than advanced indexing
        # (backward: an accumulating index_put); the indices are distinct, so the values and
        # gradients are the same
        n_classes = log_proba.shape[1]
        cal_scores = -log_proba.reshape(-1).index_select(0, cal * n_classes + target[cal])
        threshold = soft_quantile(
            cal_scores,
            self.confidence_level,
            method=self.quantile_method,
            steepness=self.steepness,
            tau=self.neuralsort_tau,
            window=self.quantile_window,
        )
        lp_pred = log_proba.index_select(0, pred)
        size = smooth_set_size(lp_pred, threshold, self.temperature)
        return size, target[pred], threshold, lp_pred


# the comparator table of a one-score "network" (no stages)
_NO_STAGES = np.empty((0, 0), dtype=np.int64)


def _network_table(n):
    """The comparator table ``(A, B)`` of the network on ``n`` scores (padded to a power of 2)."""
    if n == 1:
        return _NO_STAGES, _NO_STAGES
    return _comparator_table(1 << (n - 1).bit_length())


def _sizes_forward(log_proba, cal_flat, pred, rank, steepness, window, temperature):
    """Training threshold ``q`` and soft sizes of the prediction rows, in float64.

    The computation of :func:`~._soft_quantile.soft_quantile` (``"sortnet"``) on the calibration
    scores ``-log p_y`` (entries ``cal_flat`` of the flattened ``log_proba``), then
    :func:`smooth_set_size` on the rows ``pred``; the window of scores entering the network is
    chosen by a stable argsort (:func:`~._loss_kernels.training_quantile`). Returns
    ``(size, q, state)``, ``state`` for :func:`_sizes_backward`.
    """
    lp = log_proba.detach().numpy()
    n_cal = cal_flat.shape[0]
    A, B = _network_table(window if window is not None and n_cal > window else n_cal)
    q, sel, r, d, alpha = training_quantile(
        lp.reshape(-1), cal_flat, rank, window or 0, steepness, A, B
    )
    # sigmoid((q + log p) / T) on the prediction rows (torch's kernel on the float64 array)
    e = torch.from_numpy(prediction_logits(lp, pred, q, temperature)).sigmoid_()
    size = e.sum(dim=1).numpy()
    state = (lp.shape, cal_flat, pred, (sel, r, A, B, d, alpha), e.numpy(), temperature)
    return size, q, state


def _sizes_backward(state, g_size, g_q):
    """Gradient (float64 array like ``log_proba``) of :func:`_sizes_forward`'s outputs."""
    shape, cal_flat, pred, network, e, temperature = state
    # d size_i / d log p_ik = d size_i / d q = sigmoid'(.) / T
    grad, w = sizes_backward_rows(e, g_size, temperature, pred, shape)
    sizes_backward_scores(grad, w.sum() + g_q, cal_flat, *network)
    return grad


class _SoftSetSizes(torch.autograd.Function):
    """``(size, q)`` of :func:`_sizes_forward` with its vector-Jacobian product (CPU).

    As torch operations the threshold and the sizes are some thirty small operations forward and
    as many autograd nodes backward, each costing more in dispatch than its arithmetic; here they
    are a few numba loops (:mod:`._loss_kernels`; float64 whatever the input's dtype; outputs
    cast back). CaCT-ALM's loss goes further: one node, :class:`_CaCTObjective`.
    """

    @staticmethod
    def forward(ctx, log_proba, cal_flat, pred, rank, steepness, window, temperature):
        size, q, ctx.state = _sizes_forward(
            log_proba, cal_flat, pred, rank, steepness, window, temperature
        )
        dtype = log_proba.dtype
        return torch.from_numpy(size).to(dtype), torch.tensor(q, dtype=dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_size, grad_q):
        g_size = grad_size.numpy().astype(np.float64)
        grad = _sizes_backward(ctx.state, g_size, float(grad_q))
        return torch.from_numpy(grad).to(grad_size.dtype), None, None, None, None, None, None


class _PenaltyPlan(NamedTuple):
    """What :class:`_CaCTObjective` needs besides the logits and labels (one batch)."""

    weight: Optional[torch.Tensor]  # cross-entropy class weights (None: unweighted)
    sizes_args: tuple  # (cal_flat, pred, rank, steepness, window, temperature): _sizes_forward
    y_pred: np.ndarray  # labels of the prediction half
    lambdas: np.ndarray  # float64 multipliers, penalty parameters and targets, shape (K,)
    rhos: np.ndarray
    target_size: np.ndarray
    penalty_code: int  # _loss_kernels.PENALTY_CODES
    mean: bool  # mean (else sum) over the present classes


def class_mean_penalty(size, plan):
    """CaCT-ALM's penalty ``reduce_k P(d_k / eta_k - 1, lambda_k, rho_k)`` and its size gradient.

    ``d_k`` is the mean of the soft sizes ``size`` (float64) over the prediction-half samples of
    class ``k``; the reduction (mean or sum) runs over the classes present. Returns the value and
    ``d penalty / d size_i = P'(z_k) / (eta_k n_k)`` (over ``#present`` for the mean) for ``i`` of
    class ``k``, from the penalty's own derivative (the numpy twins of :mod:`._penalties`, as one
    numba kernel: :func:`~._loss_kernels.class_mean_penalty_terms`).
    """
    coef = np.empty(plan.y_pred.shape[0])
    values, scale = class_mean_penalty_terms(
        plan.y_pred, size, plan.lambdas, plan.rhos, plan.target_size, plan.penalty_code,
        plan.mean, coef,
    )
    return float(values.sum()) * scale, coef


class _CaCTObjective(torch.autograd.Function):
    """CaCT-ALM's whole batch loss on the CPU as one autograd node: ``CE + penalty``.

    Forward: ``log_softmax``, the (weighted) ``nll_loss`` and, on the same log-probabilities,
    :func:`_sizes_forward` and :func:`class_mean_penalty` (float64 numpy). Backward runs the
    kernels autograd runs for ``nll_loss(log_softmax(x)) + penalty(log_softmax(x))``, in its
    order: ``nll_loss_backward``, the penalty's gradient (:func:`_sizes_backward`, cast to the
    logits' dtype), their sum, ``_log_softmax_backward_data``, so the gradients are those of
    that composed graph bit for bit. As five nodes (two of them Python functions) the graph's
    bookkeeping cost more than its arithmetic on CaCT's small batches.
    """

    @staticmethod
    def forward(ctx, logits, target, plan):
        log_proba = torch.log_softmax(logits, 1)
        ce, total_weight = torch.ops.aten.nll_loss_forward(log_proba, target, plan.weight, 1, -100)
        size, _, state = _sizes_forward(log_proba, *plan.sizes_args)
        penalty, coef = class_mean_penalty(size, plan)
        ctx.state = (log_proba, target, plan.weight, total_weight, state, coef, logits.dtype)
        return ce + torch.tensor(penalty, dtype=log_proba.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        log_proba, target, weight, total_weight, state, coef, dtype = ctx.state
        ctx.state = None
        g_ce = torch.ops.aten.nll_loss_backward(
            grad, log_proba, target, weight, 1, -100, total_weight
        )
        g_penalty = torch.from_numpy(_sizes_backward(state, coef * float(grad), 0.0)).to(dtype)
        g = torch._log_softmax_backward_data(g_ce + g_penalty, log_proba, 1, dtype)
        return g, None, None


class ConfTrLoss(_ConformalBatchLoss):
    """ConfTr in the form CaCT compares against: ``CE + lambda * mean_i max(0, |C(x_i)| - eta)``.

    Parameters
    ----------
    n_classes : int
    size_weight : float, default=0.01
        The global weight ``lambda`` (CaCT's grid: 0.001 ... 0.2).
    target_size : float, default=1.0
        ``eta``; sizes below it are not penalised.
    confidence_level : float, default=0.99
        Level of the training quantile (``1 - alpha_train``).
    temperature, calibration_fraction, quantile_method, steepness, neuralsort_tau, quantile_window
        See :class:`CaCTLoss`.
    class_weight : array-like of shape (K,) or None
        Weights of the cross-entropy term.
    """

    def __init__(self, n_classes, size_weight=0.01, target_size=1.0, **kwargs):
        super().__init__(n_classes, **kwargs)
        self.size_weight = float(size_weight)
        self.target_size = float(target_size)

    def forward(self, logits, target):
        ce, log_proba = self.ce_and_log_proba(logits, target)
        out = self.split_sizes(logits, target, log_proba=log_proba)
        if out is None:
            return ce
        size = out[0]
        return ce + self.size_weight * F.relu(size - self.target_size).mean()


class CaCTLoss(_ConformalBatchLoss):
    """Class-adaptive conformal training loss (CaCT, eq. 13 with CALS's normalisation).

    ``"alm"``: ``CE + reduce_k P(d_k / eta_k - 1, lambda_k, rho_k)`` where ``d_k`` is the mean soft set
    size over the prediction-half samples of class ``k`` and the reduction (mean or sum) runs over
    the classes present in that half. ``"hr"``: ``CE + mean_i lambda_{y_i} max(0, |C(x_i)| - eta)``
    (CaCT eq. 9 with heuristic multipliers).

    Parameters
    ----------
    n_classes : int
    multipliers : {"alm", "hr"}, default="alm"
    penalty : {"phr", "p2", "p3"}, default="phr"
    penalty_reduction : {"mean", "sum"}, default="mean"
    target_size : float or array-like of shape (K,), default=1.0
        ``eta`` (one per class allowed).
    confidence_level : float, default=0.99
        Level of the training quantile (``1 - alpha_train``).
    temperature : float, default=0.5
        Sigmoid temperature of the soft sets.
    calibration_fraction : float, default=0.5
        Fraction of each batch used for the training quantile.
    quantile_method : {"sortnet", "neuralsort", "hard"}, default="sortnet"
    steepness : float, default=10.0
    neuralsort_tau : float, default=0.1
    quantile_window : int or None, default=None
    class_weight : array-like of shape (K,) or None
        Weights of the cross-entropy term (a class-balanced primal).

    Attributes
    ----------
    lambdas, rhos : torch.Tensor of shape (K,)
        Current multipliers and penalty parameters, held constant by the inner step; update them
        with :meth:`set_multipliers`.
    """

    def __init__(
        self,
        n_classes,
        multipliers="alm",
        penalty="phr",
        penalty_reduction="mean",
        target_size=1.0,
        **kwargs,
    ):
        super().__init__(n_classes, **kwargs)
        self.multipliers = multipliers
        self.penalty = penalty
        self._penalty_fn = get_penalty(penalty)
        self.penalty_reduction = penalty_reduction
        eta = torch.as_tensor(target_size, dtype=torch.float32)
        self.target_size = eta.expand(self.n_classes).clone() if eta.ndim == 0 else eta.clone()
        self.lambdas = torch.full((self.n_classes,), 1e-6)
        self.rhos = torch.ones(self.n_classes)

    def set_multipliers(self, lambdas, rhos=None, target_size=None):
        """Replace the multipliers (and optionally ``rho`` and the per-class targets)."""
        self.lambdas = _float32_copy(lambdas)
        if rhos is not None:
            self.rhos = _float32_copy(rhos)
        if target_size is not None:
            eta = torch.as_tensor(target_size, dtype=torch.float32)
            self.target_size = eta.expand(self.n_classes).clone() if eta.ndim == 0 else eta.clone()

    def _float64_multipliers(self):
        """The multipliers, penalty parameters and targets as float64 numpy (cached per tensor)."""
        cache = self.__dict__.get("_np_cache")
        tensors = (self.lambdas, self.rhos, self.target_size)
        if cache is None or any(a is not b for a, b in zip(cache[0], tensors)):
            cache = self._np_cache = (tensors, [t.numpy().astype(np.float64) for t in tensors])
        return cache[1]

    def _fused_forward(self, logits, target):
        """The ALM loss on the CPU with ``"sortnet"``: one :class:`_CaCTObjective` node."""
        split = self.draw_split(logits)
        if split is None:
            return self.cross_entropy(logits, target)
        n_cal, perm = split
        sizes_args = self._fused_args(logits.shape[1], target, perm, n_cal)
        weight = self.class_weight
        if weight is not None:
            weight = weight.to(dtype=logits.dtype)
        lam, rho, eta = self._float64_multipliers()
        plan = _PenaltyPlan(
            weight, sizes_args, target.numpy()[sizes_args[1]], lam, rho, eta,
            PENALTY_CODES[self.penalty], self.penalty_reduction == "mean",
        )
        return _CaCTObjective.apply(logits, target, plan)

    def forward(self, logits, target):
        alm = self.multipliers != "hr"
        if alm and self.quantile_method == "sortnet" and _numpy_path(logits):
            return self._fused_forward(logits, target)
        ce, log_proba = self.ce_and_log_proba(logits, target)
        out = self.split_sizes(logits, target, log_proba=log_proba)
        if out is None:
            return ce
        size, y, _, _ = out
        dev, dt = logits.device, logits.dtype
        lam = self.lambdas.to(device=dev, dtype=dt)
        eta = self.target_size.to(device=dev, dtype=dt)
        if self.multipliers == "hr":
            return ce + (lam[y] * F.relu(size - eta[y])).mean()
        counts = torch.bincount(y, minlength=self.n_classes).to(dt)
        sums = torch.zeros(self.n_classes, dtype=dt, device=dev).index_add(0, y, size)
        # the present classes as indices, selected once per tensor (same values as a mask)
        present = torch.nonzero(counts > 0).reshape(-1)
        d = sums.index_select(0, present) / counts.index_select(0, present)
        z = d / eta.index_select(0, present) - 1.0
        rho = self.rhos.to(device=dev, dtype=dt).index_select(0, present)
        value, _ = self._penalty_fn(z, lam.index_select(0, present), rho)
        penalty = value.mean() if self.penalty_reduction == "mean" else value.sum()
        return ce + penalty


class CALSLoss(torch.nn.Module):
    """CALS (Liu et al., CVPR 2023): cross-entropy plus class-wise penalties on logit margins.

    The constraint for sample ``i`` and class ``k`` is ``z_ik = (max_j l_ij - l_ik - m) / m <= 0``
    (logit distances bounded by the margin ``m``, normalised by it). ``"alm"`` (CALS-ALM): the loss
    is ``CE + mean_{i,k} P(z_ik, lambda_k, rho_k)``; ``"hr"`` (CALS-HR, heuristic-rule
    multipliers): the linear penalty ``CE + mean_{i,k} lambda_k max(0, z_ik)``.

    Parameters
    ----------
    n_classes : int
    margin : float, default=10.0
    penalty : {"phr", "p2", "p3"}, default="phr"
    class_weight : array-like of shape (K,) or None
    multipliers : {"alm", "hr"}, default="alm"
    """

    def __init__(self, n_classes, margin=10.0, penalty="phr", class_weight=None, multipliers="alm"):
        super().__init__()
        self.n_classes = int(n_classes)
        self.margin = float(margin)
        self.penalty = penalty
        self._penalty_fn = get_penalty(penalty)
        self.multipliers = multipliers
        self.class_weight = None if class_weight is None else torch.as_tensor(class_weight)
        self.lambdas = torch.full((self.n_classes,), 1e-6)
        self.rhos = torch.ones(self.n_classes)

    def set_multipliers(self, lambdas, rhos=None, target_size=None):
        """Replace the multipliers (``target_size`` is accepted for a uniform interface, unused)."""
        self.lambdas = torch.as_tensor(lambdas, dtype=torch.float32).clone()
        if rhos is not None:
            self.rhos = torch.as_tensor(rhos, dtype=torch.float32).clone()

    def constraints(self, logits):
        """Normalised margin constraints ``z`` of shape (n, K)."""
        gap = logits.max(dim=1, keepdim=True).values - logits
        return (gap - self.margin) / self.margin

    def forward(self, logits, target):
        weight = None
        if self.class_weight is not None:
            weight = self.class_weight.to(dtype=logits.dtype, device=logits.device)
        ce = F.cross_entropy(logits, target, weight=weight)
        z = self.constraints(logits)
        lam = self.lambdas.to(device=logits.device, dtype=logits.dtype)[None, :]
        if self.multipliers == "hr":
            return ce + (lam * F.relu(z)).mean()
        rho = self.rhos.to(device=logits.device, dtype=logits.dtype)[None, :]
        value, _ = self._penalty_fn(z, lam, rho)
        return ce + value.mean()


class FocalLoss(torch.nn.Module):
    """Focal loss ``sum_i w_{y_i} (1 - p_{i y_i})^gamma (-log p_{i y_i}) / sum_i w_{y_i}``.

    Lin, Goyal, Girshick, He & Dollar (2017); as a calibration baseline, Mukhoti et al. (2020).
    ``gamma = 0`` is the (class-weighted) cross-entropy, with the weighted mean of
    ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    n_classes : int
    gamma : float, default=2.0
    class_weight : array-like of shape (K,) or None
    """

    def __init__(self, n_classes, gamma=2.0, class_weight=None):
        super().__init__()
        self.n_classes = int(n_classes)
        self.gamma = float(gamma)
        self.class_weight = None if class_weight is None else torch.as_tensor(class_weight)

    def forward(self, logits, target):
        log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        # 1 - p_y as -expm1(log p_y) (accurate for confident rows), kept off 0 so that the
        # gradient of the power stays finite for 0 < gamma < 1 when p_y rounds to 1
        tiny = torch.finfo(log_p.dtype).tiny
        loss = -(torch.clamp_min(-torch.expm1(log_p), tiny) ** self.gamma) * log_p
        if self.class_weight is None:
            return loss.mean()
        w = self.class_weight.to(dtype=logits.dtype, device=logits.device)[target]
        return (w * loss).sum() / w.sum()
