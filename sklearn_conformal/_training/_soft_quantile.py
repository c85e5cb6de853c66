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

import functools
import math

import numpy as np
import torch
from scipy.special import expit

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
    if _numpy_path(x):
        return _SoftSortCPU.apply(x, float(steepness), None)
    return _soft_sort_torch(x, steepness)


def _numpy_path(x):
    """Whether the comparators of ``x`` run in numpy (:class:`_SoftSortCPU`)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _soft_sort_torch(x, steepness):
    """:func:`soft_sort` as torch operations (any device; :class:`_BitonicNetwork`)."""
    n = x.shape[-1]
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


@functools.lru_cache(maxsize=None)
def _comparator_pairs(m):
    """The comparators of the bitonic network on ``m`` (a power of two) values, stage by stage.

    Each stage is a pair of index arrays ``(A, B)``: comparator ``j`` mixes positions ``A[j]``
    and ``B[j]``, the soft minimum goes to ``A[j]``, the soft maximum to ``B[j]``. They are the
    comparators of :func:`_bitonic_forward` ("flip" formulation: the first stage of a merge pairs
    element ``i`` of a block with its mirror image).
    """
    stages = []
    block = 2
    while block <= m:
        half = block // 2
        starts = np.arange(0, m, block)[:, None]
        j = np.arange(half)[None, :]
        stages.append(((starts + j).ravel(), (starts + block - 1 - j).ravel()))
        width = half
        while width >= 2:
            h = width // 2
            starts = np.arange(0, m, width)[:, None]
            j = np.arange(h)[None, :]
            stages.append(((starts + j).ravel(), (starts + h + j).ravel()))
            width = h
        block *= 2
    return tuple(stages)


@functools.lru_cache(maxsize=None)
def _comparator_table(m):
    """:func:`_comparator_pairs` as two ``(n_stages, m // 2)`` index arrays (every stage of the
    network has ``m / 2`` comparators)."""
    stages = _comparator_pairs(m)
    A = np.ascontiguousarray(np.stack([a for a, _ in stages]), dtype=np.int64)
    B = np.ascontiguousarray(np.stack([b for _, b in stages]), dtype=np.int64)
    A.flags.writeable = B.flags.writeable = False
    return A, B


class _VectorTape:
    """What the backward pass of the network on one vector needs: the per-stage comparator
    inputs ``d`` and ``alpha`` as ``(n_stages, m // 2)`` arrays (see :mod:`._sortnet_kernels`)."""

    __slots__ = ("d", "alpha")

    def __init__(self, shape):
        self.d = np.empty(shape)
        self.alpha = np.empty(shape)


def _network_forward_np(x, stages):
    """The comparator stages on a float64 array whose FIRST axis (length ``m``) is sorted, in place.

    ``x`` is pre-scaled by the steepness. Returns ``x`` and, per stage, ``(d, alpha)`` for
    :func:`_network_backward_np` (for a vector: a :class:`_VectorTape` filled by the numba
    kernel, the same values bit for bit).
    """
    if x.ndim == 1 and x.dtype == np.float64 and len(stages):
        from ._sortnet_kernels import network_forward_vector

        A, B = _comparator_table(x.shape[0])
        tape = _VectorTape(A.shape)
        network_forward_vector(x, A, B, tape.d, tape.alpha)
        return x, tape
    saved = []
    for A, B in stages:
        a = x[A]
        b = x[B]
        d = b - a
        alpha = expit(d)
        ad = alpha * d
        x[A] = b - ad  # soft minimum
        x[B] = a + ad  # soft maximum
        saved.append((d, alpha))
    return x, saved


def _network_backward_np(g, stages, saved):
    """Vector-Jacobian product of :func:`_network_forward_np`, stage by stage in reverse (in place).

    With ``lo = b - alpha d``, ``hi = a + alpha d``, ``d = b - a`` and ``alpha = sigmoid(d)``:
    ``dlo/da = dhi/db = c`` and ``dlo/db = dhi/da = 1 - c`` with
    ``c = alpha + alpha (1 - alpha) d``.
    """
    if isinstance(saved, _VectorTape):
        from ._sortnet_kernels import network_backward_vector

        A, B = _comparator_table(g.shape[0])
        network_backward_vector(g, A, B, saved.d, saved.alpha)
        return g
    for (A, B), (d, alpha) in zip(reversed(stages), reversed(saved)):
        g_lo = g[A]
        g_hi = g[B]
        g_d = (g_hi - g_lo) * (alpha + alpha * (1.0 - alpha) * d)
        g[A] = g_hi - g_d
        g[B] = g_lo + g_d
    return g


def sort_network_np(xs, steepness):
    """Forward pass of the relaxed sorting network on a float64 array, sorted axis FIRST.

    Parameters
    ----------
    xs : ndarray of shape (n,) or (n, L)
        Values (overwritten: scaled by ``steepness`` in place).
    steepness : float

    Returns
    -------
    out : ndarray of shape (m,) or (m, L)
        The sorted values times ``steepness`` (``m``: ``n`` rounded up to a power of two; the
        first ``n`` are the relaxation of the data, the rest padding).
    stages, saved
        For :func:`_network_backward_np` (its gradient is that of ``out / steepness`` with
        respect to ``xs``: the scalings cancel).
    """
    n = xs.shape[0]
    m = 1 << (n - 1).bit_length()
    xs *= steepness
    if m > n:
        # detached padding strictly above the data (see soft_sort)
        top = xs.max(axis=0)
        steps = _PAD_OFFSET + np.arange(m - n, dtype=np.float64)
        pad = top + steepness * (steps if xs.ndim == 1 else steps[:, None])
        xs = np.concatenate([xs, pad], axis=0)
    stages = _comparator_pairs(m)
    out, saved = _network_forward_np(xs, stages)
    return out, stages, saved


class _SoftSortCPU(torch.autograd.Function):
    """:func:`soft_sort` of a CPU tensor, forward and backward in numpy float64.

    The network on a training-quantile window (16 values, 10 stages of 8 comparators) is a few
    hundred tiny operations; as torch operations each costs microseconds of dispatch (and the
    backward as many again), as numpy operations on the whole stage a fraction of that. The
    arithmetic runs in float64 whatever the input's dtype (float32 inputs get a more accurate
    relaxation than float32 arithmetic; float64 inputs agree with the torch formulation to
    rounding); outputs and gradients are cast back. ``index`` (an int) returns that one sorted
    value instead of the whole vector (the training quantile reads one).
    """

    @staticmethod
    def forward(ctx, x, steepness, index):
        n = x.shape[-1]
        lead = x.shape[:-1]
        # the sorted axis first: a stage then gathers and scatters rows (cheapest numpy indexing)
        xs = x.detach().reshape(-1, n).numpy().T.astype(np.float64)
        if not lead:
            xs = xs.reshape(n)
        out, stages, saved = sort_network_np(xs, steepness)
        ctx.stages, ctx.saved, ctx.n, ctx.index, ctx.lead = stages, saved, n, index, lead
        out = (out[:n] if index is None else out[index]) / steepness
        if lead:
            out = out.T.reshape(lead + ((n,) if index is None else ()))
        return torch.from_numpy(np.array(out)).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        # the steepness scales in and out again: the Jacobian of the unscaled map is the network's
        stages, n, lead = ctx.stages, ctx.n, ctx.lead
        m = 2 * len(stages[0][0])
        gn = grad.detach().numpy().astype(np.float64)
        if lead:
            gn = gn.reshape(-1, n).T if ctx.index is None else gn.reshape(-1)
            g = np.zeros((m, gn.shape[-1]))
        else:
            g = np.zeros(m)
        if ctx.index is None:
            g[:n] = gn
        else:
            g[ctx.index] = gn
        g = _network_backward_np(g, stages, ctx.saved)[:n]
        if lead:
            g = g.T.reshape(lead + (n,))
        return torch.from_numpy(np.array(g)).to(grad.dtype), None, None


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


def _order_statistic(x, index, steepness):
    """``soft_sort(x, steepness)[index]`` of a 1-d tensor."""
    if x.shape[0] > 1 and _numpy_path(x):
        return _SoftSortCPU.apply(x, float(steepness), int(index))
    return soft_sort(x, steepness)[index]


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
            return _order_statistic(block, k - 1 - start, steepness)
        return _order_statistic(scores, k - 1, steepness)
    if method == "neuralsort":
        return neuralsort_order_statistic(scores, k, tau)
    if method == "hard":
        return torch.kthvalue(scores, k).values
    raise ValueError(f"soft_quantile method must be one of {QUANTILE_METHODS}, got {method!r}.")
