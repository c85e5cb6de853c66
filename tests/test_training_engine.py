"""Unit tests of the CaCT training engine: penalties, multiplier rules, soft quantiles, losses."""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from sklearn_conformal._core import conformal_quantile  # noqa: E402
from sklearn_conformal._training._conformal_losses import (  # noqa: E402
    CaCTLoss,
    CALSLoss,
    ConfTrLoss,
    SmallBatchWarning,
    hard_set_size,
    smooth_set_size,
)
from sklearn_conformal._training._multipliers import (  # noqa: E402
    ClasswiseMultipliers,
    InfeasibleConstraintWarning,
)
from sklearn_conformal._training._penalties import get_penalty, p2, p3, phr  # noqa: E402
from sklearn_conformal._training._soft_quantile import (  # noqa: E402
    neuralsort_order_statistic,
    quantile_rank,
    soft_quantile,
    soft_sort,
)


# ------------------------------------------------------------------------------ penalties
@pytest.mark.parametrize("fn", [phr, p2, p3])
def test_penalty_derivative_matches_autograd_on_both_branches(fn):
    z = torch.linspace(-3.0, 3.0, 61, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor(0.7, dtype=torch.float64)
    rho = torch.tensor(1.3, dtype=torch.float64)
    value, deriv = fn(z, lam, rho)
    (grad,) = torch.autograd.grad(value.sum(), z)
    np.testing.assert_allclose(deriv.detach().numpy(), grad.numpy(), rtol=1e-10, atol=1e-12)
    # both branches were exercised
    assert (z < 0).any() and (z > 0).any()


@pytest.mark.parametrize("fn", [phr, p2, p3])
def test_penalty_derivative_at_zero_is_lambda(fn):
    lam = torch.tensor([1e-6, 0.3, 4.0], dtype=torch.float64)
    _, d = fn(torch.zeros(3, dtype=torch.float64), lam, torch.tensor(2.0, dtype=torch.float64))
    np.testing.assert_allclose(d.numpy(), lam.numpy())


def test_phr_closed_form():
    z = torch.tensor([-2.0, -0.1, 0.0, 0.5], dtype=torch.float64)
    lam, rho = 0.5, 1.0
    value, d = phr(z, lam, rho)
    expected_d = np.maximum(0.0, lam + rho * z.numpy())
    np.testing.assert_allclose(d.numpy(), expected_d)
    # inactive branch: lam + rho z < 0 only for z = -2
    assert value[0].item() == pytest.approx(-(lam**2) / (2 * rho))
    assert value[3].item() == pytest.approx(lam * 0.5 + rho * 0.25 / 2)


@pytest.mark.parametrize("name", ["phr", "p2", "p3"])
def test_numpy_penalty_twins_are_bit_identical(name):
    # the fused CPU loss and the multiplier step use the numpy twins: the same float64 values
    rng = np.random.default_rng(0)
    for rep in range(300):
        K = int(rng.integers(1, 60))
        z = rng.normal(size=K) * rng.choice([0.01, 1.0, 10.0])
        if rep % 7 == 0:
            z[: K // 2] = 0.0
        lam = np.abs(rng.normal(size=K)) * rng.choice([1e-6, 1.0, 100.0])
        rho = np.abs(rng.normal(size=K)) + 1e-3
        zt, lt, rt = (torch.from_numpy(a) for a in (z, lam, rho))
        v_t, d_t = get_penalty(name)(zt, lt, rt)
        v_n, d_n = get_penalty(name, numpy=True)(z, lam, rho)
        assert np.array_equal(v_t.numpy(), v_n) and np.array_equal(d_t.numpy(), d_n)


def test_get_penalty_rejects_unknown():
    with pytest.raises(ValueError, match="penalty"):
        get_penalty("relu2")


# ------------------------------------------------------------------------- multiplier rules
def test_alm_step_is_clipped_phr_dual_update():
    m = ClasswiseMultipliers(3, lambda_init=0.5, rho_init=2.0, lambda_max=3.0)
    z = np.array([-1.0, 0.25, 5.0])
    lam = m.alm_step(z)
    # max(0, lam + rho z) then clip to [1e-6, lambda_max]
    np.testing.assert_allclose(lam, [1e-6, 1.0, 3.0])


def test_alm_step_keeps_absent_classes():
    m = ClasswiseMultipliers(3, lambda_init=0.5, rho_init=1.0)
    lam = m.alm_step(np.array([1.0, 1.0, 1.0]), present=np.array([True, False, True]))
    np.testing.assert_allclose(lam, [1.5, 0.5, 1.5])


def test_rho_rule_period_and_condition():
    m = ClasswiseMultipliers(3, lambda_init=0.0, rho_init=1.0, rho_growth=2.0, rho_update_every=3)
    zs = [np.array([1.0, 1.0, -1.0]), np.array([2.0, 0.5, -0.5]), np.array([3.0, 0.2, 0.1])]
    m.alm_step(zs[0])
    m.alm_step(zs[1])
    np.testing.assert_allclose(m.rhos, 1.0)  # epochs 1, 2: not a multiple of 3
    m.alm_step(zs[2])
    # epoch 3 compares with epoch 2: class 0 grew (3 > 2), class 1 shrank, class 2: 0.1 > max(0, -0.5)
    np.testing.assert_allclose(m.rhos, [2.0, 1.0, 2.0])
    # lambda used the old rho at epoch 3: lam_0 after 3 steps = 0 + 1 + 2 + 3 (rho = 1 throughout)
    assert m.lambdas[0] == pytest.approx(6.0)


def test_rho_max_caps_growth():
    m = ClasswiseMultipliers(1, rho_init=1.0, rho_growth=10.0, rho_update_every=1, rho_max=5.0)
    for t in range(1, 5):
        m.alm_step(np.array([float(t)]))
    assert m.rhos[0] == 5.0


def test_samplewise_alm_step_averages_clipped_derivatives():
    m = ClasswiseMultipliers(2, lambda_init=0.5, rho_init=1.0)
    z = np.array([[-2.0, 0.5], [1.0, 0.5]])
    lam = m.alm_step(z, samplewise=True)
    # per sample: max(0, .5 + z) clipped below at 1e-6, then mean over samples
    np.testing.assert_allclose(lam, [(1e-6 + 1.5) / 2, 1.0])


def test_hr_rule_up_down_and_skip_first():
    m = ClasswiseMultipliers(3, rule="hr", lambda_init=1.0, hr_mu=2.0, hr_tau=1.1)
    m.hr_step(np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(m.lambdas, 1.0)  # first step only records
    m.hr_step(np.array([2.0, 1.0, 0.5]))
    # P = lam * excess: up where 2 > 1.1 * 1, unchanged for 1 vs 1, down where 1 > 1.1 * 0.5
    np.testing.assert_allclose(m.lambdas, [2.0, 1.0, 0.5])


def test_infeasibility_warning():
    m = ClasswiseMultipliers(2, lambda_init=1e-6, rho_init=1.0)
    zs = []
    for _ in range(6):
        z = np.array([3.0, 2.0])
        m.alm_step(z)
        zs.append(z)
    with pytest.warns(InfeasibleConstraintWarning):
        assert m.check_feasibility(zs, patience=5)
    ok = ClasswiseMultipliers(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not ok.check_feasibility([np.array([0.5, -0.2])] * 6)


def test_relative_target_and_caps_keep_lambda_bounded_where_literal_diverges():
    """Outer loop on a fixed model whose class sizes the inner step cannot reduce below 2.5-6.

    Literal settings (eta=1, rho0=1, lambda_max=1e6, rho growth): lambda grows without bound.
    Relative target (0.6 x the mean size) with the caps: lambda stays bounded and ends up ordered by
    how far each class is over target (the rarest, largest-set class highest).
    """
    sizes = np.array([2.5, 3.0, 4.0, 6.0])  # class-mean hard sizes of a model, head -> tail

    def run(target, rho0, lam_max, rho_max, inner_gain):
        m = ClasswiseMultipliers(4, rho_init=rho0, lambda_max=lam_max, rho_max=rho_max)
        for _ in range(200):
            # a crude inner step: a multiplier lambda shrinks its class size by gain * lambda,
            # never below 70% of the starting size (the model's capacity)
            d = np.maximum(0.7 * sizes, sizes - inner_gain * m.lambdas)
            m.alm_step(d / target - 1.0)
        return m

    literal = run(1.0, 1.0, 1e6, None, 0.1)
    lit_hist = np.asarray(literal.history)
    # every multiplier keeps growing (no fixed point): monotone and past 100 after 200 epochs
    assert np.all(np.diff(lit_hist[1:], axis=0) > 0)
    assert literal.lambdas.min() > 100
    safe = run(0.6 * sizes.mean(), 0.1, 10.0, 10.0, 0.1)
    hist = np.asarray(safe.history)
    assert hist.max() <= 10.0
    # head classes become feasible and their multipliers fall back; the tail class keeps the largest
    assert safe.lambdas[0] < safe.lambdas[-1]
    assert np.all(np.diff(safe.lambdas) >= 0)


# -------------------------------------------------------------------------- soft quantiles
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 33, 250])
def test_sortnet_converges_to_sort(n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, dtype=torch.float64, generator=g)
    np.testing.assert_allclose(soft_sort(x, 1e9).numpy(), np.sort(x.numpy()), atol=1e-9)
    # a soft sort is a convex mixing: bounded by the data and with the same sum
    s = soft_sort(x, 1.0)
    assert s.min() >= x.min() - 1e-12 and s.max() <= x.max() + 1e-12
    assert s.sum().item() == pytest.approx(x.sum().item())


def _reference_soft_sort(x, steepness):
    # soft_sort by autograd through the plain torch comparator stages (the reference formulation)
    from sklearn_conformal._training._soft_quantile import _bitonic_forward

    n = x.shape[-1]
    m = 1 << (n - 1).bit_length()
    z = x
    if m > n:
        top = z.detach().amax(dim=-1, keepdim=True)
        pad = top + 1e3 + torch.arange(m - n, dtype=x.dtype)
        z = torch.cat([z, pad.expand(*z.shape[:-1], m - n)], dim=-1)
    out, _ = _bitonic_forward(z * steepness)
    return out[..., :n] / steepness


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2,), (16,), (13,), (3, 8), (2, 64)])
def test_sortnet_torch_backward_is_autograd_bit_for_bit(shape, dtype):
    # the torch path (other devices than the CPU): the hand-written backward of the comparator
    # stages equals autograd through the same ops
    from sklearn_conformal._training._soft_quantile import _soft_sort_torch

    g = torch.Generator().manual_seed(sum(shape))
    for steepness in (1.0, 10.0, 50.0):
        x = torch.randn(*shape, generator=g, dtype=dtype) * 2
        w = torch.randn(*shape, generator=g, dtype=dtype)
        fast = x.clone().requires_grad_()
        (_soft_sort_torch(fast, steepness) * w).sum().backward()
        ref = x.clone().requires_grad_()
        (_reference_soft_sort(ref, steepness) * w).sum().backward()
        assert torch.equal(fast.grad, ref.grad)


