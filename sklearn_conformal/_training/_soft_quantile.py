"""Differentiable quantiles in plain torch (no compiled dependency).

The conformal-training losses need the threshold ``q`` = the ``k``-th smallest calibration score of
a mini-batch, ``k = ceil((n + 1) * level)`` clipped to ``n``, as a differentiable function of the
scores. Three read-outs are offered:

``"sortnet"`` (default)
    A relaxed bitonic sorting network (Petersen et al., ICLR 2022, the smoothing CaCT cites, and what
    ConfTr's JAX code does): each comparator mixes its two values with the logistic weight
    ``sigmoid(steepness * (b - a))`` instead of swapping them. Values only (no permutation matrix),
    so it costs ``O(n log^2 n)`` and converges to the exact sort as ``steepness -> inf``.
``"neuralsort"``
    One row of the NeuralSort relaxed permutation (Grover et al., ICLR 2019): the soft ``k``-th order
    statistic is a softmax-weighted average of the scores, with temperature ``tau``; ``O(n^2)``.
``"hard"``
    ``torch.kthvalue``: exact, with a sub-gradient that reaches one score only.
"""

import math

import torch

QUANTILE_METHODS = ("sortnet", "neuralsort", "hard")

# padding must sort after every real score without producing inf * 0 = nan inside the comparators
_PAD_OFFSET = 1e3


def quantile_rank(n, level):
    """Rank ``min(ceil((n + 1) * level), n)`` (1-based) used by the training quantile."""
    k = int(math.ceil((n + 1) * level - 1e-9))
    return max(1, min(k, n))


def soft_sort(x, steepness=10.0):
    """Sort the last axis of ``x`` in ascending order with a logistic relaxed bitonic network.

    Parameters
    ----------
    x : torch.Tensor of shape (..., n)
        Values to sort.
    steepness : float, default=10.0
        Inverse temperature of the comparators (> 0); larger is closer to the hard sort.

    Returns
    -------
    sorted_x : torch.Tensor of shape (..., n)
        Relaxed ascending sort (exact sort in the limit ``steepness -> inf``). Every output is a
        convex combination of the inputs, so it stays within ``[min(x), max(x)]``.
    """
    n = x.shape[-1]
    if n <= 1:
        return x
    m = 1 << (n - 1).bit_length()
    if m > n:
        # detached padding strictly above the data keeps the first n outputs a relaxation of the
        # n real values only (the padding loses every comparison by a margin of >= 1e3 nats)
        top = x.detach().amax(dim=-1, keepdim=True)
        pad = top + _PAD_OFFSET + torch.arange(m - n, dtype=x.dtype, device=x.device)
        x = torch.cat([x, pad.expand(*x.shape[:-1], m - n)], dim=-1)
    # comparators are linear mixes, so scaling by the steepness once (and back at the end) saves a
    # multiplication in each of the log2(m)(log2(m)+1)/2 stages
    x = x * steepness
    if x.requires_grad:
        x = _BitonicNetwork.apply(x)
    else:
        x, _ = _bitonic_forward(x)
    return x[..., :n] / steepness


