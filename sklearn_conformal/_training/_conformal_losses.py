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

import numpy as np
import torch
import torch.nn.functional as F

from ..exceptions import SmallBatchWarning
from ._penalties import get_penalty
from ._soft_quantile import _network_backward_np, _numpy_path, quantile_rank, soft_quantile
from ._soft_quantile import sort_network_np


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

    def _fused_args(self, log_proba, target, perm, n_cal):
        """Arguments of :class:`_SoftSetSizes` after ``log_proba``: the batch split as numpy."""
        p = perm.numpy()
        cal, pred = p[:n_cal], p[n_cal:]
        y = target.numpy()
        return (
            cal * log_proba.shape[1] + y[cal],
            pred,
            quantile_rank(n_cal, self.confidence_level),
            self.steepness,
            self.quantile_window,
            self.temperature,
        )

    def split_sizes(self, logits, target, generator=None, penalty=None, log_proba=None):
        """Split the batch, compute ``q`` on one half and soft sizes on the other.

        Returns ``None`` when the batch cannot hold both halves; otherwise
        ``(size_pred, target_pred, threshold, log_proba_pred)``. With ``penalty`` (a function
        of the prediction-half labels as a numpy array returning the extra arguments of
        :class:`_CaCTPenalty`), on the CPU with ``"sortnet"`` only the class-mean penalty is
        returned (one fused step); elsewhere ``penalty`` is ignored. ``log_proba``: the
        ``log_softmax`` of ``logits`` if already computed.
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
        perm = torch.randperm(n, device=logits.device, generator=generator)
        if log_proba is None:
            log_proba = F.log_softmax(logits, dim=1)
        if self.quantile_method == "sortnet" and _numpy_path(log_proba):
            # the same threshold and sizes, forward and backward fused in numpy (CPU)
            args = self._fused_args(log_proba, target, perm, n_cal)
            if penalty is not None:
                y_pred = target.numpy()[args[1]]
                return _CaCTPenalty.apply(log_proba, *args, y_pred, *penalty(y_pred))
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


def _sizes_forward(log_proba, cal_flat, pred, rank, steepness, window, temperature):
    """Training threshold ``q`` and soft sizes of the prediction rows, in numpy float64.

    The computation of :func:`~._soft_quantile.soft_quantile` (``"sortnet"``) on the calibration
    scores ``-log p_y`` (entries ``cal_flat`` of the flattened ``log_proba``), then
    :func:`smooth_set_size` on the rows ``pred``; the window of scores entering the network is
    chosen by a stable argsort. Returns ``(size, q, state)``, ``state`` for :func:`_sizes_backward`.
    """
    lp = log_proba.detach().numpy()
    scores = -lp.reshape(-1)[cal_flat].astype(np.float64)
    n_cal = scores.shape[0]
    r = rank - 1
    sel = None
    if window is not None and n_cal > window:
        # the hard order only selects which scores enter (as in soft_quantile)
        start = min(max(rank - 1 - window // 2, 0), n_cal - window)
        sel = np.argsort(scores, kind="stable")[start : start + window]
        scores = scores[sel]
        r = rank - 1 - start
    if scores.shape[0] > 1:
        out, stages, saved = sort_network_np(scores, steepness)
        q = out[r] / steepness
    else:
        stages = saved = None
        q = scores[0]
    # sigmoid((q + log p) / T) on the prediction rows (torch's kernel on the float64 array)
    e = torch.from_numpy(lp[pred].astype(np.float64))
    e.add_(q).div_(temperature).sigmoid_()
    size = e.sum(dim=1).numpy()
    e = e.numpy()
    state = (lp.shape, cal_flat, pred, sel, r, stages, saved, e, temperature, n_cal)
    return size, q, state


def _sizes_backward(state, g_size, g_q):
    """Gradient (float64 array like ``log_proba``) of :func:`_sizes_forward`'s outputs."""
    shape, cal_flat, pred, sel, r, stages, saved, e, temperature, n_cal = state
    grad = np.zeros(shape)
    # d size_i / d log p_ik = d size_i / d q = sigmoid'(.) / T
    w = e * (1.0 - e)
    w *= g_size[:, None] / temperature
    grad[pred] = w
    gq = w.sum() + g_q
    if stages is None:
        g_scores = np.full(1, gq)
    else:
        g = np.zeros(2 * len(stages[0][0]))
        g[r] = gq
        g_scores = _network_backward_np(g, stages, saved)[: n_cal if sel is None else len(sel)]
    if sel is not None:
        full = np.zeros(n_cal)
        full[sel] = g_scores
        g_scores = full
    # the scores are -log p at distinct (row, label) entries of the calibration rows
    grad.reshape(-1)[cal_flat] -= g_scores
    return grad