def test_sortnet_vector_kernels_equal_the_array_stages_bit_for_bit():
    """The numba kernels of the network on one vector (CaCT's training quantile) give the
    numpy stage-by-stage outputs and vector-Jacobian products bit for bit, ties included."""
    from sklearn_conformal._training import _soft_quantile as sq

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(2, 70))
        x = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 3)
        if trial % 5 == 0:
            x[: n // 2] = x[0]
        out, stages, tape = sq.sort_network_np(x.copy(), 10.0)
        ref_out, _, saved = sq.sort_network_np(x.copy()[:, None], 10.0)  # array stages
        assert isinstance(tape, sq._VectorTape) and isinstance(saved, list)
        g = rng.normal(size=out.shape[0])
        grad = sq._network_backward_np(g.copy(), stages, tape)
        ref_grad = sq._network_backward_np(g.copy()[:, None], stages, saved)[:, 0]
        assert np.array_equal(out, ref_out[:, 0]) and np.array_equal(grad, ref_grad)


@pytest.mark.parametrize(
    "shape", [(2,), (3,), (8,), (13,), (16,), (31,), (100,), (256,), (3, 8), (2, 5, 13)]
)
def test_sortnet_numpy_path_matches_reference(shape):
    # the CPU path (numpy float64 comparators) against autograd through the torch formulation:
    # float64 inputs agree to rounding (1e-12); float32 inputs are computed in float64 and cast,
    # so they agree with the float64 reference to float32 precision (the float32 torch
    # formulation itself loses up to ~1e-3 next to the padding, where b - (b - a) cancels)
    from sklearn_conformal._training._soft_quantile import _order_statistic

    g = torch.Generator().manual_seed(sum(shape))
    n = shape[-1]
    for rep in range(12):
        steepness = (1.0, 10.0, 100.0)[rep % 3]
        x64 = torch.randn(*shape, generator=g, dtype=torch.float64) * 10.0 ** (rep % 4 - 2)
        if rep % 4 == 3:
            x64 = x64.round()  # ties
        w64 = torch.randn(*shape, generator=g, dtype=torch.float64)
        ref = x64.clone().requires_grad_()
        ref_out = _reference_soft_sort(ref, steepness)
        (ref_out * w64).sum().backward()
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
            x = x64.to(dtype).to(torch.float64).to(dtype)
            fast = x.clone().requires_grad_()
            out = soft_sort(fast, steepness)
            assert out.dtype == dtype and out.shape == x.shape
            (out * w64.to(dtype)).sum().backward()
            scale = 1.0 + x64.abs().max().item()
            if dtype == torch.float32:  # the reference on the float32-rounded inputs
                ref = x.to(torch.float64).requires_grad_()
                ref_out = _reference_soft_sort(ref, steepness)
                (ref_out * w64.to(dtype).to(torch.float64)).sum().backward()
            assert (out.double() - ref_out.detach()).abs().max().item() <= tol * scale
            gscale = 1.0 + w64.abs().sum().item()
            assert (fast.grad.double() - ref.grad).abs().max().item() <= tol * gscale
            if len(shape) == 1 and n > 1:
                # one order statistic: the same value and the gradient of that output alone
                k = (7 * rep) % n
                one = x.clone().requires_grad_()
                v = _order_statistic(one, k, steepness)
                assert v.shape == () and v.item() == out[k].item()
                v.backward()
                full = x.clone().requires_grad_()
                soft_sort(full, steepness)[k].backward()
                assert torch.equal(one.grad, full.grad)


@pytest.mark.parametrize("level", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("method", ["sortnet", "neuralsort", "hard"])
def test_soft_quantile_converges_to_exact_order_statistic(method, level):
    rng = np.random.default_rng(0)
    s = rng.lognormal(size=250)
    exact = conformal_quantile(s, level)
    x = torch.tensor(s)
    sharp = dict(steepness=1e7, tau=1e-5)
    assert soft_quantile(x, level, method, **sharp).item() == pytest.approx(exact, rel=1e-6)
    if method != "hard":
        errs = [
            abs(soft_quantile(x, level, method, steepness=st, tau=1 / st).item() - exact)
            for st in (1.0, 10.0, 100.0, 1000.0)
        ]
        assert errs[-1] < errs[0] and errs[-1] < 1e-2


def test_soft_quantile_gradient_reaches_several_scores():
    rng = np.random.default_rng(1)
    for method in ("sortnet", "neuralsort"):
        x = torch.tensor(rng.lognormal(size=250), requires_grad=True)
        soft_quantile(x, 0.9, method, steepness=10.0, tau=0.1).backward()
        assert (x.grad.abs() > 1e-3).sum() > 1
        assert x.grad.sum().item() == pytest.approx(1.0, abs=1e-6)  # shifts move q one for one


def test_windowed_sortnet_matches_exact_at_high_steepness():
    rng = np.random.default_rng(2)
    s = rng.lognormal(size=300)
    x = torch.tensor(s)
    for level in (0.5, 0.99):
        q = soft_quantile(x, level, "sortnet", steepness=1e7, window=16).item()
        assert q == pytest.approx(conformal_quantile(s, level), rel=1e-6)


def test_quantile_rank_clips_to_n():
    assert quantile_rank(10, 0.99) == 10
    assert quantile_rank(250, 0.99) == math.ceil(251 * 0.99)
    assert neuralsort_order_statistic(torch.tensor([3.0, 1.0, 2.0]), 1, 1e-4).item() == pytest.approx(1.0)


# -------------------------------------------------------------------------------- losses
def test_smooth_set_size_tends_to_hard_size():
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(50, 6, generator=g, dtype=torch.float64), dim=1)
    q = torch.tensor(1.5, dtype=torch.float64)
    np.testing.assert_allclose(
        smooth_set_size(lp, q, 1e-6).numpy(), hard_set_size(lp, q).numpy(), atol=1e-6
    )


def _batch(n=400, K=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, K, generator=g, requires_grad=True)
    y = torch.randint(0, K, (n,), generator=g)
    return logits, y


@pytest.mark.parametrize(
    "loss",
    [
        ConfTrLoss(5, size_weight=0.1),
        CaCTLoss(5, multipliers="alm", target_size=1.0),
        CaCTLoss(5, multipliers="hr", target_size=1.0, quantile_method="neuralsort"),
        CaCTLoss(5, penalty="p3", penalty_reduction="sum", quantile_method="hard"),
        CALSLoss(5, margin=1.0),
    ],
)
def test_losses_are_finite_differentiable_and_exceed_ce(loss):
    torch.manual_seed(0)
    logits, y = _batch()
    loss.set_multipliers(np.full(5, 0.5), np.full(5, 1.0)) if hasattr(loss, "set_multipliers") else None
    value = loss(logits, y)
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    ce = torch.nn.functional.cross_entropy(logits.detach(), y).item()
    assert value.item() != pytest.approx(ce)


def test_cact_alm_loss_equals_independent_computation():
    torch.manual_seed(3)
    logits, y = _batch(n=200, K=4, seed=3)
    loss = CaCTLoss(4, target_size=2.0, quantile_method="hard", temperature=0.3)
    lam = np.array([0.1, 0.2, 0.3, 0.4])
    loss.set_multipliers(lam, np.full(4, 0.5))
    torch.manual_seed(7)
    value = loss(logits, y).item()
    # recompute with the same permutation
    torch.manual_seed(7)
    perm = torch.randperm(200)
    cal, pred = perm[:100], perm[100:]
    lp = torch.log_softmax(logits.detach().double(), 1)
    q = np.sort((-lp[cal, y[cal]]).numpy())[quantile_rank(100, 0.99) - 1]
    size = torch.sigmoid((q + lp[pred]) / 0.3).sum(1).numpy()
    yp = y[pred].numpy()
    pen = []
    for k in range(4):
        if (yp == k).any():
            z = size[yp == k].mean() / 2.0 - 1.0
            x = lam[k] + 0.5 * z
            pen.append(lam[k] * z + 0.25 * z * z if x >= 0 else -lam[k] ** 2 / 1.0)
    expected = torch.nn.functional.cross_entropy(logits.detach().double(), y).item() + np.mean(pen)
    assert value == pytest.approx(expected, rel=1e-5)


def _loss_and_grad(make_loss, logits, y, torch_path=False, monkeypatch=None):
    if torch_path:  # the torch formulation (what runs on other devices)
        from sklearn_conformal._training import _conformal_losses

        monkeypatch.setattr(_conformal_losses, "_numpy_path", lambda x: False)
    try:
        x = logits.clone().requires_grad_()
        value = make_loss()(x, y)
        value.backward()
    finally:
        if torch_path:
            monkeypatch.undo()
    return value.detach().double(), x.grad.double()


_FUSED_LOSSES = {
    "alm-phr": dict(penalty="phr"),
    "alm-p2-sum": dict(penalty="p2", penalty_reduction="sum"),
    "alm-p3": dict(penalty="p3"),
    "alm-no-window": dict(quantile_window=None),
    "alm-window-16": dict(quantile_window=16, calibration_fraction=0.4),
    "hr": dict(multipliers="hr"),
    "conftr": None,
}


@pytest.mark.parametrize("name", list(_FUSED_LOSSES))
@pytest.mark.parametrize("K,n", [(50, 500), (10, 342), (3, 40), (7, 6)])
def test_fused_cpu_losses_match_the_torch_formulation(name, K, n, monkeypatch):
    # the CPU path (threshold, sizes and the class-mean penalty fused in numpy float64) against
    # autograd through the torch operations: float64 logits agree to rounding; float32 logits
    # agree with the float64 reference to float32 precision (the float32 torch formulation
    # itself is further from it)
    kw = _FUSED_LOSSES[name]

    def make_loss():
        if kw is None:
            return ConfTrLoss(K, size_weight=0.1, generator=torch.Generator().manual_seed(5))
        loss = CaCTLoss(K, target_size=2.0, generator=torch.Generator().manual_seed(5), **kw)
        loss.set_multipliers(np.linspace(0.0, 2.0, K), np.linspace(0.5, 3.0, K))
        return loss

    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(n, K, generator=g, dtype=torch.float64) * 3
        y = torch.randint(0, K, (n,), generator=g)
        v_ref, g_ref = _loss_and_grad(make_loss, logits, y, True, monkeypatch)
        v, grad = _loss_and_grad(make_loss, logits, y)
        gscale = g_ref.abs().max().item()
        assert abs(v - v_ref).item() <= 1e-12 * (1 + abs(v_ref).item())
        assert (grad - g_ref).abs().max().item() <= 1e-12 * gscale
        # float32 logits, against the float64 reference on the same (rounded) inputs
        l32 = logits.float()
        v_ref, g_ref = _loss_and_grad(make_loss, l32.double(), y, True, monkeypatch)
        v_old, g_old = _loss_and_grad(make_loss, l32, y, True, monkeypatch)
        v, grad = _loss_and_grad(make_loss, l32, y)
        gscale = g_ref.abs().max().item()
        assert abs(v - v_ref).item() <= 1e-6 * (1 + abs(v_ref).item())
        err = (grad - g_ref).abs().max().item()
        assert err <= 2e-5 * gscale
        assert err <= max(2.0 * (g_old - g_ref).abs().max().item(), 1e-6 * gscale)


def test_small_batch_falls_back_to_ce_and_warns_once():
    loss = CaCTLoss(3)
    logits, y = _batch(n=3, K=3)
    with pytest.warns(SmallBatchWarning):
        v = loss(logits, y)
    assert v.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(logits, y)  # no second warning


# ------------------------------------------------------------------------- per-fit random scope
def _draws(seed):
    from sklearn_conformal._training._random import RandomScope

    with RandomScope(seed):
        net = torch.nn.Sequential(
            torch.nn.Linear(5, 8), torch.nn.Conv1d(1, 2, 3), torch.nn.Embedding(4, 3),
            torch.nn.LSTM(3, 3), torch.nn.Dropout(0.5),
        )
        x = torch.ones(64, 8)
        out = [
            torch.nn.functional.dropout(x, 0.5),
            torch.nn.functional.dropout2d(torch.ones(4, 6, 5, 5), 0.5),
            torch.rand_like(x), torch.randn(3), torch.randperm(10), torch.empty(4).uniform_(),
        ]
    return [t.detach().clone() for t in net.state_dict().values()] + out


def test_random_scope_is_reproducible_thread_local_and_leaves_the_global_generator():
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    state = torch.get_rng_state()
    a, b, c = _draws(1), _draws(1), _draws(2)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(_draws, [1, 2, 1, 2] * 3))
    for seed, res in zip([1, 2, 1, 2] * 3, results):
        assert all(torch.equal(u, v) for u, v in zip(res, a if seed == 1 else c))
    assert torch.equal(state, torch.get_rng_state())


