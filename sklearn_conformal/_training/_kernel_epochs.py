"""A CoCP phase's epochs through the numba kernels of :mod:`._mlp_kernels`.

:class:`KernelEpochs` takes over a :class:`~._nets.PhaseNet`'s training and validation passes
when the kernels implement exactly what the net would run (in other roundings): a default
network (plain ``Linear``/``ReLU`` layers, optionally under the radius head, without hooks or
frozen layers), one of the three built-in losses, a plain ``AdamW`` on those parameters,
float32 tensors on the CPU, the package's :class:`~._nets.TensorBatchIterator` and a target of
the shape the loss reads. The permutation of each epoch is still the iterator's draw from the
fold's generator, skorch still runs the epoch loop, the callbacks (learning-rate schedule, beta
schedule, early stopping with its best weights) and the history; only the minibatch steps and
the validation loss run compiled.

The module's parameters stay the source of truth between epochs: each pass copies them into a
flat vector and the trained values back (a few microseconds against milliseconds for the epoch),
so a callback that loads other weights (early stopping's restore) needs nothing special. The
AdamW moments live here in flat vectors, per optimiser; ``optimizer_.state`` holds views of them
and the step counts, so the optimiser's ``state_dict()`` shows the training's state.
"""

import numpy as np
import torch

from ._mlp_kernels import LOSS_CODES, evaluate_loss, train_epoch

__all__ = ["KernelEpochs"]


def _loss_code(criterion):
    from ._cocp import FoldedPinballLoss, SoftCoverageLoss
    from ._direct import _has_hooks

    if _has_hooks([criterion]):
        return None
    kind = type(criterion)
    if kind is torch.nn.MSELoss and criterion.reduction == "mean":
        return LOSS_CODES["mse"]
    if kind is FoldedPinballLoss:
        return LOSS_CODES["folded_pinball"]
    if kind is SoftCoverageLoss:
        return LOSS_CODES["soft_coverage"]
    return None


def _plain_adamw(optimizer, params):
    """Whether ``optimizer`` is a plain ``AdamW`` (:func:`~._nets.plain_adamw_group`) over
    exactly ``params``, in this order."""
    from ._nets import plain_adamw_group

    group = plain_adamw_group(optimizer)
    return (
        group is not None
        and len(group["params"]) == len(params)
        and all(a is b for a, b in zip(group["params"], params))
    )


def _float32_cpu(t):
    return t.dtype == torch.float32 and t.device.type == "cpu" and not t.is_sparse


