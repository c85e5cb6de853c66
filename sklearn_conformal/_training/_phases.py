"""Phase sequencing of the training engine: CaCT's pre-train/fine-tune and CoCP's folds.

* :func:`train_classifier`: one skorch :class:`~._nets.ConformalNet` trained with
  cross-entropy (``pretrain_epochs``), then fine-tuned with the estimator's objective
  (``max_epochs``; the objective is swapped in with ``set_params(train_objective=...)``, which
  also restarts the optimiser), the multipliers stepped by a :class:`~._callbacks.MultiplierUpdate`
  callback on the validation split;
* :func:`train_phase` and :func:`fit_fold`: one CoCP (centre, radius) pair, a fresh
  :class:`~._nets.PhaseNet` per phase sharing the module instances.

The estimators keep validation, splits and calibration; they call these with their checked
parameters.
"""

import contextlib
import copy
import sys
import time

import numpy as np
import torch
from skorch.callbacks import GradientNormClipping, LRScheduler, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split

__all__ = ["fit_fold", "folds_release_gil", "predict_module", "train_classifier", "train_phase"]


# --------------------------------------------------------------------------------------------
# CaCT: pre-train with cross-entropy, fine-tune with the objective
# --------------------------------------------------------------------------------------------
def check_module_output(net, X_probe, n_classes):
    """ValueError unless ``net.module_`` maps a probe batch to ``(n, n_classes)`` logits."""
    # eval mode: the probe must not draw dropout masks (skorch sets train mode per batch)
    training = net.module_.training
    net.module_.eval()
    try:
        with torch.no_grad():
            out = net.module_(torch.as_tensor(X_probe, device=net.device))
    finally:
        net.module_.train(training)
    if out.ndim != 2 or out.shape[1] != n_classes:
        raise ValueError(
            f"module must output logits of shape (n_samples, n_classes) = (n, {n_classes}); "
            f"it returned shape {tuple(out.shape)}."
        )


def run_phase(net, X, y, epochs, phase, scope=None):
    """``net.partial_fit`` for ``epochs`` epochs, its history rows tagged with ``phase``.

    ``scope`` (a ``RandomScope``) routes a user module's random draws (dropout) to the fit's
    generators; ``None`` for the default networks, which draw nothing while training. It is
    entered around the module's forward passes only (:meth:`ConformalNet.infer`): every other
    draw of the training (batch order, batch splits of the objective) takes the scope's
    generators explicitly, and the data loading and the objective then run without the mode's
    per-operation cost.
    """
    start = len(net.history)
    net.forward_scope_ = scope
    try:
        net.partial_fit(X, y, epochs=epochs)
    finally:
        net.forward_scope_ = None
    for row in net.history[start:]:
        row["phase"] = phase


