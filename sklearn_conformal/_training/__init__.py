"""Torch training engine shared by CaCTClassifier and CoCPRegressor.

* ``_networks``: the network factory (default ReLU MLPs, user-module rules, CoCP's heads);
* ``_nets``: the skorch nets (``ConformalNet`` with its optional ``train_objective`` criterion,
  CoCP's ``PhaseNet`` and tensor batch iterator);
* ``_callbacks``: skorch callbacks (multiplier step, phase early stopping, beta schedule), which
  read the validation set from skorch's ``dataset_valid``;
* ``_phases``: phase sequencing (CaCT's pre-train and fine-tune, CoCP's phases and folds);
* ``_cact``, ``_cocp``: what each estimator trains (objectives, multipliers; CoCP's losses);
* ``_conformal_losses``, ``_penalties``, ``_multipliers``, ``_soft_quantile``: the conformal
  training losses and multiplier updates; ``_random``, ``_threads``, ``_inference``,
  ``_validation``: reproducible draws, thread limits, float64 inference, device checks.

Every module here imports torch; only torch-backed estimators import this package.
"""
