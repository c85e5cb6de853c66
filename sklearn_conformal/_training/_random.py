"""Per-fit torch random streams that never touch torch's global generator.

``torch.manual_seed`` (even under ``torch.random.fork_rng``) seeds the one process-wide generator:
two fits running in two threads then interleave their draws, neither equals the serial fit, and
the caller's random state changes. A :class:`RandomScope` owns one ``torch.Generator`` per device,
seeded from the fit's ``random_state``:

* code that can take a generator gets one explicitly (``scope.generator(device)``: DataLoader
  shuffling, batch splits, minibatch permutations);
* code that draws from the default generator without offering a ``generator`` argument (module
  constructors calling ``torch.nn.init``, dropout layers of user modules) runs inside
  ``with scope:``, a :class:`~torch.overrides.TorchFunctionMode` that hands the scope's generator
  to every random draw of *this thread*. Torch-function modes are thread-local, so concurrent fits
  in other threads are unaffected.

The mode costs a Python call per torch operation, so the estimators enter it only for module
construction, and for training only when the module is the user's (the default networks draw
nothing at random while training).

Covered: the ``torch.nn.init`` initialisers, the random factories (``rand``, ``randn``,
``randint``, ``randperm``, ``normal``, ``bernoulli``, ``multinomial``, ``poisson``, ``rand_like``,
``randn_like``), the in-place samplers (``uniform_``, ``normal_``, ``bernoulli_``, ...) and
``F.dropout`` / ``F.dropout1d`` / ``F.dropout2d`` / ``F.dropout3d`` (``nn.Dropout*`` layers),
``F.alpha_dropout`` / ``F.feature_alpha_dropout``, ``F.rrelu`` and ``F.gumbel_softmax`` (the last
ones dispatch as a whole and draw inside, so the scope re-implements them with the same
distribution). Other torch functions of that kind, if a user module calls them, still draw from
the global generator.
"""

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["RandomScope"]

# torch functions and methods that draw random numbers and accept ``generator=``
_TAKES_GENERATOR = frozenset(
    [
        torch.rand,
        torch.randn,
        torch.randint,
        torch.randperm,
        torch.normal,
        torch.bernoulli,
        torch.multinomial,
        torch.poisson,
        torch.Tensor.uniform_,
        torch.Tensor.normal_,
        torch.Tensor.random_,
        torch.Tensor.bernoulli_,
        torch.Tensor.bernoulli,
        torch.Tensor.exponential_,
        torch.Tensor.geometric_,
        torch.Tensor.cauchy_,
        torch.Tensor.log_normal_,
        torch.Tensor.multinomial,
    ]
    + [
        getattr(torch.nn.init, name)
        for name in (
            "uniform_",
            "normal_",
            "trunc_normal_",
            "kaiming_uniform_",
            "kaiming_normal_",
            "xavier_uniform_",
            "xavier_normal_",
            "orthogonal_",
            "sparse_",
        )
    ]
)

# channel dropout: number of trailing (spatial) dimensions sharing one mask value
_CHANNEL_DROPOUT = {F.dropout1d: 1, F.dropout2d: 2, F.dropout3d: 3}


def _device_of(args, kwargs):
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device
    device = kwargs.get("device")
    return torch.device(device) if device is not None else torch.get_default_device()


class RandomScope(TorchFunctionMode):
    """Random draws of one fit, from generators seeded with ``seed`` (one per device).

    Parameters
    ----------
    seed : int
        Seed of every generator of the scope.
    """

    def __init__(self, seed):
        super().__init__()
        self.seed = int(seed)
        self._generators = {}

    def generator(self, device="cpu"):
        """The scope's generator on ``device`` (created and seeded on first use)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = (device.type, device.index if device.type != "cpu" else None)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _TAKES_GENERATOR:
            if kwargs.get("generator") is None:
                kwargs["generator"] = self.generator(_device_of(args, kwargs))
            return func(*args, **kwargs)
        if func is F.dropout:
            return self._dropout(*args, **kwargs)
        if func in _CHANNEL_DROPOUT:
            return self._dropout(*args, **kwargs, spatial=_CHANNEL_DROPOUT[func])
        if func is torch.rand_like or func is torch.randn_like:
            return self._like(func, *args, **kwargs)
        if func is F.alpha_dropout or func is F.feature_alpha_dropout:
            return self._alpha_dropout(*args, **kwargs, feature=func is F.feature_alpha_dropout)
        if func is F.rrelu or func is F.rrelu_:
            return self._rrelu(*args, **kwargs, inplace_fn=func is F.rrelu_)
        if func is F.gumbel_softmax:
            return self._gumbel_softmax(*args, **kwargs)
        return func(*args, **kwargs)

    def _alpha_dropout(self, input, p=0.5, training=False, inplace=False, feature=False):
        # torch's kernel (ATen Dropout.cpp): keeps the SELU fixed point's mean and variance
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        if not training or p == 0.0:
            return input
        if p == 1.0:
            return input.mul_(0) if inplace else input * 0
        shape = input.shape
        if feature:
            shape = input.shape[:2] + (1,) * (input.ndim - 2)
        noise = input.new_empty(shape).bernoulli_(1.0 - p, generator=self.generator(input.device))
        alpha = 1.7580993408473766
        a = 1.0 / math.sqrt((alpha * alpha * p + 1) * (1 - p))
        b = noise.add(-1).mul_(alpha * a).add_(alpha * a * p)
        noise.mul_(a)
        return input.mul_(noise).add_(b) if inplace else (input * noise).add_(b)

    def _rrelu(self, input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False,
               inplace_fn=False):
        inplace = inplace or inplace_fn
        if not training:
            slope = (lower + upper) / 2
            return F.leaky_relu(input, slope, inplace=inplace)
        # one slope per negative entry, uniform on [lower, upper]
        slope = input.new_empty(input.shape).uniform_(
            lower, upper, generator=self.generator(input.device)
        )
        out = torch.where(input >= 0, input, input * slope)
        return input.copy_(out) if inplace else out

    def _gumbel_softmax(self, logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
        gumbels = -logits.new_empty(logits.shape).exponential_(
            generator=self.generator(logits.device)
        ).log()
        y_soft = ((logits + gumbels) / tau).softmax(dim)
        if not hard:
            return y_soft
        index = y_soft.max(dim, keepdim=True)[1]
        y_hard = torch.zeros_like(logits).scatter_(dim, index, 1.0)
        return y_hard - y_soft.detach() + y_soft

    def _dropout(self, input, p=0.5, training=True, inplace=False, spatial=0):
        # the same distribution as torch's kernels: keep with probability 1 - p, scale by 1/(1-p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        if not training or p == 0.0:
            return input
        shape = input.shape
        if spatial:
            if spatial == 2 and input.ndim == 3:
                spatial = 1  # torch's dropout2d treats 3-D input as (N, C, L)
            shape = input.shape[: input.ndim - spatial] + (1,) * spatial
        if p == 1.0:
            mask = input.new_zeros(shape)
        else:
            generator = self.generator(input.device)
            mask = input.new_empty(shape).bernoulli_(1.0 - p, generator=generator)
            mask.div_(1.0 - p)
        return input.mul_(mask) if inplace else input * mask

    def _like(self, func, input, *, dtype=None, layout=None, device=None, requires_grad=False,
              memory_format=None, pin_memory=False):
        factory = torch.rand if func is torch.rand_like else torch.randn
        device = input.device if device is None else torch.device(device)
        out = factory(
            input.shape, dtype=dtype or input.dtype, device=device,
            generator=self.generator(device),
        )
        return out.requires_grad_(requires_grad)
