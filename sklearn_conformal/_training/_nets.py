"""skorch nets of the training engine.

* :class:`ConformalNet`, the classifier net of CaCT: a ``NeuralNetClassifier`` with a second,
  optional criterion ``train_objective`` (the fine-tuning objective), built in
  ``initialize_criterion`` from ``train_objective__*`` parameters as skorch's customisation guide
  describes for extra criteria; ``set_params(train_objective=..., train_objective__...=...)``
  swaps it (skorch re-initialises the criteria and the optimiser).
* :class:`PhaseNet`, the regression net of one CoCP phase, with the per-minibatch overhead of a
  tiny network trimmed, and :class:`TensorBatchIterator`, its minibatches sliced from tensors.
"""

import functools
import math

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetClassifier
from skorch.callbacks import Callback, LRScheduler, PassthroughScoring, PrintLog
from skorch.history import History

__all__ = [
    "ConformalNet", "PhaseNet", "TensorBatchIterator", "fused_adamw_supported", "module_logits"
]


def module_logits(net, X):
    """Logits of ``net.module_`` on an in-memory float32 array in one eval-mode pass.

    A direct call instead of skorch's ``forward`` (a DataLoader loop): on small problems that loop
    costs as much as a whole training epoch. skorch puts the module back in training mode at the
    next training step.
    """
    net.module_.eval()
    with torch.no_grad():
        out = net.module_(torch.as_tensor(X, device=net.device))
    return out.detach().cpu()


def softmax(logits):
    """Class probabilities of the logits (the nets' ``predict_nonlinearity``)."""
    return torch.softmax(logits, dim=-1)


class ConformalNet(NeuralNetClassifier):
    """skorch classifier whose training loss can be a conformal-training objective.

    ``train_objective`` (a ``torch.nn.Module`` class or instance taking ``(logits, target)``,
    or ``None``) is initialised with the ``train_objective__*`` parameters into
    ``train_objective_``, which replaces ``criterion_`` for training batches when set; validation
    batches always report ``criterion_`` (cross-entropy). A non-finite training loss raises a
    ``FloatingPointError`` naming ``estimator_name``.

    Parameters
    ----------
    *args, **kwargs
        Those of ``NeuralNetClassifier``.
    train_objective : torch.nn.Module class, instance or None, default=None
    estimator_name : str, default="CaCTClassifier"
        Named in error messages.
    """

    # the objective is optional (``None`` before the fine-tune): declare it as a criterion up
    # front, so that its ``train_objective__*`` parameters are valid and re-initialise it in
    # set_params even while it is None (skorch registers components only when one is set)
    prefixes_ = NeuralNetClassifier.prefixes_ + ["train_objective"]
    _criteria = ["train_objective"]

    def __init__(self, *args, train_objective=None, estimator_name="CaCTClassifier", **kwargs):
        # with two criteria skorch does not infer the prediction nonlinearity ("auto" becomes
        # the identity); the classifier predicts the softmax of its logits
        kwargs.setdefault("predict_nonlinearity", softmax)
        super().__init__(*args, **kwargs)
        self.train_objective = train_objective
        self.estimator_name = estimator_name

    @property
    def _default_callbacks(self):
        return [
            (name, LazyPrintLog()) if type(cb) is PrintLog else (name, cb)
            for name, cb in super()._default_callbacks
        ]

    def initialize_criterion(self):
        super().initialize_criterion()
        if self.train_objective is None:
            self.train_objective_ = None
        else:
            params = self.get_params_for("train_objective")
            self.train_objective_ = self.initialized_instance(self.train_objective, params)
        return self

    def infer(self, x, **fit_params):
        # a user module's forward runs in the fit's RandomScope (its dropout draws) while
        # training (set by ``run_phase``); nothing else of an epoch draws without a generator
        scope = getattr(self, "forward_scope_", None)
        if scope is None:
            return super().infer(x, **fit_params)
        with scope:
            return super().infer(x, **fit_params)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        try:
            return super().partial_fit(X, y, classes=classes, **fit_params)
        finally:
            # the last epoch's validation outputs are not part of the fitted net
            self.__dict__.pop("_validation_outputs", None)

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if not training:
            # the validation pass of this epoch (its history row) keeps its outputs
            self._validation_outputs = (len(self.history), [])
        super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)

    def validation_step(self, batch, **fit_params):
        step = super().validation_step(batch, **fit_params)
        outputs = self.__dict__.get("_validation_outputs")
        if outputs is not None:
            outputs[1].append(step["y_pred"])
        return step

    def validation_logits(self, X):
        """The network's logits on ``X``, the ``dataset_valid.X`` of the current epoch.

        The epoch-end callbacks (multiplier update, epoch selection) read the validation logits:
        when this epoch's validation pass ran in one batch (the usual case: ``batch_size`` at
        least the validation size), those are its outputs, the very tensor a fresh pass would
        give (the same module in eval mode on the same rows); otherwise a fresh pass.
        """
        epoch, outputs = self.__dict__.get("_validation_outputs", (None, ()))
        if epoch == len(self.history) and len(outputs) == 1 and len(outputs[0]) == len(X):
            return outputs[0].detach().cpu()
        return module_logits(self, X)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        objective = self.train_objective_
        if training and objective is not None:
            loss = objective(y_pred, y_true.to(y_pred.device).long())
        else:
            loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training and not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(
                f"non-finite training loss ({float(loss.detach())}) at epoch {len(self.history)} "
                f"of {self.estimator_name}; lower lr or multipliers__lambda_max / "
                "multipliers__rho_init, or keep gradient_clip."
            )
        return loss