class KernelEpochs:
    """Compiled training and validation passes of one :class:`~._nets.PhaseNet`.

    Built by :meth:`of`, which returns ``None`` unless the kernels compute exactly what the net
    would (see the module docstring).
    """

    def __init__(self, module, criterion, optimizer, params, sizes, floor):
        self.module, self.criterion, self.optimizer = module, criterion, optimizer
        self.params = params
        self.sizes = sizes
        self.floor = floor
        self.loss_code = _loss_code(criterion)
        total = sum(p.numel() for p in params)
        self.theta = np.empty(total, dtype=np.float32)
        bounds = np.cumsum([0] + [p.numel() for p in params])
        self.theta_parts = [self.theta[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.param_arrays = None
        self.grad = np.empty(total, dtype=np.float32)
        self.exp_avg = np.zeros(total, dtype=np.float32)
        self.exp_avg_sq = np.zeros(total, dtype=np.float32)
        self.step = 0
        self._bind_optimizer_state()

    def _bind_optimizer_state(self):
        """Make ``optimizer.state`` views of the flat moments (taking over a state the optimiser
        already has, with one step count for all parameters)."""
        state = self.optimizer.state
        existing = [state.get(p) for p in self.params]
        if all(existing):
            self.step = int(float(existing[0]["step"]))
            offset = 0
            for p, st in zip(self.params, existing):
                n = p.numel()
                self.exp_avg[offset : offset + n] = st["exp_avg"].detach().reshape(-1).numpy()
                self.exp_avg_sq[offset : offset + n] = st["exp_avg_sq"].detach().reshape(-1).numpy()
                offset += n
        # one step count per parameter (as torch keeps them), views of one vector
        self.step_counts = torch.full((len(self.params),), float(self.step), dtype=torch.float32)
        offset = 0
        for i, p in enumerate(self.params):
            n = p.numel()
            state[p] = {
                "step": self.step_counts[i],
                "exp_avg": torch.from_numpy(self.exp_avg[offset : offset + n]).view(p.shape),
                "exp_avg_sq": torch.from_numpy(self.exp_avg_sq[offset : offset + n]).view(p.shape),
            }
            offset += n

    @classmethod
    def of(cls, net, iterator):
        """The kernels for ``net``'s current module, criterion and optimiser, or ``None``."""
        from ._nets import TensorBatchIterator

        if type(iterator) is not TensorBatchIterator or len(net._optimizers) != 1:
            return None
        module, criterion, optimizer = net.module_, net.criterion_, net.optimizer_
        key = (module, criterion, optimizer)
        cached = net.__dict__.get("_kernel_epochs")
        if cached is not None and all(a is b for a, b in zip(cached[0], key)):
            kernels = cached[1]
        else:
            kernels = cls._build(*key)
            net._kernel_epochs = (key, kernels)  # a refusal is remembered too
        if kernels is None or not kernels.data_ok(iterator):
            return None
        return kernels

    @classmethod
    def _build(cls, module, criterion, optimizer):
        from ._direct import DirectNetwork

        network = DirectNetwork.of(module)
        if network is None or _loss_code(criterion) is None:
            return None
        layers = network.layers
        params = list(module.parameters())
        # Linear, ReLU, Linear, ..., Linear with one output, its parameters in module order
        alternating = all((layer is None) == (i % 2 == 1) for i, layer in enumerate(layers))
        if not (alternating and len(layers) % 2 == 1 and layers[-1][0].shape[0] == 1):
            return None
        ordered = [t for layer in layers if layer is not None for t in layer]
        if (
            len(ordered) != len(params)
            or any(a is not b for a, b in zip(ordered, params))
            or not all(_float32_cpu(p) and p.is_contiguous() for p in params)
            or not _plain_adamw(optimizer, params)
        ):
            return None
        existing = [optimizer.state.get(p) for p in params]
        if any(existing) and not (
            all(existing) and len({float(st["step"]) for st in existing}) == 1
        ):  # a state the kernels cannot continue (never the case in a phase)
            return None
        weights = ordered[::2]
        sizes = np.array([weights[0].shape[1]] + [w.shape[0] for w in weights], dtype=np.int64)
        return cls(module, criterion, optimizer, params, sizes, network.floor)

    def data_ok(self, iterator):
        """Whether the iterator's tensors are what the kernels read for this loss: float32 CPU
        features ``(n, d)`` and a target of the shape the criterion takes without broadcasting
        (MSE: ``(n,)``; pinball: ``n`` residuals, reshaped as the loss does; soft coverage:
        ``(n, 2)``)."""
        X, y = iterator.X, iterator.y
        if not (torch.is_tensor(X) and torch.is_tensor(y) and X.ndim == 2
                and _float32_cpu(X) and _float32_cpu(y) and len(y) == len(X)):
            return False
        if self.loss_code == LOSS_CODES["mse"]:
            return y.ndim == 1
        if self.loss_code == LOSS_CODES["folded_pinball"]:
            return y.numel() == len(X)
        return y.ndim == 2 and y.shape[1] == 2

    # ---------------------------------------------------------------------------------------
    def _parameter_arrays(self):
        """numpy views of the parameters' storage (rebuilt if a parameter got new storage)."""
        arrays = self.param_arrays
        if arrays is None or any(
            a.ctypes.data != p.data_ptr() for a, p in zip(arrays, self.params)
        ):
            arrays = self.param_arrays = [p.detach().numpy().reshape(-1) for p in self.params]
        return arrays

    def _gather(self):
        for part, array in zip(self.theta_parts, self._parameter_arrays()):
            part[...] = array

    def _scatter(self):
        # through numpy views: no autograd graph holds these parameters between epochs
        for part, array in zip(self.theta_parts, self._parameter_arrays()):
            array[...] = part

    def _loss_spec(self):
        criterion = self.criterion
        tau = float(getattr(criterion, "tau", 0.0))
        # the beta schedule changes it between epochs
        beta = float(getattr(criterion, "beta", 1.0))
        floor = 0.0 if self.floor is None else float(self.floor)
        return (self.loss_code, tau, beta, self.floor is not None, floor)

    @staticmethod
    def _arrays(X, y):
        X = np.ascontiguousarray(X.detach().numpy())
        target = y.detach().numpy()
        target = np.ascontiguousarray(target.reshape(len(target), -1))
        return X, target

    def train(self, iterator, max_norm, batches, prefix):
        """One training epoch (gradient-norm clip ``max_norm``, 0: none); appends each
        minibatch's loss and size to ``batches`` and returns their count."""
        order = iterator.order()
        n = len(iterator.X)
        order = np.arange(n, dtype=np.int64) if order is None else order.numpy()
        X, target = self._arrays(iterator.X, iterator.y)
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        optim = (
            self.step, float(group["lr"]), float(group["weight_decay"]), float(beta1),
            float(beta2), float(group["eps"]), float(max_norm),
        )
        batch_size = iterator.batch_size
        n_batches = -(-n // batch_size)
        losses = np.empty(n_batches, dtype=np.float64)
        self._gather()
        state = (self.theta, self.grad, self.exp_avg, self.exp_avg_sq)
        self.step = train_epoch(
            state, self.sizes, X, target, order, batch_size, self._loss_spec(), optim, losses
        )
        self._scatter()
        self.step_counts.fill_(float(self.step))
        # what the step wrapper of torch's LR schedulers records when the optimiser stepped
        self.optimizer._opt_called = True
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        for i, loss in enumerate(losses.tolist()):
            rows = min(batch_size, n - i * batch_size)
            batches.append({loss_key: loss, size_key: rows})
        return n_batches

    def validate(self, iterator, batches, prefix):
        """One validation pass (the iterator's batches, in order); appends their losses."""
        self._gather()
        X, target = self._arrays(iterator.X, iterator.y)
        n, batch_size = len(X), iterator.batch_size
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        spec = self._loss_spec()
        count = 0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            loss = evaluate_loss(self.theta, self.sizes, X[start:stop], target[start:stop], spec)
            batches.append({loss_key: float(loss), size_key: stop - start})
            count += 1
        return count