def train_classifier(
    module, X_tr, y_tr, X_val, y_val, n_classes, *, scope, device, net_params, objective,
    multiplier_callback=None, finetune_lr=None, pretrain_epochs, finetune_epochs,
    select_level=None, user_module=False, verbose=0,
):
    """Pre-train ``module`` with cross-entropy, then fine-tune it with an objective.

    Parameters
    ----------
    module : torch.nn.Module
        Float32 network (built in ``scope``).
    X_tr, y_tr, X_val, y_val : ndarray
        Float32 features and label indices; ``X_val`` may be empty (no validation split).
    n_classes : int
    scope : RandomScope
    device : torch.device
    net_params : dict
        ``criterion__weight``, ``lr``, ``batch_size``, ``optimizer__*``, ``gradient_clip``.
    objective : callable
        ``objective(net) -> (train_objective, params)``, called after the pre-training: the
        fine-tuning objective (a module class, or ``None`` for cross-entropy) and its
        ``train_objective__*`` parameters.
    multiplier_callback : MultiplierUpdate or None
    finetune_lr : float or None
    pretrain_epochs, finetune_epochs : int
    select_level : float or None
        With a validation split: keep the fine-tuning epoch (the starting network included)
        of smallest validation set size at this level (:class:`~._callbacks.EpochSelection`,
        left on the net as ``epoch_selection_``); None keeps the last epoch.
    user_module : bool
        Train inside ``scope`` (a user module may draw at random).
    verbose : int

    Returns
    -------
    net : ConformalNet
        Without a training objective (``train_objective=None``).
    """
    from ._callbacks import EpochSelection
    from ._nets import ConformalNet

    params = dict(net_params)
    gradient_clip = params.pop("gradient_clip", None)
    batch = params.pop("batch_size")
    n_tr = len(y_tr)
    callbacks = []
    if gradient_clip is not None:
        callbacks.append(("clip", GradientNormClipping(gradient_clip_value=gradient_clip)))
    if verbose:
        # skorch's own progress bar (batches of each epoch; tqdm, a skorch dependency)
        callbacks.append(("progress", ProgressBar()))
    has_val = X_val is not None and len(y_val) > 0
    net = ConformalNet(
        module=module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        max_epochs=pretrain_epochs,
        batch_size=batch,
        iterator_train__shuffle=True,
        # DataLoaders draw their order (and a base seed, even unshuffled) from these
        iterator_train__generator=scope.generator("cpu"),
        iterator_valid__generator=scope.generator("cpu"),
        # full batches only: a small last batch would give a degenerate calibration half
        iterator_train__drop_last=n_tr > batch,
        train_split=predefined_split(Dataset(X_val, y_val)) if has_val else None,
        classes=np.arange(n_classes),
        callbacks=callbacks,
        device=device,
        verbose=verbose,
        **params,
    )
    with scope:
        net.initialize()
    check_module_output(net, X_tr[:2], n_classes)
    if multiplier_callback is not None:
        # present from the first epoch (diagnostics only until the fine-tune starts)
        net.callbacks_.insert(0, ("multipliers", multiplier_callback))
    train_scope = scope if user_module else None
    if pretrain_epochs > 0:
        run_phase(net, X_tr, y_tr, pretrain_epochs, "pretrain", train_scope)
    if finetune_epochs > 0:
        train_objective, objective_params = objective(net)
        new = {"train_objective": train_objective}
        new.update({f"train_objective__{k}": v for k, v in objective_params.items()})
        if finetune_lr is not None:
            new["lr"] = finetune_lr
        # re-initialises the criteria and the optimiser: momentum restarts for the fine-tune,
        # as a fresh fine-tune would (verbose=0: without skorch's re-initialisation messages)
        net.set_params(verbose=0, **new)
        net.verbose = verbose
        if multiplier_callback is not None and net.train_objective_ is not None:
            mult = multiplier_callback.multipliers
            net.train_objective_.set_multipliers(mult.lambdas, mult.rhos)
        selection = None
        if select_level is not None and has_val:
            # model selection on the validation split (starting network included)
            selection = EpochSelection(select_level)
            selection.start(net, X_val, y_val)
            net.callbacks_.append(("epoch_selection", selection))
        run_phase(net, X_tr, y_tr, finetune_epochs, "finetune", train_scope)
        if selection is not None:
            net.callbacks_.remove(("epoch_selection", selection))
            selection.restore(net)
        net.epoch_selection_ = selection
        # the fitted net predicts with plain softmax; the objective is not part of the model,
        # nor are its parameters (batch generator, class weights, target)
        net.set_params(verbose=0, train_objective=None)
        net.verbose = verbose
        for key in objective_params:
            delattr(net, f"train_objective__{key}")
    return net


