"""Shared pieces of the CoCP benchmarks: the 2 x 64 MLP baselines (tables: ``_report``).

The paper's Split and CQR baselines are its own 2 x 64 MLPs (Su, Zhou & Luo 2026, App. C.4). Here
they are the library's ``SplitConformalRegressor`` around a small torch MLP trained exactly like a
CoCP phase (AdamW, cosine schedule, batch 512, early stopping with patience 100 on a held-out
sixth of the training rows), with the MSE loss (Split) or the pinball loss (CQR). To train them
exactly like a CoCP phase, they use CoCP's private training loop
(``sklearn_conformal._training``): the one private import of the benchmarks' baselines.
"""

import numbers
import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data


class TorchMLPRegressor(RegressorMixin, BaseEstimator):
    """2 x 64 ReLU MLP for the mean (``quantile=None``) or a conditional quantile (pinball loss).

    ``quantile`` is the parameter ``SplitConformalRegressor(conformity_score="cqr")`` sets on its
    two clones.
    """

    def __init__(self, quantile=None, hidden_layer_sizes=(64, 64), lr=1e-3, max_epochs=1000,
                 patience=100, batch_size=512, gradient_clip=5.0, validation_size=1 / 6,
                 random_state=None):
        self.quantile = quantile
        self.hidden_layer_sizes = hidden_layer_sizes
        self.lr = lr
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.gradient_clip = gradient_clip
        self.validation_size = validation_size
        self.random_state = random_state

    def fit(self, X, y):
        import torch

        from sklearn_conformal._training._networks import CoCPMLP
        from sklearn_conformal._training._phases import train_phase

        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        rng = check_random_state(self.random_state)
        perm = rng.permutation(len(X))
        n_val = int(np.ceil(self.validation_size * len(X)))
        val, tr = perm[:n_val], perm[n_val:]
        seed = int(rng.randint(2**31 - 1))
        to = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        if self.quantile is None:
            criterion = torch.nn.MSELoss()
        else:
            tau = float(self.quantile)

            class Pinball(torch.nn.Module):
                def forward(self, pred, target):
                    u = target - pred
                    return torch.mean(torch.maximum(tau * u, (tau - 1) * u))

            criterion = Pinball()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.module_ = CoCPMLP(X.shape[1], tuple(self.hidden_layer_sizes))
                self.record_ = train_phase(
                    self.module_, criterion, to(X[tr]), to(y[tr]), to(X[val]), to(y[val]),
                    phase="mlp", lr=self.lr, max_epochs=self.max_epochs, patience=self.patience,
                    batch_size=self.batch_size, gradient_clip=self.gradient_clip,
                )
        finally:
            torch.set_num_threads(threads)
        return self

    def predict(self, X):
        import torch

        from sklearn_conformal._training._phases import predict_module

        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        out = predict_module(self.module_, torch.as_tensor(X, dtype=torch.float32))
        return out.numpy().astype(np.float64)


def split_baseline(random_state, calibration_size=0.25):
    from sklearn_conformal.regression import SplitConformalRegressor

    return SplitConformalRegressor(
        TorchMLPRegressor(random_state=random_state), conformity_score="absolute",
        calibration_size=calibration_size, random_state=random_state,
    )


def cqr_baseline(random_state, calibration_size=0.25):
    from sklearn_conformal.regression import SplitConformalRegressor

    return SplitConformalRegressor(
        TorchMLPRegressor(quantile=0.5, random_state=random_state), conformity_score="cqr",
        calibration_size=calibration_size, random_state=random_state,
    )


def timed_fit(model, X, y):
    tic = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - tic


def is_int(x):
    return isinstance(x, numbers.Integral)
