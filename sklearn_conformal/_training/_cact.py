"""CaCT's training: the network, the fine-tuning objective and the multiplier callback.

:func:`fit_network` is what ``CaCTClassifier.fit`` runs between its splits and its calibration:
it builds the network (:mod:`._networks`), the objective (a module class with its
``train_objective__*`` parameters for :class:`~._nets.ConformalNet`), the multiplier callback,
and sequences the pre-training and the fine-tune (:func:`~._phases.train_classifier`).
"""

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from ._callbacks import MultiplierUpdate, validation_set_sizes
from ._nets import module_logits
from ._conformal_losses import CaCTLoss, CALSLoss, ConfTrLoss, FocalLoss
from ._multipliers import ClasswiseMultipliers
from ._networks import MLP, build_module
from ._phases import train_classifier

__all__ = ["fit_network"]


def class_weights(class_weight, classes, y_tr, n_classes):
    """Cross-entropy class weights as a float32 array (or None) from ``class_weight``."""
    if isinstance(class_weight, dict):
        return np.array([class_weight.get(c, 1.0) for c in classes], dtype=np.float32)
    if class_weight == "balanced":
        present = np.unique(y_tr)
        w = compute_class_weight("balanced", classes=present, y=y_tr)
        cw = np.ones(n_classes, dtype=np.float32)
        cw[present] = w
        return cw
    return None


def resolve_target(est, objective, net, X_tr, y_tr, X_val, y_val, has_val):
    """``eta``: the objective's ``target_size``, or ``max(1, target_ratio * s0)`` for ``"auto"``."""
    if objective.target_size != "auto":
        return float(objective.target_size)
    # relative target from the starting model (validation split; training split if there is none)
    Xr, yr = (X_val, y_val) if has_val else (X_tr, y_tr)
    logits = module_logits(net, Xr)
    sizes = validation_set_sizes(logits, yr, est.train_confidence_level, hard=True)
    return float(max(1.0, objective.target_ratio * sizes.mean()))


def multiplier_callback(est, objective, multipliers, n_classes):
    """The :class:`MultiplierUpdate` of a CaCT or CALS objective."""
    hr = multipliers.name == "hr"
    if hr:
        rule = dict(rule="hr", lambda_init=multipliers.lambda_init, hr_mu=multipliers.mu,
                    hr_tau=multipliers.tau)
    else:
        rule = dict(
            rule="alm",
            penalty=multipliers.penalty,
            lambda_init=multipliers.lambda_init,
            rho_init=multipliers.rho_init,
            rho_growth=multipliers.rho_growth,
            rho_update_every=multipliers.rho_update_every,
            rho_tol=multipliers.rho_tol,
            rho_max=multipliers.rho_max,
        )
    mult = ClasswiseMultipliers(
        n_classes, lambda_min=1e-6, lambda_max=multipliers.lambda_max, **rule
    )
    cals = objective.name == "cals"
    return MultiplierUpdate(
        mult,
        kind="margin" if cals else "size",
        confidence_level=est.train_confidence_level,
        target_size=None,
        temperature=est.temperature,
        hard=multipliers.validation_sizes == "hard",
        margin=objective.margin if cals else 10.0,
    )


def fit_network(
    est, objective, multipliers, optimizer, X_tr, y_tr, X_val, y_val, n_classes, scope, device
):
    """Train CaCT's network as ``est``'s parameters say.

    Parameters
    ----------
    est : CaCTClassifier
        Read only (its parameters and ``classes_``).
    objective, multipliers, optimizer : parameter objects
        ``est``'s ``objective``, ``multipliers`` and ``optimizer`` resolved (:mod:`._params`).
    X_tr, y_tr, X_val, y_val : ndarray
        Float32 features and label indices (``X_val`` may be empty).
    n_classes : int
    scope : RandomScope
    device : torch.device

    Returns
    -------
    result : dict
        ``net``, ``multipliers`` (the callback's ``ClasswiseMultipliers`` or None),
        ``z_history`` (list) and ``target_size`` (``eta`` or None).
    """
    n_features = X_tr.shape[1]
    with scope:  # weight initialisation from the fit's generator
        module = build_module(
            est.module, (n_features, n_classes),
            lambda: MLP(n_features, n_classes, tuple(est.hidden_layer_sizes)),
        )
    cw = class_weights(est.class_weight, est.classes_, y_tr, n_classes)
    has_val = X_val is not None and len(y_val) > 0
    callback = None
    if objective.name in ("cact", "cals") and est.max_epochs > 0:
        callback = multiplier_callback(est, objective, multipliers, n_classes)
    out = {"target_size": None}
    # the penalty of the training loss: ALM's, or the linear one of the heuristic rule
    penalty = getattr(multipliers, "penalty", "phr")

    def build_objective(net):
        name = objective.name
        if name == "ce":
            return None, {}
        if name == "focal":
            return FocalLoss, dict(n_classes=n_classes, gamma=objective.gamma, class_weight=cw)
        if name == "cals":
            return CALSLoss, dict(
                n_classes=n_classes, margin=objective.margin, penalty=penalty, class_weight=cw,
                multipliers=multipliers.name,
            )
        common = dict(
            n_classes=n_classes,
            confidence_level=est.train_confidence_level,
            temperature=est.temperature,
            calibration_fraction=est.batch_calibration_fraction,
            quantile_method=est.soft_quantile,
            steepness=est.steepness,
            neuralsort_tau=est.neuralsort_tau,
            quantile_window=est.quantile_window,
            class_weight=cw,
            generator=scope.generator(net.device),
        )
        eta = resolve_target(est, objective, net, X_tr, y_tr, X_val, y_val, has_val)
        out["target_size"] = eta
        if callback is not None:
            callback.target_size = np.full(n_classes, eta)
        if name == "conftr":
            return ConfTrLoss, dict(common, size_weight=objective.size_weight, target_size=eta)
        return CaCTLoss, dict(
            common,
            multipliers=multipliers.name,
            penalty=penalty,
            penalty_reduction=objective.penalty_reduction,
            target_size=eta,
        )

    net_params = {
        "criterion__weight": None if cw is None else torch.as_tensor(cw),
        "optimizer__momentum": optimizer.momentum,
        "optimizer__nesterov": optimizer.momentum > 0,
        "optimizer__weight_decay": est.weight_decay,
        "lr": est.lr,
        "batch_size": min(est.batch_size, len(y_tr)),
        "gradient_clip": est.gradient_clip,
    }
    net = train_classifier(
        module, X_tr, y_tr, X_val, y_val, n_classes, scope=scope, device=device,
        net_params=net_params, objective=build_objective, multiplier_callback=callback,
        finetune_lr=optimizer.finetune_lr, pretrain_epochs=est.pretrain_epochs,
        finetune_epochs=est.max_epochs, user_module=est.module is not None,
        select_level=est.confidence_level if est.select_epoch else None,
        verbose=est.verbose,
    )
    out["net"] = net
    out["multipliers"] = None if callback is None else callback.multipliers
    out["z_history"] = [] if callback is None else callback.z_history
    return out