class LazyPrintLog(PrintLog):
    """skorch's ``PrintLog`` that formats the epoch table only when it is shown.

    ``PrintLog`` tabulates every epoch's history row even with ``verbose=0``, where printing
    discards it: per-epoch work for nothing, the more so with CaCT's extra columns. With the
    default ``print`` sink and a silent net the epoch is skipped (the header then comes with
    the first printed row); any other sink is fed as before.
    """

    def on_epoch_end(self, net, **kwargs):
        if self.sink is print and not net.verbose:
            return
        super().on_epoch_end(net, **kwargs)


class TensorBatchIterator:
    """Minibatches by slicing whole tensors (skorch's ``iterator_train`` / ``iterator_valid``).

    The default ``DataLoader`` collates 512 single rows per batch, which costs more than the
    forward/backward pass of a 2 x 64 network; slicing a permuted index keeps the same sampling
    (shuffled, without replacement, last batch smaller) at a fraction of the cost. The permutation
    is drawn from ``generator`` (torch's global generator if ``None``).

    Parameters
    ----------
    dataset : skorch.dataset.Dataset
        Dataset whose ``X`` and ``y`` are tensors.
    batch_size : int
        Rows per batch (``-1`` or ``None``: the whole set).
    shuffle : bool, default=False
        Draw a fresh permutation per pass.
    generator : torch.Generator or None, default=None
        Source of the permutations, on the device of ``dataset.X``.
    """

    def __init__(self, dataset, batch_size=None, shuffle=False, generator=None, **kwargs):
        self.X, self.y = dataset.X, dataset.y
        n = len(self.X)
        self.batch_size = n if batch_size in (None, -1) else int(batch_size)
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self):
        return math.ceil(len(self.X) / self.batch_size)

    def order(self):
        """The row order of a pass: a fresh permutation when shuffling, else ``None``."""
        if not self.shuffle:
            return None
        return torch.randperm(len(self.X), device=self.X.device, generator=self.generator)

    def __iter__(self):
        n = len(self.X)
        X, y = self.X, self.y
        order = self.order()
        if order is not None:
            # one gather per pass (index_select: the rows of advanced indexing, with less
            # overhead), then batches as contiguous row slices of the permuted copy
            X, y = X.index_select(0, order), y.index_select(0, order)
        for start in range(0, n, self.batch_size):
            yield X[start : start + self.batch_size], y[start : start + self.batch_size]


