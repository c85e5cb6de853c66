"""CoCP's losses (co-optimised centre and radius); its phases run in :mod:`._phases`.

Every CoCP phase is a plain supervised fit of one network with the other network frozen, so the
frozen network's output is precomputed once per phase and passed inside the target:

* warm start and centre: target ``y`` (MSE), then target ``(y, h(x))`` for the boundary-local
  soft-coverage loss;
* radius: target ``|y - m(x)|`` for the folded pinball loss.

This is the paper's "stop-gradient" (Su, Zhou & Luo 2026, Alg. 1): the radius step never
back-propagates into ``m`` and the centre step never into ``h``. Each phase is one skorch ``NeuralNet``
(fresh AdamW and cosine schedule, as in the authors' code) that shares the module instance with the
previous phases of the same fold, so the networks keep training across alternations.
"""

import torch
from torch import nn

__all__ = ["FoldedPinballLoss", "SoftCoverageLoss"]


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
class FoldedPinballLoss(nn.Module):
    """Folded quantile loss ``mean rho_tau(|y - m(x)| - h(x))`` of the radius step.

    The target is the precomputed residual ``r = |y - m(x)|`` (``m`` frozen); the population
    minimiser is ``h(x) = Q_tau(|Y - m(X)| | X = x)``, the smallest symmetric radius around ``m(x)``
    holding mass ``tau``.

    Parameters
    ----------
    tau : float
        Quantile level, the confidence level ``1 - alpha``.
    """

    def __init__(self, tau):
        super().__init__()
        self.tau = float(tau)

    def forward(self, radius, residual):
        u = residual.reshape(radius.shape) - radius
        return torch.mean(torch.maximum(self.tau * u, (self.tau - 1.0) * u))


class SoftCoverageLoss(nn.Module):
    """Boundary-local soft coverage ``-mean sigmoid((h(x) - |y - m(x)|) / beta)`` of the centre step.

    The target has two columns, ``y`` and the frozen radius ``h(x)``. The derivative with respect
    to ``m`` carries the factor ``sigmoid'(.) / beta``, which vanishes unless ``|y - m|`` is within
    a few ``beta`` of ``h``: only points near the interval's boundary move the centre, and the
    stationary point balances the (beta-smoothed) densities at ``m - h`` and ``m + h``.

    Parameters
    ----------
    beta : float
        Temperature, in units of the target.
    """

    def __init__(self, beta):
        super().__init__()
        self.beta = float(beta)

    def forward(self, centre, target):
        y, radius = target[:, 0], target[:, 1]
        return -torch.mean(torch.sigmoid((radius - torch.abs(y - centre)) / self.beta))