# --------------------------------------------------------------------------------------------
# CoCP: one (centre, radius) pair
# --------------------------------------------------------------------------------------------
def train_phase(
    module,
    criterion,
    X_train,
    y_train,
    X_valid,
    y_valid,
    *,
    phase,
    lr=1e-3,
    lr_min=0.0,
    weight_decay=1e-5,
    gradient_clip=5.0,
    batch_size=512,
    max_epochs=1000,
    patience=100,
    min_delta=1e-6,
    beta_schedule=None,
    device="cpu",
    generator=None,
):
    """Train ``module`` in place for one phase through a fresh skorch ``PhaseNet``.

    Parameters
    ----------
    module : torch.nn.Module
        Network to train (already on ``device``); shared with earlier phases.
    criterion : torch.nn.Module
        Loss ``criterion(module(X), y)``.
    X_train, y_train, X_valid, y_valid : torch.Tensor
        Phase data on ``device``.
    phase : str
        Name for the history and messages.
    lr, lr_min, weight_decay, gradient_clip, batch_size, max_epochs, patience, min_delta
        AdamW learning rate, cosine floor, weight decay, gradient-norm clip (0 or None = off),
        minibatch size, epoch budget, early-stopping patience and minimal improvement.
    beta_schedule : tuple (beta, beta_end) or None
        Anneal ``criterion.beta`` over the epochs.
    device : str
    generator : torch.Generator or None
        Source of the minibatch order (on ``device``); ``None``: torch's global generator.

    Returns
    -------
    record : dict
        ``phase``, ``epochs`` run, ``best_epoch`` (0 = incoming weights kept),
        ``initial_valid_loss``, ``best_valid_loss``, ``seconds``.
    """
    from ._callbacks import BetaSchedule, PhaseEarlyStopping
    from ._nets import PhaseNet, TensorBatchIterator, fused_adamw_supported
    from ._threads import single_threaded_blas

    tic = time.perf_counter()
    stopper = PhaseEarlyStopping(patience, min_delta, phase)
    callbacks = [
        ("lr", LRScheduler(policy="CosineAnnealingLR", T_max=max_epochs, eta_min=lr_min)),
        ("stop", stopper),
    ]
    if beta_schedule is not None:
        callbacks.append(("beta", BetaSchedule(*beta_schedule, max_epochs)))
    fused = {"optimizer__fused": True} if fused_adamw_supported(torch.device(device).type) else {}
    net = PhaseNet(
        module=module,
        criterion=criterion,
        gradient_clip=gradient_clip or 0.0,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=weight_decay,
        **fused,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        iterator_train=TensorBatchIterator,
        iterator_train__shuffle=True,
        iterator_train__generator=generator,
        iterator_valid=TensorBatchIterator,
        iterator_valid__batch_size=-1,
        train_split=predefined_split(Dataset(X_valid, y_valid)),
        callbacks=callbacks,
        callbacks__print_log=None,
        device=device,
        verbose=0,
    )
    # the compiled epochs' products on one BLAS thread (a no-op inside fit_fold's limit)
    with single_threaded_blas():
        net.fit(X_train, y_train)
    return {
        "phase": phase,
        "epochs": len(net.history),
        "best_epoch": stopper.best_epoch_,
        "initial_valid_loss": stopper.initial_loss_,
        "best_valid_loss": stopper.best_loss_,
        "seconds": time.perf_counter() - tic,
    }


def predict_module(module, X, batch_size=65536):
    """Evaluate ``module`` on tensor ``X`` in eval mode without gradients, as a 1-D tensor."""
    module.eval()
    with torch.no_grad():
        out = [module(X[i : i + batch_size]).reshape(-1) for i in range(0, len(X), batch_size)]
    return torch.cat(out) if out else X.new_zeros(0)


def folds_release_gil(params):
    """Whether :func:`fit_fold` with these parameters trains in the compiled, GIL-free epochs
    (:mod:`._kernel_epochs`): the default networks on the CPU, so folds may share a process."""
    import torch

    return (
        params["centre_module"] is None
        and params["radius_module"] is None
        and torch.device(params["device"]).type == "cpu"
    )