def test_random_scope_dropout_matches_torch_semantics():
    from sklearn_conformal._training._random import RandomScope

    x = torch.ones(2000, 50)
    with RandomScope(0):
        out = torch.nn.functional.dropout(x, 0.2)
        assert torch.nn.functional.dropout(x, 0.2, training=False) is x
        assert torch.equal(torch.nn.functional.dropout(x, 1.0), torch.zeros_like(x))
        ch = torch.nn.functional.dropout2d(torch.ones(8, 16, 4, 4), 0.5)
    # kept entries are scaled by 1 / (1 - p); the kept share is 1 - p (binomial, 1e5 draws)
    assert set(torch.unique(out).tolist()) == {0.0, 1.25}
    assert abs((out > 0).float().mean().item() - 0.8) < 0.01
    # channel dropout: one mask value per (sample, channel)
    assert torch.equal(ch, ch[:, :, :1, :1].expand_as(ch))
    assert set(torch.unique(ch).tolist()) <= {0.0, 2.0}


def test_random_scope_covers_alpha_dropout_rrelu_and_gumbel_softmax():
    import torch.nn.functional as F

    from sklearn_conformal._training._random import RandomScope

    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))

    def draws(seed):
        with RandomScope(seed):
            return [
                torch.nn.AlphaDropout(0.2).train()(x),
                F.feature_alpha_dropout(x.reshape(1000, 40, 5), 0.2, training=True),
                torch.nn.RReLU().train()(x),
                F.gumbel_softmax(torch.zeros(20_000, 4), hard=True),
            ]

    state = torch.get_rng_state()
    a, b = draws(1), draws(1)
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    alpha, feature, rrelu, gumbel = a
    # alpha dropout keeps a standard normal input at mean 0 and variance 1 (torch's kernel)
    assert abs(alpha.mean().item()) < 0.01 and abs(alpha.std().item() - 1.0) < 0.01
    # feature alpha dropout: a whole (sample, channel) is kept (a x + alpha a p) or dropped (the
    # constant -alpha a (1 - p)), as in torch's kernel
    p_drop, alpha_selu = 0.2, 1.7580993408473766
    scale = 1.0 / math.sqrt((alpha_selu**2 * p_drop + 1) * (1 - p_drop))
    kept = torch.isclose(feature, scale * x.reshape(1000, 40, 5) + alpha_selu * scale * p_drop)
    dropped = torch.isclose(feature, torch.tensor(-alpha_selu * scale * (1 - p_drop)))
    assert torch.all(kept.all(-1) | dropped.all(-1))
    assert abs(dropped.all(-1).float().mean().item() - p_drop) < 0.03
    neg = x < 0
    slope = rrelu[neg] / x[neg]
    assert torch.equal(rrelu[~neg], x[~neg])
    assert 1 / 8 - 1e-6 <= slope.min().item() and slope.max().item() <= 1 / 3 + 1e-6
    assert torch.equal(gumbel.sum(1), torch.ones(20_000))
    assert torch.all((gumbel.mean(0) - 0.25).abs() < 0.02)  # uniform logits: uniform choice


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_loss_equals_independent_computation(gamma, weighted):
    from sklearn_conformal._training._conformal_losses import FocalLoss

    logits, y = _batch(n=64, K=4, seed=7)
    w = np.array([0.5, 1.0, 2.0, 3.0], dtype=np.float32) if weighted else None
    value = FocalLoss(4, gamma=gamma, class_weight=w)(logits, y)
    # by hand, in float64: p_t = exp(l_t) / sum_j exp(l_j), FL = (1 - p_t)^gamma (-log p_t)
    L = logits.detach().double().numpy()
    t = y.numpy()
    p = np.exp(L - L.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    pt = p[np.arange(len(t)), t]
    fl = (1.0 - pt) ** gamma * -np.log(pt)
    weights = np.ones(len(t)) if w is None else w[t].astype(np.float64)
    expected = np.sum(weights * fl) / np.sum(weights)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(logits.grad).all()
    if gamma == 0.0:  # the (weighted) cross-entropy
        ce = F.cross_entropy(
            logits.detach(), y, weight=None if w is None else torch.as_tensor(w)
        ).item()
        assert value.item() == pytest.approx(ce, rel=1e-6)


def test_cals_hr_loss_is_the_linear_penalty():
    logits, y = _batch(n=50, K=5, seed=2)
    lam = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    loss = CALSLoss(5, margin=1.0, multipliers="hr")
    loss.set_multipliers(lam, np.full(5, 7.0))  # rho is not used by the linear penalty
    value = loss(logits, y).item()
    L = logits.detach().double().numpy()
    z = (L.max(axis=1, keepdims=True) - L - 1.0) / 1.0
    ce = F.cross_entropy(logits.detach().double(), y).item()
    assert value == pytest.approx(ce + np.mean(lam[None, :] * np.maximum(z, 0.0)), rel=1e-5)
    alm = CALSLoss(5, margin=1.0)
    alm.set_multipliers(lam, np.full(5, 7.0))
    assert alm(logits, y).item() != pytest.approx(value)


def test_cals_hr_multiplier_step_follows_the_rule():
    """The CALS-HR epoch step on a toy history of validation logits equals the heuristic rule
    ``lambda <- mu lambda if P > tau P_prev; lambda / mu if P_prev > tau P`` with
    ``P_k = lambda_k mean_i max(0, z_ik)``."""
    from types import SimpleNamespace

    from skorch.dataset import Dataset
    from skorch.history import History

    from sklearn_conformal._training._callbacks import (
        CALS_constraints,
        CALS_excess,
        MultiplierUpdate,
    )

    K, margin, mu, tau = 3, 1.0, 2.0, 1.1
    g = torch.Generator().manual_seed(0)
    history_logits = [3.0 * torch.randn(20, K, generator=g) for _ in range(5)]

    class Replay(torch.nn.Module):  # returns the next logits of the toy history
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, X):
            out = history_logits[self.calls]
            self.calls += 1
            return out

    mult = ClasswiseMultipliers(K, rule="hr", lambda_init=0.01, hr_mu=mu, hr_tau=tau,
                                lambda_max=0.5)
    callback = MultiplierUpdate(mult, kind="margin", confidence_level=0.9, target_size=None,
                                temperature=0.5, hard=True, margin=margin)
    net = SimpleNamespace(module_=Replay(), device="cpu", history=History(),
                          train_objective_=CALSLoss(K, margin=margin, multipliers="hr"))
    valid = Dataset(np.zeros((20, 2), dtype=np.float32), np.arange(20) % K)
    for _ in history_logits:
        net.history.new_epoch()
        callback.on_epoch_end(net, dataset_valid=valid)

    lam, prev, expected = np.full(K, 0.01), None, [np.full(K, 0.01)]
    for logits in history_logits:
        e = np.maximum(CALS_constraints(logits.double(), margin), 0.0).mean(axis=0)
        np.testing.assert_allclose(CALS_excess(CALS_constraints(logits.double(), margin)), e)
        P = lam * e
        if prev is not None:
            lam = np.where(P > tau * prev, lam * mu, np.where(prev > tau * P, lam / mu, lam))
            lam = np.clip(lam, 1e-6, 0.5)
        prev = P
        expected.append(lam.copy())
    np.testing.assert_allclose(np.asarray(mult.history), np.asarray(expected), rtol=1e-12)
    assert len(set(np.round(np.asarray(mult.history)[1:].ravel(), 12))) > 1  # it moved
    np.testing.assert_allclose(net.train_objective_.lambdas.numpy(), lam, rtol=1e-6)
    assert np.isnan(net.history[-1]["rho_max"])  # no penalty parameter under the rule


