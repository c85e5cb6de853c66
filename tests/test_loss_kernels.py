"""The fused CPU path of CaCT's loss: numba kernels and the one-node objective, bit for bit.

Each kernel is checked against the numpy computation it replaces, written out here (the
stable-argsort window and :func:`sort_network_np`, ``np.bincount`` and the numpy penalty twins,
the array gradients); the one-node objective against autograd through the composed graph
``nll_loss(log_softmax(x)) + penalty(log_softmax(x))``. Speed is measured in
``benchmarks/bench_cact_epoch.py``, not here.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from sklearn_conformal._training import _conformal_losses as losses  # noqa: E402
from sklearn_conformal._training._conformal_losses import CaCTLoss  # noqa: E402
from sklearn_conformal._training._penalties import get_penalty  # noqa: E402
from sklearn_conformal._training._soft_quantile import (  # noqa: E402
    _network_backward_np,
    quantile_rank,
    sort_network_np,
)


def _reference_sizes_forward(lp, cal_flat, pred, rank, steepness, window, temperature):
    """The numpy/torch computation the kernels replace: threshold, sizes and the tape."""
    scores = -lp.reshape(-1)[cal_flat].astype(np.float64)
    n_cal = scores.shape[0]
    r, sel = rank - 1, None
    if window is not None and n_cal > window:
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
    e = torch.from_numpy(lp[pred].astype(np.float64))
    e.add_(q).div_(temperature).sigmoid_()
    return e.sum(dim=1).numpy(), q, (sel, r, stages, saved, e.numpy())


def _reference_sizes_backward(lp_shape, cal_flat, pred, tape, temperature, g_size, g_q):
    sel, r, stages, saved, e = tape
    n_cal = cal_flat.shape[0]
    grad = np.zeros(lp_shape)
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
    grad.reshape(-1)[cal_flat] -= g_scores
    return grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("window", [None, 16, 5, 2])
def test_sizes_kernels_equal_the_numpy_computation_bit_for_bit(window, dtype):
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(2, 400))
        K = int(rng.integers(2, 60))
        logits = torch.from_numpy(rng.normal(size=(n, K)) * rng.uniform(0.1, 8)).to(
            torch.float32 if dtype == np.float32 else torch.float64
        )
        if trial % 6 == 0:  # ties among the calibration scores
            logits[: n // 2] = logits[0]
        lp_t = F.log_softmax(logits, dim=1)
        lp = lp_t.numpy()
        y = rng.integers(0, K, size=n)
        perm = rng.permutation(n)
        n_cal = max(1, int(rng.uniform(0.05, 0.9) * n))
        if trial % 10 == 0:
            n_cal = 1  # one score: the threshold is that score
        cal, pred = perm[:n_cal], perm[n_cal:]
        if len(pred) == 0:
            continue
        args = (cal * K + y[cal], pred, quantile_rank(n_cal, 0.9), 10.0, window, 0.5)
        size, q, state = losses._sizes_forward(lp_t, *args)
        ref_size, ref_q, tape = _reference_sizes_forward(lp, *args)
        assert q == ref_q and np.array_equal(size, ref_size)
        g_size = rng.normal(size=len(pred))
        g_q = float(rng.normal())
        grad = losses._sizes_backward(state, g_size, g_q)
        ref = _reference_sizes_backward(lp.shape, args[0], pred, tape, 0.5, g_size, g_q)
        assert np.array_equal(grad, ref)


def _reference_class_mean_penalty(size, y, lam, rho, eta, penalty, mean):
    K = lam.shape[0]
    counts = np.bincount(y, minlength=K)
    sums = np.bincount(y, weights=size, minlength=K)
    present = np.flatnonzero(counts)
    cnt = counts[present]
    z = sums[present] / cnt / eta[present] - 1.0
    value, deriv = get_penalty(penalty, numpy=True)(z, lam[present], rho[present])
    scale = 1.0 / len(present) if mean else 1.0
    coef = np.zeros(K)
    coef[present] = deriv * scale / (eta[present] * cnt)
    return float(value.sum()) * scale, coef[y]


@pytest.mark.parametrize("penalty", ["phr", "p2", "p3"])
@pytest.mark.parametrize("mean", [True, False])
def test_class_mean_penalty_kernel_equals_the_numpy_twins_bit_for_bit(penalty, mean):
    rng = np.random.default_rng(1)
    for trial in range(200):
        K = int(rng.integers(1, 120))
        n = int(rng.integers(1, 300))
        y = rng.integers(0, K, size=n)  # some classes absent
        size = rng.uniform(0.0, 3.0 * K ** 0.5, size=n)
        lam = rng.uniform(1e-6, 2.0, size=K)
        rho = rng.uniform(0.01, 5.0, size=K)
        eta = rng.uniform(0.5, 4.0, size=K)  # z of both signs: both branches of every penalty
        plan = losses._PenaltyPlan(
            None, (), y, lam, rho, eta, losses.PENALTY_CODES[penalty], mean
        )
        value, coef = losses.class_mean_penalty(size, plan)
        ref_value, ref_coef = _reference_class_mean_penalty(size, y, lam, rho, eta, penalty, mean)
        assert value == ref_value and np.array_equal(coef, ref_coef)


class _ComposedPenalty(torch.autograd.Function):
    """The class-mean penalty of ``log_proba`` alone, as its own autograd node."""

    @staticmethod
    def forward(ctx, log_proba, plan):
        size, _, state = losses._sizes_forward(log_proba, *plan.sizes_args)
        value, coef = losses.class_mean_penalty(size, plan)
        ctx.state = (state, coef)
        return torch.tensor(value, dtype=log_proba.dtype)

    @staticmethod
    def backward(ctx, grad):
        state, coef = ctx.state
        g = losses._sizes_backward(state, coef * float(grad), 0.0)
        return torch.from_numpy(g).to(grad.dtype), None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_one_node_objective_equals_autograd_through_the_composed_graph(dtype, weighted):
    """_CaCTObjective's value and gradient are those of log_softmax -> (nll_loss, penalty) ->
    add under autograd, bit for bit (the nll and log-softmax backward kernels and the sum of
    the two branches' gradients), for a loss scaled by a non-unit gradient too."""
    rng = np.random.default_rng(2)
    for trial in range(20):
        n, K = int(rng.integers(8, 600)), int(rng.integers(2, 60))
        logits = torch.from_numpy(rng.normal(size=(n, K)) * 3).to(dtype)
        target = torch.from_numpy(rng.integers(0, K, size=n))
        weight = torch.from_numpy(rng.uniform(0.2, 3.0, size=K)).to(dtype) if weighted else None
        perm = rng.permutation(n)
        n_cal = n // 2
        cal, pred = perm[:n_cal], perm[n_cal:]
        y = target.numpy()
        plan = losses._PenaltyPlan(
            weight,
            (cal * K + y[cal], pred, quantile_rank(n_cal, 0.95), 10.0, 16, 0.5),
            y[pred], rng.uniform(0.0, 2.0, K), rng.uniform(0.1, 3.0, K), rng.uniform(1, 3, K),
            losses.PENALTY_CODES["phr"], True,
        )
        scale = float(rng.uniform(0.1, 3.0))
        x = logits.clone().requires_grad_()
        value = losses._CaCTObjective.apply(x, target, plan)
        (value * scale).backward()
        ref_x = logits.clone().requires_grad_()
        log_proba = F.log_softmax(ref_x, dim=1)
        ref = F.nll_loss(log_proba, target, weight=weight) + _ComposedPenalty.apply(log_proba, plan)
        (ref * scale).backward()
        assert torch.equal(value.detach(), ref.detach())
        assert torch.equal(x.grad, ref_x.grad)


def test_alm_loss_is_one_autograd_node_and_small_batches_stay_cross_entropy():
    loss = CaCTLoss(5, generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 5, requires_grad=True)
    y = torch.randint(0, 5, (64,))
    assert type(loss(x, y).grad_fn).__name__ == "_CaCTObjectiveBackward"
    with pytest.warns(losses.SmallBatchWarning):
        small = loss(x[:3], y[:3])
    assert torch.equal(small, F.cross_entropy(x[:3], y[:3]))


def test_validation_hard_sizes_equal_the_numpy_computation():
    """The validation THR sizes (multiplier update, epoch selection) from one kernel: the
    conformal order statistic of the true-label scores, the largest score where the level
    needs more rows or the statistic is infinite, ties and infinite scores included."""
    from sklearn_conformal._core import conformal_quantile
    from sklearn_conformal._training._callbacks import validation_set_sizes

    rng = np.random.default_rng(3)
    for trial in range(300):
        n, K = int(rng.integers(1, 200)), int(rng.integers(2, 30))
        logits = torch.from_numpy(rng.normal(size=(n, K)) * rng.uniform(0.1, 10))
        if trial % 4 == 0:
            logits = logits.round()  # tied scores
        if trial % 7 == 0:
            logits[0, 0] = -float("inf")  # a class of probability 0: an infinite score
        y = rng.integers(0, K, size=n)
        level = float(rng.choice([0.5, 0.9, 0.99]))
        lp = F.log_softmax(logits.double(), dim=1).numpy()
        scores = -lp[np.arange(n), y]
        q = conformal_quantile(scores, level)
        if not np.isfinite(q):
            q = float(scores.max())
        expected = (-lp <= q).sum(axis=1).astype(np.float64)
        assert np.array_equal(validation_set_sizes(logits, y, level), expected)


def test_stable_argsort_is_numpys_stable_argsort():
    """Ties keep their order, NaN sorts after every number (inf included), as numpy's."""
    from sklearn_conformal._training._loss_kernels import stable_argsort

    rng = np.random.default_rng(4)
    for trial in range(500):
        n = int(rng.integers(1, 700))
        x = rng.normal(size=n)
        if trial % 3 == 0:
            x = np.round(x * 2)  # many ties
        if trial % 5 == 0:
            x[rng.integers(0, n, size=max(1, n // 8))] = np.nan
        if trial % 7 == 0:
            x[rng.integers(0, n, size=max(1, n // 8))] = -np.inf
        assert np.array_equal(stable_argsort(x), np.argsort(x, kind="stable"))