class _SoftSetSizes(torch.autograd.Function):
    """``(size, q)`` of :func:`_sizes_forward` with its vector-Jacobian product (CPU).

    As torch operations the threshold and the sizes are some thirty small operations forward and
    as many autograd nodes backward, each costing more in dispatch than its arithmetic; here they
    are a few numpy operations (float64 whatever the input's dtype; outputs cast back).
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


class _CaCTPenalty(torch.autograd.Function):
    """CaCT-ALM's penalty ``reduce_k P(d_k / eta_k - 1, lambda_k, rho_k)`` in one step (CPU).

    :func:`_sizes_forward`, then the class means ``d_k`` of the sizes over the prediction-half
    samples of each present class, the constraints, the penalty and its reduction (mean or sum
    over the present classes). The backward pass uses the penalty's own derivative ``dP/dz``
    (the numpy twins of the functions of :mod:`._penalties` return it):
    ``d penalty / d size_i = P'(z_k) / (eta_k n_k)`` (over ``#present`` for the mean) for ``i``
    of class ``k``, then the sizes' gradient. Float64 inside; a scalar of ``log_proba``'s dtype
    out.
    """

    @staticmethod
    def forward(
        ctx, log_proba, cal_flat, pred, rank, steepness, window, temperature,
        y, lambdas, rhos, target_size, penalty_fn, mean,
    ):
        size, _, state = _sizes_forward(
            log_proba, cal_flat, pred, rank, steepness, window, temperature
        )
        K = lambdas.shape[0]
        counts = np.bincount(y, minlength=K)
        sums = np.bincount(y, weights=size, minlength=K)
        present = np.flatnonzero(counts)
        cnt = counts[present]
        eta = target_size[present]
        z = sums[present] / cnt / eta - 1.0
        value, deriv = penalty_fn(z, lambdas[present], rhos[present])
        scale = 1.0 / len(present) if mean else 1.0
        coef = np.zeros(K)
        coef[present] = deriv * scale / (eta * cnt)
        ctx.state = (state, coef[y])
        return torch.tensor(float(value.sum()) * scale, dtype=log_proba.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        state, coef = ctx.state
        g = _sizes_backward(state, coef * float(grad), 0.0)
        return (torch.from_numpy(g).to(grad.dtype),) + (None,) * 13


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

    def _penalty_args(self, y_pred):
        """The multipliers and targets (float64 numpy, cached per tensor) for :class:`_CaCTPenalty`."""
        cache = self.__dict__.get("_np_cache")
        tensors = (self.lambdas, self.rhos, self.target_size)
        if cache is None or any(a is not b for a, b in zip(cache[0], tensors)):
            cache = self._np_cache = (tensors, [t.numpy().astype(np.float64) for t in tensors])
        lam, rho, eta = cache[1]
        return lam, rho, eta, get_penalty(self.penalty, numpy=True), self.penalty_reduction == "mean"

    def forward(self, logits, target):
        ce, log_proba = self.ce_and_log_proba(logits, target)
        alm = self.multipliers != "hr"
        out = self.split_sizes(
            logits, target, penalty=self._penalty_args if alm else None, log_proba=log_proba
        )
        if out is None:
            return ce
        if not isinstance(out, tuple):  # the fused class-mean penalty
            return ce + out
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
