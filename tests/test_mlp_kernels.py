"""The compiled CoCP epochs (``_training/_mlp_kernels`` through ``_kernel_epochs``).

The kernels compute what torch computes for the default networks, in other roundings: their
gradients against autograd in float64, their clipping and AdamW steps against torch's, whole
phases against the torch path, and their choice of when to apply.
"""

import threading
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn_conformal._training import _nets, _phases  # noqa: E402
from sklearn_conformal._training._cocp import FoldedPinballLoss, SoftCoverageLoss  # noqa: E402
from sklearn_conformal._training._kernel_epochs import KernelEpochs  # noqa: E402
from sklearn_conformal._training._mlp_kernels import (  # noqa: E402
    LOSS_CODES,
    loss_gradient,
    train_epoch,
)
from sklearn_conformal._training._networks import CoCPMLP, RadiusHead  # noqa: E402
from sklearn_conformal._training._threads import single_threaded_blas  # noqa: E402

LOSSES = ["mse", "folded_pinball", "soft_coverage"]


def _flat(module):
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy().copy()


def _sizes(module):
    body = module.body if isinstance(module, RadiusHead) else module
    linears = [m for m in body.layers if isinstance(m, torch.nn.Linear)]
    return np.array([linears[0].in_features] + [m.out_features for m in linears], dtype=np.int64)


def _problem(loss, hidden, n=300, d=3, seed=0):
    """A default network, its criterion, float32 data and the kernels' loss spec."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = torch.randn(n, generator=g)
    if loss == "folded_pinball":
        module, criterion = RadiusHead(CoCPMLP(d, hidden), floor=1e-3), FoldedPinballLoss(0.8)
        target = y.abs()
    elif loss == "mse":
        module, criterion, target = CoCPMLP(d, hidden), torch.nn.MSELoss(), y
    else:
        module, criterion = CoCPMLP(d, hidden), SoftCoverageLoss(0.3)
        target = torch.stack([y, 0.5 + torch.rand(n, generator=g)], dim=1)
    floor = getattr(module, "floor", None)
    spec = (LOSS_CODES[loss], getattr(criterion, "tau", 0.0), getattr(criterion, "beta", 1.0),
            floor is not None, 0.0 if floor is None else floor)
    return module, criterion, X, target, spec


def _target2d(target):
    t = target.numpy()
    return np.ascontiguousarray(t.reshape(len(t), -1))


@pytest.mark.parametrize("hidden", [(16, 16), (8,), ()])
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_gradient_matches_autograd_in_float64(loss, hidden):
    module, criterion, X, target, spec = _problem(loss, hidden)
    theta = _flat(module)
    grad = np.full_like(theta, np.nan)
    value = loss_gradient(theta, _sizes(module), X.numpy(), _target2d(target), spec, grad)
    # the reference: autograd on a float64 copy of the same float32 weights
    ref = module.double()
    ref_loss = criterion(ref(X.double()), target.double())
    ref_loss.backward()
    ref_grad = torch.cat([p.grad.reshape(-1) for p in ref.parameters()]).numpy()
    assert value == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-7)
    scale = np.abs(ref_grad).max()
    assert scale > 0
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5 * scale)


def test_loss_gradient_ties_follow_autograd_rules():
    # a network whose output is its last bias (all weights zero): the target equals the
    # output exactly, so the pinball loss has a tie (autograd splits the gradient in half)
    # and the soft coverage's |y - m| is at its kink (sgn(0) = 0: no gradient)
    module = CoCPMLP(2, (4,))
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        module.layers[-1].bias.fill_(0.75)
    theta, sizes = _flat(module), _sizes(module)
    X = np.ones((5, 2), dtype=np.float32)
    tau = 0.8
    grad = np.empty_like(theta)
    loss_gradient(theta, sizes, X, np.full((5, 1), 0.75, np.float32),
                  (LOSS_CODES["folded_pinball"], tau, 1.0, False, 0.0), grad)
    # d/d(bias) = sum over rows of -(tau + (tau - 1)) / 2 / n
    assert grad[-1] == pytest.approx(-(2 * tau - 1) / 2, rel=1e-6)
    target = np.column_stack([np.full(5, 0.75), np.full(5, 0.1)]).astype(np.float32)
    loss_gradient(theta, sizes, X, target, (LOSS_CODES["soft_coverage"], 0.0, 0.2, False, 0.0),
                  grad)
    assert grad[-1] == 0.0


def _torch_steps(module, criterion, batches, lr, weight_decay, max_norm):
    """torch's training steps (autograd, clip_grad_norm_, non-fused AdamW) on float64 copies."""
    ref = module.double()
    opt = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=weight_decay, foreach=False)
    for Xb, tb in batches:
        opt.zero_grad()
        criterion(ref(Xb.double()), tb.double()).backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in ref.parameters()]).numpy()