@functools.lru_cache(maxsize=None)
def fused_adamw_supported(device_type):
    """Whether ``torch.optim.AdamW(fused=True)`` runs on this device type (CPU: torch >= 2.4).

    The fused kernel updates all parameters in one call; for the small CoCP networks the
    per-tensor Python loop of the default implementation costs about a fifth of a phase.
    """
    try:
        param = torch.zeros(1, device=device_type, requires_grad=True)
        param.grad = torch.zeros_like(param)
        torch.optim.AdamW([param], fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


class EpochLoss(PassthroughScoring):
    """skorch's ``PassthroughScoring`` (the batch-size-weighted mean of a batch loss, recorded
    per epoch with its ``_best`` flag) reading the epoch's batch list directly.

    skorch's generic ``History`` indexing (``history[-1, "batches", :, [size, loss]]``) costs
    more per epoch than a validation pass of a tiny network; the mean is the same
    ``np.average`` of the same values, so the recorded losses are bit-identical.
    """

    def get_avg_score(self, history):
        size_key = "train_batch_size" if self.on_train else "valid_batch_size"
        name = self.name
        if not isinstance(history, list):  # another history type: skorch's own indexing
            return super().get_avg_score(history)
        rows = [b for b in list.__getitem__(history, -1)["batches"] if name in b and size_key in b]
        if not rows:
            raise KeyError(name)  # as skorch's indexing: nothing recorded, nothing passed through
        return np.average([b[name] for b in rows], weights=[b[size_key] for b in rows])


class PhaseNet(NeuralNet):
    """``NeuralNet`` with the per-minibatch overhead of a tiny network trimmed.

    A 2 x 64 network's forward/backward pass on 512 rows costs less than skorch's generic
    per-batch work, so the training epoch runs a lean loop (the optimisation itself is unchanged,
    bit for bit): the same ``zero_grad``, forward, loss, ``backward``, gradient-norm clipping and
    ``optimizer.step()`` as skorch's ``train_step``, without the step closure, the per-batch
    callback notifications (none of the phase's callbacks acts per batch) and the generic
    clipping loop. Switching train/eval mode walks the module tree only when the mode changes.
    Nets with fit parameters or with callbacks that act per batch take skorch's generic path.

    On the CPU, the default networks with a built-in loss and a plain AdamW go further: each
    training epoch and validation pass is one call of the numba kernels of
    :mod:`._mlp_kernels` (:class:`~._kernel_epochs.KernelEpochs`), the same optimisation in
    other roundings; ``compiled_epochs=False`` keeps them in torch.
    """

    def __init__(self, *args, gradient_clip=0.0, compiled_epochs=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.gradient_clip = gradient_clip
        self.compiled_epochs = compiled_epochs

    @property
    def _default_callbacks(self):
        # the epoch losses without skorch's generic history indexing (same values)
        return [
            (name, EpochLoss(name=cb.name, lower_is_better=cb.lower_is_better,
                             on_train=cb.on_train))
            if type(cb) is PassthroughScoring else (name, cb)
            for name, cb in super()._default_callbacks
        ]

    def _set_training(self, training=True):
        if self.module_.training != training or self.criterion_.training != training:
            super()._set_training(training)

    def incoming_valid_loss(self, dataset):
        """The validation loss of the current weights on ``dataset`` as a compiled validation
        pass computes it (the batch-size-weighted mean), or ``None`` without compiled epochs."""
        if not self.compiled_epochs:
            return None
        from ._kernel_epochs import KernelEpochs

        iterator = self.get_iterator(dataset, training=False)
        kernels = KernelEpochs.of(self, iterator)
        if kernels is None:
            return None
        batches = []
        kernels.validate(iterator, batches, "valid")
        return np.average(
            [b["valid_loss"] for b in batches], weights=[b["valid_batch_size"] for b in batches]
        )

    def train_step_single(self, batch, **fit_params):
        step = super().train_step_single(batch, **fit_params)
        if self.gradient_clip:
            clip_grad_norm(self.module_.parameters(), self.gradient_clip)
        return step

    def _lean_epoch_ok(self, fit_params):
        """Whether no callback acts per batch and nothing needs skorch's generic step."""
        if fit_params or len(self._optimizers) != 1 or type(self.history) is not History:
            return False
        for _, cb in self.callbacks_:
            cls = type(cb)
            if isinstance(cb, LRScheduler):
                if cb.step_every != "epoch":
                    return False
            elif cls.on_batch_end is not Callback.on_batch_end:
                return False
            if (
                cls.on_batch_begin is not Callback.on_batch_begin
                or cls.on_grad_computed is not Callback.on_grad_computed
            ):
                return False
        return True

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None or not self._lean_epoch_ok(fit_params):
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        batches = list.__getitem__(self.history, -1)["batches"]
        if self.compiled_epochs:
            from ._kernel_epochs import KernelEpochs

            # the default networks and losses on the CPU: every step in one compiled call
            kernels = KernelEpochs.of(self, iterator)
            if kernels is not None:
                if training:
                    count = kernels.train(iterator, self.gradient_clip, batches, prefix)
                else:
                    count = kernels.validate(iterator, batches, prefix)
                self.history.record(prefix + "_batch_count", count)
                return
        module, criterion = self.module_, self.criterion_
        # the default networks' forward without the per-layer module calls (same kernels),
        # looked up once per fit (a net trains one phase); their layers do not depend on the
        # train/eval mode, so the mode switches (a walk over the module tree) are skipped too
        cached = self.__dict__.get("_direct_forward")
        if cached is None or cached[0] is not module or cached[2] is not criterion:
            from ._direct import DirectNetwork, direct_loss_gradient

            network = DirectNetwork.of(module)
            loss_gradient = None if network is None else direct_loss_gradient(criterion)
            cached = self._direct_forward = (module, network, criterion, loss_gradient)
        forward = cached[1] or module
        direct = cached[1] is not None
        # the default networks with a built-in loss: hand-written gradients, bit-identical to
        # autograd's (see ``_direct``), at about two thirds of the cost of ``backward()``
        loss_gradient = cached[3]
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        batch_count = 0
        if not training:
            # skorch's validation_step: eval mode, no gradients, the criterion on each batch
            if not direct:
                self._set_training(False)
            with torch.no_grad():
                for Xi, yi in iterator:
                    loss = criterion(forward(Xi), yi)
                    batches.append({loss_key: loss.item(), size_key: len(Xi)})
                    batch_count += 1
            self.history.record(prefix + "_batch_count", batch_count)
            return
        if not direct:
            self._set_training(True)
        optimizer = self.optimizer_
        clip = self.gradient_clip
        # the parameter lists are walked once per epoch, not per batch; the optimiser's
        # ``zero_grad()`` (set_to_none, torch's default) is setting its gradients to None
        params = list(module.parameters())
        opt_params = [p for group in optimizer.param_groups for p in group["params"]]
        fast_clip = _foreach_clip_ok(params)
        stepper = self.__dict__.get("_fused_step")
        if stepper is None or stepper.optimizer is not optimizer:
            stepper = self._fused_step = FusedAdamWStep(optimizer)
        for Xi, yi in iterator:
            if loss_gradient is not None:
                loss = forward.loss_and_backward(Xi, yi, loss_gradient)
            else:
                for p in opt_params:
                    p.grad = None
                loss = criterion(forward(Xi), yi)
                loss.backward()
            if clip:
                if fast_clip:
                    _foreach_clip([p.grad for p in params if p.grad is not None], clip)
                else:
                    torch.nn.utils.clip_grad_norm_(params, clip)
            stepper.step()
            batches.append({loss_key: loss.item(), size_key: len(Xi)})
            batch_count += 1
        self.history.record(prefix + "_batch_count", batch_count)


def plain_adamw_group(optimizer):
    """The parameter group of a plain ``AdamW``, or ``None``.

    Plain: exactly ``torch.optim.AdamW`` with one group, no amsgrad, maximize, capturable or
    differentiable mode, decoupled weight decay, a float learning rate, and no step hooks (its
    own or global). Code that steps such an optimiser by other means than ``step()`` (the fused
    call below, the compiled CoCP epochs) does what ``step()`` would.
    """
    from torch.optim import optimizer as optim_module

    if type(optimizer) is not torch.optim.AdamW or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    if (
        group.get("amsgrad")
        or group.get("maximize")
        or group.get("capturable")
        or group.get("differentiable")
        or not group.get("decoupled_weight_decay", True)
        or torch.is_tensor(group["lr"])
    ):
        return None
    hooks = (
        getattr(optimizer, "_optimizer_step_pre_hooks", None),
        getattr(optimizer, "_optimizer_step_post_hooks", None),
        getattr(optim_module, "_global_optimizer_pre_hooks", None),
        getattr(optim_module, "_global_optimizer_post_hooks", None),
    )
    return group if all(h is not None and len(h) == 0 for h in hooks) else None


class FusedAdamWStep:
    """``optimizer.step()`` of a fused ``AdamW`` without its per-call Python overhead.

    ``Optimizer.step`` wraps the fused kernel in a profiler record, hook loops, a grad-mode
    switch, and rebuilds the parameter, gradient and state lists on every call: for a tiny
    network that costs more than the update. After a first regular step (which creates the
    state), this calls what ``torch.optim.AdamW(fused=True)`` calls for one device and dtype,
    ``torch._foreach_add_`` on the step counts and ``torch._fused_adamw_`` with the group's
    current hyper-parameters, so the update is bit-identical. Any other optimiser or setting
    (hooks, several groups or devices, amsgrad, a missing gradient, a tensor learning rate) and
    any error of the direct call go through ``optimizer.step()``.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.lists = None
        self.enabled = self._applicable(optimizer)

    @staticmethod
    def _applicable(optimizer):
        group = plain_adamw_group(optimizer)
        return (
            group is not None
            and bool(group.get("fused"))
            and _foreach_clip_ok(group["params"])
            and group["params"][0].device.type == "cpu"
            and hasattr(torch, "_fused_adamw_")
        )

    def step(self):
        optimizer = self.optimizer
        if not self.enabled:
            optimizer.step()
            return
        group = optimizer.param_groups[0]
        params = group["params"]
        grads = [p.grad for p in params]
        if self.lists is None or any(g is None for g in grads):
            optimizer.step()
            states = [optimizer.state.get(p, {}) for p in params]
            if self.lists is None and all(len(st) > 0 for st in states):
                # the step counts become views of one tensor, so one in-place add counts a
                # step for every parameter (the same float32 values as ``_foreach_add_``);
                # a regular ``optimizer.step()`` still updates each view on its own
                counts = torch.stack([st["step"] for st in states])
                for i, st in enumerate(states):
                    st["step"] = counts[i]
                self.lists = (
                    [st["exp_avg"] for st in states],
                    [st["exp_avg_sq"] for st in states],
                    [st["step"] for st in states],
                    counts,
                )
            return
        exp_avgs, exp_avg_sqs, steps, counts = self.lists
        beta1, beta2 = group["betas"]
        counts.add_(1)
        try:
            torch._fused_adamw_(
                params, grads, exp_avgs, exp_avg_sqs, [], steps,
                amsgrad=False, lr=group["lr"], beta1=float(beta1), beta2=float(beta2),
                weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                grad_scale=None, found_inf=None,
            )
        except (TypeError, RuntimeError):  # another torch's signature: the regular step
            counts.sub_(1)
            self.enabled = False
            optimizer.step()


def _foreach_clip_ok(params):
    """Whether all ``params`` share one cpu/cuda device and one dtype, dense (see below)."""
    if not params:
        return False
    first = params[0]
    return first.device.type in ("cpu", "cuda") and all(
        p.device == first.device and p.dtype == first.dtype and not p.is_sparse for p in params
    )


def _foreach_clip(grads, max_norm):
    # torch.nn.utils.clip_grad_norm_'s kernels for one device and dtype, in its order
    if not grads:
        return
    with torch.no_grad():
        norms = torch.stack(torch._foreach_norm(grads, 2.0))
        if norms.device.type == "cpu" and norms.dtype == torch.float32 and max_norm < 1e30:
            # the common case, a total norm well below the threshold, decided without the
            # float32 reduction: a float64 sum of the same per-tensor norms is within a few
            # float32 ulps of torch's total, and below 0.999 max_norm torch's factor rounds to
            # exactly 1 (NaN and inf fail the test and take the exact path)
            estimate = math.sqrt(math.fsum(v * v for v in norms.tolist()))
            if estimate < 0.999 * max_norm:
                return
        total = torch.linalg.vector_norm(norms, 2.0)
        if total.device.type == "cpu" and total.dtype == torch.float32 and max_norm < 1e30:
            # the factor's three scalar kernels (add, reciprocal-multiply, clamp) are float32
            # operations on one number: the same IEEE float32 steps in numpy give the same bits
            # without three tensor dispatches, and a factor of exactly 1 (the norm is below the
            # threshold, the common case) leaves the gradients as they are
            f32 = np.float32
            norm = f32(total.item())
            if np.isfinite(norm):
                coef = min(f32(1.0) / (norm + f32(1e-6)) * f32(max_norm), f32(1.0))
                if coef != 1.0:
                    torch._foreach_mul_(grads, float(coef))
                return
        coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
        torch._foreach_mul_(grads, coef)


def clip_grad_norm(parameters, max_norm):
    """``torch.nn.utils.clip_grad_norm_(parameters, max_norm)``, with less per-call overhead.

    The same kernels in the same order when all gradients share one device and dtype with
    foreach support (the norm of the per-tensor norms, then one in-place multiply by the clamped
    factor), so the result is bit-identical; anything else goes to torch's function.
    """
    parameters = list(parameters)
    if _foreach_clip_ok(parameters):
        _foreach_clip([p.grad for p in parameters if p.grad is not None], max_norm)
    else:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
