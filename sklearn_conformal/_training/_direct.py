"""Hand-written backward passes of CoCP's default networks and losses, bit for bit autograd's.

A CoCP phase trains a 2 x 64 ReLU network on minibatches of 512 rows. At that size the autograd
engine's bookkeeping (graph nodes, input buffers, the ``backward()`` wrapper, gradient
accumulation) costs about as much as the arithmetic, so for the default networks and the three
built-in losses the training step computes the gradients itself, with the kernels autograd runs
for these graphs (the entries of torch's ``derivatives.yaml``: ``addmm`` -> ``mm`` with the
operands in the order autograd picks for a transposed weight, ``threshold_backward`` for ReLU,
``softplus_backward``, ``mse_loss_backward``, ``sigmoid_backward``, the ``maximum`` and ``abs``
rules) and in autograd's order. The gradients, hence the trained weights, are bit-identical
(tested against autograd); anything else (user networks or losses, hooks, subclasses) keeps
autograd. On the CPU the compiled epochs of :mod:`._mlp_kernels` usually take these networks
over; this is the torch path where they do not apply (other devices, another optimiser, a
``PhaseNet`` with ``compiled_epochs=False``).
"""

import torch
import torch.nn.functional as F

__all__ = ["DirectNetwork", "direct_loss_gradient"]

_HOOK_NAMES = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _has_hooks(modules):
    from torch.nn.modules import module as module_mod

    for sub in modules:
        if any(len(getattr(sub, name, None) or ()) for name in _HOOK_NAMES):
            return True
    return any(len(getattr(module_mod, "_global" + name, None) or ()) for name in _HOOK_NAMES)


class DirectNetwork:
    """Forward and backward passes of a default CoCP network without ``nn.Module`` calls.

    Built by :meth:`of`, which returns ``None`` for anything but a
    :class:`~._networks.CoCPMLP` of plain ``Linear``/``ReLU`` layers (optionally inside a
    :class:`~._networks.RadiusHead`) without hooks.

    Parameters
    ----------
    layers : list of (weight, bias) or None
        The linear layers' parameters, ``None`` for a ReLU.
    floor : float or None
        The radius head's floor (softplus output), ``None`` for a centre network.
    """

    def __init__(self, layers, floor):
        self.layers = layers
        self.floor = floor

    @classmethod
    def of(cls, module):
        from ._networks import CoCPMLP, RadiusHead

        floor, body = None, module
        if type(module) is RadiusHead:
            body, floor = module.body, module.floor
        if type(body) is not CoCPMLP or _has_hooks(module.modules()):
            return None
        if not all(p.requires_grad for p in module.parameters()):  # a frozen layer: autograd
            return None
        layers = []
        for layer in body.layers:
            if type(layer) is torch.nn.Linear and layer.bias is not None:
                layers.append((layer.weight, layer.bias))
            elif type(layer) is torch.nn.ReLU and not layer.inplace:
                layers.append(None)
            else:
                return None
        if not layers or layers[0] is None:
            return None
        return cls(layers, floor)

    def forward(self, X):
        """The modules' forward: the same functional calls in the same order."""
        for layer in self.layers:
            X = F.relu(X) if layer is None else F.linear(X, layer[0], layer[1])
        X = X.squeeze(-1)
        if self.floor is not None:
            X = F.softplus(X) + self.floor
        return X

    def loss_and_backward(self, X, target, loss_gradient):
        """Forward, loss and gradients; sets every parameter's ``.grad`` (as after
        ``zero_grad(set_to_none=True)`` and ``loss.backward()``) and returns the loss.

        ``loss_gradient(output, target)`` returns the loss and its gradient with respect to the
        network output (see :func:`direct_loss_gradient`).
        """
        inputs0 = X
        with torch.no_grad():
            saved = []  # every layer's output
            for layer in self.layers:
                X = F.relu(X) if layer is None else F.linear(X, layer[0], layer[1])
                saved.append(X)
            pre = X.squeeze(-1)
            out = F.softplus(pre) + self.floor if self.floor is not None else pre
            loss, grad = loss_gradient(out, target)
            if self.floor is not None:
                # AddBackward (scalar floor) passes the gradient; SoftplusBackward0
                grad = torch.ops.aten.softplus_backward(grad, pre, 1, 20)
            grad = grad.unsqueeze(-1)  # SqueezeBackward
            for i in range(len(self.layers) - 1, -1, -1):
                layer = self.layers[i]
                if layer is None:  # ReluBackward0: threshold_backward(grad, result, 0)
                    grad = torch.ops.aten.threshold_backward(grad, saved[i], 0)
                    continue
                weight, bias = layer
                inputs = saved[i - 1] if i > 0 else inputs0
                # AddmmBackward0 for addmm(bias, input, weight.t()): the weight operand is
                # column-major, so autograd forms grad.t().mm(input) (then transposes it back
                # through TBackward); the bias gradient is sum_to(grad) over the batch
                weight.grad = grad.t().mm(inputs)
                bias.grad = grad.sum(0)
                if i > 0:
                    grad = grad.mm(weight)
        return loss

    def __call__(self, X):
        return self.forward(X)