def fit_fold(fold, n_folds, data, idx, params, seed, torch_threads, verbose, on_phase=None):
    """Train one CoCP (centre, radius) pair; returns CPU modules and the phase history.

    Warm start (MSE centre), then ``n_alternations`` rounds of a radius step (folded pinball on
    the frozen centre's residuals) and a centre step (soft coverage with the frozen radius), then
    a final radius step. ``on_phase()`` (in-process runs only) is called after each of the
    ``2 T + 2`` phases.

    Returns
    -------
    centre, radius : torch.nn.Module
    history : list of dict
        :func:`train_phase` records.
    stages : list of (centre, radius)
        CPU copies after every radius step: the models of ``n_alternations = 0, 1, ...``.
    """
    from ._cocp import FoldedPinballLoss, SoftCoverageLoss
    from ._networks import CoCPMLP, RadiusHead, ScalarHead, build_module
    from ._random import RandomScope
    from ._threads import single_threaded_blas, torch_num_threads

    device = params["device"]
    X, y, X_val_global, y_val_global = data
    idx_m, idx_h, idx_v = idx
    to = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    Xm, ym, Xh, yh = to(X[idx_m]), to(y[idx_m]), to(X[idx_h]), to(y[idx_h])
    if idx_v is None:
        Xv, yv = to(X_val_global), to(y_val_global)
    else:
        Xv, yv = to(X[idx_v]), to(y[idx_v])
    common = {
        k: params[k]
        for k in (
            "lr", "lr_min", "weight_decay", "gradient_clip", "batch_size", "max_epochs",
            "patience", "min_delta", "device",
        )
    }
    history = []
    stages = []  # (centre, radius) copies after every radius step: the model for T = 0, 1, ...
    tau = params["confidence_level"]
    beta, beta_end = params["beta"], params["beta_end"]

    def log(record, what):
        history.append(record)
        if verbose:
            print(
                f"[CoCP] fold {fold + 1}/{n_folds} {what:<12s} {record['epochs']:5d} epochs "
                f"(best {record['best_epoch']:4d})  valid loss {record['initial_valid_loss']:.5f}"
                f" -> {record['best_valid_loss']:.5f}  {record['seconds']:6.1f} s",
                file=sys.stdout,
                flush=True,
            )
        if on_phase is not None:
            on_phase()

    # every torch draw of the fold comes from generators of its own (the global generator is
    # neither read nor advanced, so folds and fits in concurrent threads are reproducible)
    scope = RandomScope(seed)
    common["generator"] = scope.generator(device)
    # user modules may draw at random while training (dropout): route it to the fold's
    # generators; the default networks draw nothing and train without the mode's overhead
    user = params["centre_module"] is not None or params["radius_module"] is not None
    hidden = params["hidden_layer_sizes"]
    with torch_num_threads(torch_threads), single_threaded_blas():
        with scope:  # weight initialisation
            n_features = X.shape[1]

            def default():
                return CoCPMLP(n_features, hidden)

            centre = build_module(params["centre_module"], (n_features,), default, ScalarHead)
            body = build_module(params["radius_module"], (n_features,), default, ScalarHead)
            radius = RadiusHead(body, floor=params["radius_floor"])
            centre.to(device)
            radius.to(device)
        with scope if user else contextlib.nullcontext():

            def radius_step(name):
                # stop-gradient: the residuals of the frozen centre are the targets
                rh = torch.abs(yh - predict_module(centre, Xh))
                rv = torch.abs(yv - predict_module(centre, Xv))
                rec = train_phase(
                    radius, FoldedPinballLoss(tau), Xh, rh, Xv, rv, phase=name, **common
                )
                log(rec, name)
                # the phases of a fit with n_alternations=t are a prefix of this one (same seed,
                # same random stream), so this pair *is* that fit's fold model
                stages.append(
                    (copy.deepcopy(centre).to("cpu").eval(), copy.deepcopy(radius).to("cpu").eval())
                )

            rec = train_phase(centre, torch.nn.MSELoss(), Xm, ym, Xv, yv, phase="warm", **common)
            log(rec, "warm start")
            schedule = None if beta_end is None else (beta, beta_end)
            for t in range(params["n_alternations"]):
                radius_step(f"radius {t + 1}")
                tm = torch.stack([ym, predict_module(radius, Xm)], dim=1)
                tv = torch.stack([yv, predict_module(radius, Xv)], dim=1)
                rec = train_phase(
                    centre,
                    SoftCoverageLoss(beta),
                    Xm,
                    tm,
                    Xv,
                    tv,
                    phase=f"centre {t + 1}",
                    beta_schedule=schedule,
                    **common,
                )
                log(rec, f"centre {t + 1}")
            radius_step("radius final")
    centre.to("cpu").eval()
    radius.to("cpu").eval()
    return centre, radius, history, stages