def test_focal_loss_gradient_stays_finite_on_certain_rows():
    from sklearn_conformal._training._conformal_losses import FocalLoss

    logits = torch.tensor([[200.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    value = FocalLoss(3, gamma=0.5)(logits, torch.tensor([0, 1]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


# ------------------------------------------------------------------- CoCP phase net
@pytest.mark.parametrize("loss", ["mse", "pinball", "soft_coverage"])
def test_phase_net_lean_epochs_match_skorch_generic_path(loss):
    # the trimmed training/validation epochs, the hand-written gradients, the direct fused
    # AdamW step and the clipping give the same weights and history as skorch's generic loop
    # with autograd, optimizer.step() and torch's clip_grad_norm_ (the torch path: the
    # compiled epochs, tested in test_mlp_kernels, compute in other roundings)
    from skorch.callbacks import Callback

    from sklearn_conformal._training import _phases
    from sklearn_conformal._training._cocp import FoldedPinballLoss, SoftCoverageLoss
    from sklearn_conformal._training._networks import CoCPMLP, RadiusHead

    class BatchNoop(Callback):  # acts per batch: forces skorch's generic path
        def on_batch_end(self, net, **kwargs):
            pass

    g = torch.Generator().manual_seed(0)
    X = torch.randn(700, 3, generator=g)
    r = torch.rand(700, generator=g)
    extra = {}
    if loss == "pinball":
        make_module, make_criterion = lambda: RadiusHead(CoCPMLP(3, (16, 16))), lambda: (
            FoldedPinballLoss(0.9))
    elif loss == "mse":
        make_module, make_criterion = lambda: CoCPMLP(3, (16, 16)), torch.nn.MSELoss
    else:  # target (y, radius); the annealed temperature changes between epochs
        r = torch.stack([torch.randn(700, generator=g), r], dim=1)
        make_module, make_criterion = lambda: CoCPMLP(3, (16, 16)), lambda: SoftCoverageLoss(0.5)
        extra = {"beta_schedule": (0.5, 0.05)}
    from sklearn_conformal._training import _nets

    results = []
    for generic in (False, True):
        torch.manual_seed(0)
        module = make_module()
        kwargs = dict(phase="radius", max_epochs=6, patience=10, batch_size=128,
                      generator=torch.Generator().manual_seed(1), **extra)
        init = _nets.PhaseNet.__init__
        if generic:

            def patched(self, *args, **kw):
                kw["callbacks"] = list(kw.get("callbacks", [])) + [("noop", BatchNoop())]
                init(self, *args, **kw)

            _nets.PhaseNet.__init__ = patched
            clip = _nets.clip_grad_norm
            _nets.clip_grad_norm = torch.nn.utils.clip_grad_norm_  # torch's own clipping
            try:
                rec = _phases.train_phase(module, make_criterion(), X[:500], r[:500],
                                          X[500:], r[500:], **kwargs)
            finally:
                _nets.PhaseNet.__init__ = init
                _nets.clip_grad_norm = clip
        else:
            _nets.PhaseNet.__init__ = lambda self, *a, **kw: init(
                self, *a, compiled_epochs=False, **kw
            )
            try:
                rec = _phases.train_phase(module, make_criterion(), X[:500], r[:500],
                                          X[500:], r[500:], **kwargs)
            finally:
                _nets.PhaseNet.__init__ = init
        results.append((rec, [t.detach().clone() for t in module.state_dict().values()]))
    (rec_a, w_a), (rec_b, w_b) = results
    assert rec_a["initial_valid_loss"] != rec_a["best_valid_loss"]  # it trained
    assert rec_a["best_valid_loss"] == rec_b["best_valid_loss"]
    assert rec_a["epochs"] == rec_b["epochs"]
    assert all(torch.equal(a, b) for a, b in zip(w_a, w_b))


def test_direct_network_forward_is_the_modules_forward_bit_for_bit():
    """The direct forward of CoCP's default networks gives the modules' outputs and gradients
    bit for bit; user networks and networks with hooks keep their module call."""
    from sklearn_conformal._training._direct import DirectNetwork
    from sklearn_conformal._training._networks import CoCPMLP, RadiusHead, ScalarHead

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(300, 3, generator=gen)
    torch.manual_seed(1)
    for module in (CoCPMLP(3), RadiusHead(CoCPMLP(3), floor=1e-3)):
        forward = DirectNetwork.of(module)
        assert forward is not None
        grads = []
        for f in (module, forward):
            module.zero_grad(set_to_none=True)
            out = f(X)
            (out ** 2).mean().backward()
            grads.append([p.grad.clone() for p in module.parameters()])
            grads[-1].append(out.detach())
        for a, b in zip(*grads):
            assert torch.equal(a, b)
    assert DirectNetwork.of(ScalarHead(torch.nn.Linear(3, 1))) is None
    hooked = CoCPMLP(3)
    hooked.layers[0].register_forward_hook(lambda *args: None)
    assert DirectNetwork.of(hooked) is None


@pytest.mark.parametrize("n_rows", [512, 333, 1])
def test_direct_gradients_are_autograd_bit_for_bit(n_rows):
    """The hand-written backward passes of the default networks and built-in losses give
    autograd's loss and gradients bit for bit, ties of the pinball's maximum and zeros of the
    soft coverage's |y - m| included; other losses and networks are left to autograd."""
    from sklearn_conformal._training._cocp import FoldedPinballLoss, SoftCoverageLoss
    from sklearn_conformal._training._direct import DirectNetwork, direct_loss_gradient
    from sklearn_conformal._training._networks import CoCPMLP, RadiusHead, ScalarHead

    gen = torch.Generator().manual_seed(n_rows)
    X = torch.randn(n_rows, 4, generator=gen)
    cases = [
        (CoCPMLP(4), torch.nn.MSELoss(), torch.randn(n_rows, generator=gen)),
        (RadiusHead(CoCPMLP(4, (8, 5, 3)), 1e-3), FoldedPinballLoss(0.8),
         torch.rand(n_rows, generator=gen)),
        (CoCPMLP(4, ()), SoftCoverageLoss(0.05),
         torch.stack([torch.randn(n_rows, generator=gen), torch.rand(n_rows, generator=gen)], 1)),
    ]
    half = max(1, n_rows // 2)
    for module, criterion, target in cases:
        with torch.no_grad():  # ties: residual = radius, y = centre on half of the rows
            if isinstance(criterion, FoldedPinballLoss):
                target[:half] = module(X[:half])
            elif isinstance(criterion, SoftCoverageLoss):
                target[:half, 0] = module(X[:half])
        module.zero_grad(set_to_none=True)
        expected = criterion(module(X), target)
        expected.backward()
        expected_grads = [p.grad.clone() for p in module.parameters()]
        module.zero_grad(set_to_none=True)
        network = DirectNetwork.of(module)
        loss = network.loss_and_backward(X, target, direct_loss_gradient(criterion))
        assert torch.equal(loss, expected.detach())
        for p, g in zip(module.parameters(), expected_grads):
            assert torch.equal(p.grad, g) and p.grad.stride() == g.stride()
    # one gradient function across dtypes (its per-batch constants follow the dtype)
    gen64 = torch.Generator().manual_seed(n_rows + 1)
    for criterion, target in ((FoldedPinballLoss(0.8), torch.rand(n_rows, generator=gen64)),
                              (SoftCoverageLoss(0.05), torch.randn(n_rows, 2, generator=gen64))):
        gradient = direct_loss_gradient(criterion)
        for dtype in (torch.float32, torch.float64):
            out = torch.randn(n_rows, generator=gen64, dtype=torch.float64).to(dtype)
            leaf = out.clone().requires_grad_()
            expected = criterion(leaf, target.to(dtype))
            expected.backward()
            loss, grad = gradient(out, target.to(dtype))
            assert torch.equal(loss, expected.detach()) and torch.equal(grad, leaf.grad)
    assert direct_loss_gradient(torch.nn.MSELoss(reduction="sum")) is None
    assert direct_loss_gradient(torch.nn.L1Loss()) is None
    assert DirectNetwork.of(ScalarHead(torch.nn.Linear(4, 1))) is None
    frozen = CoCPMLP(4)
    frozen.layers[0].weight.requires_grad_(False)
    assert DirectNetwork.of(frozen) is None


@pytest.mark.parametrize("scale", [1e-3, 0.3, 1.0, 4.0, 30.0, 1e4])
@pytest.mark.parametrize("max_norm", [5.0, 0.3])
def test_clip_grad_norm_is_torch_clipping_bit_for_bit(scale, max_norm):
    from sklearn_conformal._training._nets import clip_grad_norm

    gen = torch.Generator().manual_seed(int(scale * 1000) % 97)
    for _ in range(50):
        shapes = [(64, 3), (64,), (64, 64), (64,), (1, 64), (1,)]
        grads = [torch.randn(s, generator=gen) * scale for s in shapes]
        mine = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        ref = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p, q, g in zip(mine, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        clip_grad_norm(mine, max_norm)
        torch.nn.utils.clip_grad_norm_(ref, max_norm)
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(mine, ref))


def test_classifier_net_log_table_only_when_shown(capsys):
    """The epoch table is formatted only when printed (verbose), a custom sink is always fed,
    and a net made verbose later prints the header with its first row."""
    from skorch.callbacks import PrintLog

    from sklearn_conformal._training._nets import ConformalNet, LazyPrintLog
    from sklearn_conformal._training._networks import MLP

    gen = np.random.default_rng(0)
    X = gen.normal(size=(60, 3)).astype(np.float32)
    y = gen.integers(0, 2, 60)

    def make(verbose, **kwargs):
        torch.manual_seed(0)
        return ConformalNet(MLP(3, 2), criterion=torch.nn.CrossEntropyLoss, max_epochs=2,
                            train_split=None, verbose=verbose, **kwargs)

    net = make(0).fit(X, y)
    assert isinstance(dict(net.callbacks_)["print_log"], LazyPrintLog)
    assert capsys.readouterr().out == ""
    net.verbose = 1
    net.partial_fit(X, y)
    out = capsys.readouterr().out
    assert "epoch" in out and "train_loss" in out and "dur" in out
    make(1).fit(X, y)
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # header, rule, 2 rows
    lines = []
    make(0, callbacks__print_log__sink=lines.append).fit(X, y)
    assert len(lines) == 4 and capsys.readouterr().out == ""
    assert issubclass(LazyPrintLog, PrintLog)