# --------------------------------------------------------------------------------------------
# losses: (loss, d loss / d output) with autograd's kernels for ``loss.backward()``
# --------------------------------------------------------------------------------------------
def _mean_backward(grad, shape):
    # MeanBackward0 of a full reduction: grad.expand(shape) / numel
    return grad.expand(shape) / shape.numel()


def _mse_gradient(output, target):
    loss = F.mse_loss(output, target)
    return loss, torch.ops.aten.mse_loss_backward(torch.ones_like(loss), output, target, 1)


def _folded_pinball_gradient(tau):
    """``mean(maximum(tau u, (tau - 1) u))``, ``u = r - h``: autograd's gradient with respect to
    ``h`` takes one of four values per row, precomputed once per batch size with autograd's
    own operations (so with its roundings):

    * ``tau u > (tau - 1) u``: only the first branch, ``-(g tau)`` with ``g = 1 / n``;
    * ``<``: only the second, ``-(g (tau - 1))`` (the other branch adds a signed zero);
    * a tie (MaximumBackward0 gives each branch ``g / 2``): ``-(g/2 tau + g/2 (tau - 1))``;
    * neither (NaN): both branches get ``g``.
    """
    constants = {}

    def values(shape, like):
        key = (shape, like.dtype, like.device)
        if key not in constants:
            grad = _mean_backward(torch.ones((), dtype=like.dtype, device=like.device), shape)
            half = grad / 2
            both = lambda g: -(g * tau + g * (tau - 1.0))  # noqa: E731
            constants[key] = (-(grad * tau), -(grad * (tau - 1.0)), both(half), both(grad))
        return constants[key]

    def gradient(radius, residual):
        u = residual.reshape(radius.shape) - radius
        left, right = tau * u, (tau - 1.0) * u
        loss = torch.mean(torch.maximum(left, right))
        first, second, tie, neither = values(radius.shape, radius)
        rest = torch.where(left < right, second, torch.where(left == right, tie, neither))
        return loss, torch.where(left > right, first, rest)

    return gradient


def _soft_coverage_gradient():
    """``-mean(sigmoid((r - |y - m|) / beta))``: autograd's chain (neg, mean, sigmoid, division
    by ``beta``, the two subtractions and ``abs``) with its sign flips folded, which are exact:
    ``-((-(g / beta)) * sgn(d)) == (g / beta) * sgn(d)`` bit for bit, signed zeros included."""
    seeds = {}

    def gradient(centre, target, beta):
        y, radius = target[:, 0], target[:, 1]
        diff = y - centre
        s = torch.sigmoid((radius - torch.abs(diff)) / beta)
        loss = -torch.mean(s)
        key = (centre.shape, centre.dtype, centre.device)
        seed = seeds.get(key)
        if seed is None:  # NegBackward0 then MeanBackward0 of the seed 1
            one = torch.ones((), dtype=centre.dtype, device=centre.device)
            seed = seeds[key] = _mean_backward(one.neg(), centre.shape)
        grad = torch.ops.aten.sigmoid_backward(seed, s) / beta
        return loss, grad * diff.sgn()

    return gradient


def direct_loss_gradient(criterion):
    """``(output, target) -> (loss, d loss / d output)`` for a built-in loss, or ``None``.

    Exact types only (a subclass may change ``forward``), without hooks: ``torch.nn.MSELoss``
    with mean reduction, :class:`~._cocp.FoldedPinballLoss`, :class:`~._cocp.SoftCoverageLoss`
    (its ``beta`` is read on every call: the annealing schedule changes it between epochs).
    """
    from ._cocp import FoldedPinballLoss, SoftCoverageLoss

    if _has_hooks([criterion]):
        return None
    kind = type(criterion)
    if kind is torch.nn.MSELoss and criterion.reduction == "mean":
        return _mse_gradient
    if kind is FoldedPinballLoss:
        return _folded_pinball_gradient(criterion.tau)
    if kind is SoftCoverageLoss:
        gradient = _soft_coverage_gradient()
        return lambda centre, target: gradient(centre, target, criterion.beta)
    return None