@pytest.mark.parametrize("max_norm", [1e-3, 0.0, 100.0])
@pytest.mark.parametrize("loss", LOSSES)
def test_epoch_steps_are_torchs_clipping_and_adamw(loss, max_norm):
    # three minibatches (the last one smaller) in a given order: the kernel's epoch against
    # torch's steps on the same rows; max_norm 1e-3 clips every step, 0 turns clipping off
    module, criterion, X, target, spec = _problem(loss, (16, 16), n=300)
    theta = _flat(module)
    start = theta.copy()
    state = (theta, np.empty_like(theta), np.zeros_like(theta), np.zeros_like(theta))
    order = np.random.default_rng(3).permutation(300)
    losses = np.empty(3)
    lr, weight_decay = 1e-2, 1e-2
    step = train_epoch(state, _sizes(module), X.numpy(), _target2d(target), order, 128, spec,
                       (0, lr, weight_decay, 0.9, 0.999, 1e-8, max_norm), losses)
    assert step == 3
    o = torch.as_tensor(order)
    batches = [(X[o[s : s + 128]], target[o[s : s + 128]]) for s in (0, 128, 256)]
    ref = _torch_steps(module, criterion, batches, lr, weight_decay, max_norm or float("inf"))
    moved = np.abs(ref - start).max()
    assert moved > 1e-4  # the steps changed the weights
    np.testing.assert_allclose(theta, ref, rtol=0, atol=2e-3 * moved)


def _run_phase(loss, problem=None):
    """train_phase on a small problem; returns (record, trained weights)."""
    module, criterion, X, target, _ = problem or _problem(loss, (16, 16), n=700)
    extra = {"beta_schedule": (0.3, 0.05)} if loss == "soft_coverage" else {}
    rec = _phases.train_phase(
        module, criterion, X[:500], target[:500], X[500:], target[500:], phase="p",
        max_epochs=8, patience=20, batch_size=128, lr=1e-2, gradient_clip=0.5,
        generator=torch.Generator().manual_seed(1), **extra,
    )
    return rec, _flat(module)


def _phase(loss, compiled):
    """:func:`_run_phase` with the compiled epochs on or off; returns (record, weights, net)."""
    nets = []
    init = _nets.PhaseNet.__init__

    def patched(self, *args, **kw):
        init(self, *args, compiled_epochs=compiled, **kw)
        nets.append(self)

    _nets.PhaseNet.__init__ = patched
    try:
        rec, weights = _run_phase(loss)
    finally:
        _nets.PhaseNet.__init__ = init
    return rec, weights, nets[0]


@pytest.mark.parametrize("loss", LOSSES)
def test_compiled_phase_follows_the_torch_phase(loss):
    with warnings.catch_warnings():
        # e.g. torch's "lr_scheduler.step() before optimizer.step()": the kernels stepped
        warnings.simplefilter("error")
        rec_k, w_k, net_k = _phase(loss, True)
    rec_t, w_t, net_t = _phase(loss, False)
    assert net_k.__dict__["_kernel_epochs"][1] is not None
    assert net_t.__dict__.get("_kernel_epochs") is None
    assert rec_k["epochs"] == rec_t["epochs"] == 8
    assert rec_k["best_valid_loss"] < rec_k["initial_valid_loss"]  # it trained
    assert rec_k["best_valid_loss"] == pytest.approx(rec_t["best_valid_loss"], rel=1e-4)
    np.testing.assert_allclose(w_k, w_t, rtol=0, atol=1e-3 * np.abs(w_t).max())
    hist_k, hist_t = net_k.history, net_t.history
    np.testing.assert_allclose(hist_k[:, "train_loss"], hist_t[:, "train_loss"], rtol=1e-4)
    np.testing.assert_allclose(hist_k[:, "valid_loss"], hist_t[:, "valid_loss"], rtol=1e-4)
    assert hist_k[:, "train_batch_count"] == hist_t[:, "train_batch_count"]
    # the optimiser's state is the kernels' moments: a step count per batch, views of them
    state = net_k.optimizer_.state
    params = list(net_k.module_.parameters())
    assert [float(state[p]["step"]) for p in params] == [4.0 * 8] * len(params)
    kernels = net_k.__dict__["_kernel_epochs"][1]
    assert np.shares_memory(state[params[0]]["exp_avg"].numpy(), kernels.exp_avg)