def _bitonic_forward(x):
    """The comparator stages on ``x`` (last axis of power-of-two length ``m``, pre-scaled).

    Bitonic sort in the "flip" formulation: the first stage of every merge compares element i of
    a block with its mirror image, so every comparator sorts ascending and no direction masks are
    needed (a logistic comparator is symmetric in its two inputs, so this is the same relaxation).
    Returns the output and, per stage, ``(block, half, flipped, d, alpha)`` for the backward pass.
    """
    m = x.shape[-1]
    lead = x.shape[:-1]
    saved = []
    block = 2
    while block <= m:
        v = x.reshape(*lead, m // block, block)
        half = block // 2
        a = v[..., :half]
        b = v[..., half:].flip(-1)
        lo, hi, d, alpha = _soft_compare(a, b)
        saved.append((block, half, True, d, alpha))
        x = torch.cat([lo, hi.flip(-1)], dim=-1).reshape(*lead, m)
        width = half
        while width >= 2:
            v = x.reshape(*lead, m // width, width)
            h = width // 2
            lo, hi, d, alpha = _soft_compare(v[..., :h], v[..., h:])
            saved.append((width, h, False, d, alpha))
            x = torch.cat([lo, hi], dim=-1).reshape(*lead, m)
            width = h
        block *= 2
    return x, saved


def _soft_compare(a, b):
    # inputs are pre-scaled by the steepness; alpha -> 1 when a < b, the soft minimum then keeps a
    d = b - a
    alpha = torch.sigmoid(d)
    return torch.addcmul(b, alpha, d, value=-1.0), torch.addcmul(a, alpha, d), d, alpha


class _BitonicNetwork(torch.autograd.Function):
    """The comparator stages with a hand-written backward pass.

    Autograd records about forty nodes per stage (views, flips, concatenations, two ``addcmul``,
    the sigmoid), which for the short networks of the training quantile costs several times the
    arithmetic. The backward pass here applies, stage by stage in reverse, the elementwise products
    and sums that autograd's formulas for ``lo = b - alpha d``, ``hi = a + alpha d``,
    ``alpha = sigmoid(d)``, ``d = b - a`` produce, in the same order (the gradient of ``d`` is
    ``(g_hi alpha - g_lo alpha) + sigmoid'``, the sigmoid term last, as autograd's engine adds
    it), so the gradients are bit-identical to differentiating :func:`_bitonic_forward`.
    """

    @staticmethod
    def forward(ctx, x):
        out, saved = _bitonic_forward(x)
        ctx.stages = [(blk, h, flipped) for blk, h, flipped, _, _ in saved]
        ctx.save_for_backward(*[t for *_, d, alpha in saved for t in (d, alpha)])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        tensors = ctx.saved_tensors
        m = grad.shape[-1]
        lead = grad.shape[:-1]
        g = grad
        for i in range(len(ctx.stages) - 1, -1, -1):
            width, h, flipped = ctx.stages[i]
            d, alpha = tensors[2 * i], tensors[2 * i + 1]
            G = g.reshape(*lead, m // width, width)
            g_lo = G[..., :h]
            g_hi = G[..., h:].flip(-1) if flipped else G[..., h:]
            # addcmul's gradients: tensor1 <- grad * (tensor2 * value), tensor2 <- grad *
            # (tensor1 * value), self <- grad; lo has value -1, hi value +1. Multiplying by +-1
            # and adding a negated term are exact, so g_hi * d + g_lo * (d * -1) is computed as
            # g_hi * d - g_lo * d (the same bits), and likewise below
            g_alpha = g_hi * d - g_lo * d
            g_d = (g_hi * alpha - g_lo * alpha) + torch.ops.aten.sigmoid_backward(g_alpha, alpha)
            g_a = g_hi - g_d
            g_b = g_lo + g_d
            if flipped:
                g_b = g_b.flip(-1)
            g = torch.cat([g_a, g_b], dim=-1).reshape(*lead, m)
        return g


def neuralsort_order_statistic(x, k, tau=0.1):
    """Soft ``k``-th smallest value of a 1-d tensor from one row of the NeuralSort relaxation.

    Parameters
    ----------
    x : torch.Tensor of shape (n,)
    k : int
        1-based ascending rank.
    tau : float, default=0.1
        Temperature; the result tends to the exact order statistic as ``tau -> 0``.

    Returns
    -------
    value : torch.Tensor (scalar)
    """
    n = x.shape[0]
    i = n + 1 - k  # NeuralSort ranks in descending order
    pairwise = (x[:, None] - x[None, :]).abs().sum(dim=1)
    logits = ((n + 1 - 2 * i) * x - pairwise) / tau
    weights = torch.softmax(logits, dim=0)
    return (weights * x).sum()


def soft_quantile(scores, level, method="sortnet", steepness=10.0, tau=0.1, window=32):
    """Differentiable conformal threshold of a 1-d tensor of calibration scores.

    Parameters
    ----------
    scores : torch.Tensor of shape (n,)
        Non-conformity scores of the calibration half of a batch.
    level : float
        Confidence level in (0, 1); the rank read is ``min(ceil((n + 1) level), n)``.
    method : {"sortnet", "neuralsort", "hard"}, default="sortnet"
    steepness : float, default=10.0
        Comparator steepness of the sorting network.
    tau : float, default=0.1
        NeuralSort temperature.
    window : int or None, default=32
        For ``"sortnet"``: run the network on the ``window`` scores whose hard ranks are nearest to
        ``k`` (a block of consecutive order statistics) instead of on all ``n``. A relaxed
        comparator between values more than a few ``1 / steepness`` apart is already a hard
        swap, so scores far from rank ``k`` barely move the read-out while the full network costs
        ``log2(n)^2 / 2`` sequential stages; with a window of 32 the cost is 15 stages whatever
        ``n`` is. ``None`` sorts all scores.

    Returns
    -------
    q : torch.Tensor (scalar)
    """
    n = scores.shape[0]
    if n == 0:
        raise ValueError("soft_quantile needs at least one score.")
    k = quantile_rank(n, level)
    if method == "sortnet":
        if window is not None and n > window:
            # the hard order only selects which scores enter; gradients flow through their values
            order = torch.argsort(scores.detach())
            start = min(max(k - 1 - window // 2, 0), n - window)
            # index_select: its backward (index_add) is cheaper than advanced indexing's
            block = scores.index_select(0, order[start : start + window])
            return soft_sort(block, steepness)[k - 1 - start]
        return soft_sort(scores, steepness)[k - 1]
    if method == "neuralsort":
        return neuralsort_order_statistic(scores, k, tau)
    if method == "hard":
        return torch.kthvalue(scores, k).values
    raise ValueError(f"soft_quantile method must be one of {QUANTILE_METHODS}, got {method!r}.")
