"""Network factory of the torch estimators: the default ReLU MLPs and the user-module rules.

Both estimators build their networks here: :class:`MLP` (CaCT's classifier with ``n_classes``
logits, CoCP's centre and radius bodies with one output), and :func:`build_module`, which turns
the estimators' ``module`` parameters (``None``, a module instance or a factory) into a fresh
float32 network.
"""

import copy

import torch
from torch import nn

__all__ = ["CoCPMLP", "MLP", "RadiusHead", "ScalarHead", "build_module"]


class MLP(nn.Module):
    """Fully connected ReLU network; no hidden layer gives a linear model.

    Parameters
    ----------
    n_features : int
        Input dimension.
    n_outputs : int
        Output dimension (logits of a classifier, ``1`` for a scalar regression network).
    hidden_layer_sizes : tuple of int, default=(64,)
        Widths of the hidden layers.
    """

    def __init__(self, n_features, n_outputs, hidden_layer_sizes=(64,)):
        super().__init__()
        layers, width = [], n_features
        # float32 explicitly: the initial weights must not depend on torch's default dtype
        for h in hidden_layer_sizes:
            layers += [nn.Linear(width, h, dtype=torch.float32), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_outputs, dtype=torch.float32))
        self.layers = nn.Sequential(*layers)

    def forward(self, X):
        return self.layers(X)


class CoCPMLP(MLP):
    """:class:`MLP` with one output, returned as shape ``(n,)`` (the paper's 2 x 64 default).

    Parameters
    ----------
    n_features : int
    hidden_layer_sizes : tuple of int, default=(64, 64)
    """

    def __init__(self, n_features, hidden_layer_sizes=(64, 64)):
        super().__init__(n_features, 1, hidden_layer_sizes)

    def forward(self, X):
        return self.layers(X).squeeze(-1)


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


def build_module(spec, factory_args, default, wrap=None):
    """A fresh float32 network from an estimator's ``module`` parameter.

    Parameters
    ----------
    spec : torch.nn.Module, callable or None
        ``None``: ``default()``; a module instance: a deep copy (its weights are the
        initialisation); a callable (e.g. a module class): ``spec(*factory_args)``, which must
        return a ``torch.nn.Module``.
    factory_args : tuple
        Arguments of a user factory (CaCT: ``(n_features, n_classes)``, CoCP: ``(n_features,)``).
    default : callable
        Builds the default network.
    wrap : callable or None, default=None
        Applied to a user network (e.g. :class:`ScalarHead`).

    Returns
    -------
    module : torch.nn.Module
        In float32, whatever torch's default dtype (training runs on float32 arrays).

    Notes
    -----
    Weight initialisation draws at random: call it inside the fit's ``RandomScope``.
    """
    if spec is None:
        return default().float()
    if isinstance(spec, nn.Module):
        module = copy.deepcopy(spec)
    else:
        module = spec(*factory_args)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"a module factory must return a torch.nn.Module, got {type(module).__name__}."
            )
    if wrap is not None:
        module = wrap(module)
    return module.float()