def test_early_stopping_scores_the_incoming_weights_like_the_epochs():
    # lr = 0 and no weight decay: the weights never move, so every epoch's validation loss is
    # the incoming weights' loss, and the phase keeps them (best epoch 0) with the same value
    module, criterion, X, target, _ = _problem("folded_pinball", (16, 16), n=700)
    nets = []
    init = _nets.PhaseNet.__init__

    def patched(self, *args, **kw):
        init(self, *args, **kw)
        nets.append(self)

    _nets.PhaseNet.__init__ = patched
    try:
        rec = _phases.train_phase(
            module, criterion, X[:500], target[:500], X[500:], target[500:], phase="p",
            max_epochs=3, patience=10, batch_size=128, lr=0.0, weight_decay=0.0,
            generator=torch.Generator().manual_seed(1),
        )
    finally:
        _nets.PhaseNet.__init__ = init
    assert nets[0].__dict__["_kernel_epochs"][1] is not None
    assert rec["best_epoch"] == 0
    assert nets[0].history[:, "valid_loss"] == [rec["initial_valid_loss"]] * 3


def test_compiled_phase_is_reproducible_in_threads():
    sequential = [_run_phase("folded_pinball")[1] for _ in range(2)]
    assert np.array_equal(sequential[0], sequential[1])
    results = [None, None]
    # the networks are initialised here: _problem seeds torch's global generator
    problems = [_problem("folded_pinball", (16, 16), n=700) for _ in range(2)]

    def work(i):
        with single_threaded_blas():
            results[i] = _run_phase("folded_pinball", problems[i])[1]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, sequential[0]) for r in results)


def test_kernels_apply_only_to_what_they_implement():
    def kernels(module, criterion=None, optimizer=torch.optim.AdamW, y=None, **opt):
        criterion = criterion or torch.nn.MSELoss()
        net = _nets.PhaseNet(module=module, criterion=criterion, optimizer=optimizer,
                             iterator_train=_nets.TensorBatchIterator, **opt)
        net.initialize()
        y = torch.zeros(4) if y is None else y
        ds = type("D", (), {"X": torch.zeros(4, 3), "y": y})()
        return KernelEpochs.of(net, _nets.TensorBatchIterator(ds, batch_size=2))

    assert kernels(CoCPMLP(3, (8, 8))) is not None
    assert kernels(RadiusHead(CoCPMLP(3, (8,))), FoldedPinballLoss(0.9)) is not None
    # a user network, another optimiser or setting, a subclassed loss: torch trains them
    user = torch.nn.Sequential(torch.nn.Linear(3, 1))
    assert kernels(user) is None
    assert kernels(CoCPMLP(3), optimizer=torch.optim.SGD) is None
    assert kernels(CoCPMLP(3), optimizer__amsgrad=True) is None

    class MyLoss(torch.nn.MSELoss):
        pass

    assert kernels(CoCPMLP(3), MyLoss()) is None
    assert kernels(CoCPMLP(3), torch.nn.MSELoss(reduction="sum")) is None
    hooked = CoCPMLP(3)
    hooked.layers[0].register_forward_hook(lambda *a: None)
    assert kernels(hooked) is None
    frozen = CoCPMLP(3)
    frozen.layers[0].weight.requires_grad_(False)
    assert kernels(frozen) is None
    assert kernels(CoCPMLP(3).double()) is None
    # targets the criterion would broadcast (MSE of (n,) outputs against (n, 1)) or read
    # otherwise: torch's semantics, so torch trains them
    assert kernels(CoCPMLP(3), y=torch.zeros(4, 1)) is None
    assert kernels(CoCPMLP(3), SoftCoverageLoss(0.1), y=torch.zeros(4)) is None
    assert kernels(CoCPMLP(3), SoftCoverageLoss(0.1), y=torch.zeros(4, 2)) is not None
    radius = RadiusHead(CoCPMLP(3))
    assert kernels(radius, FoldedPinballLoss(0.9), y=torch.zeros(4, 1)) is not None
