"""Penalty-Lagrangian functions ``P(z, lambda, rho)`` and their derivatives in the constraint ``z``.

A constraint is written in normalised form ``z <= 0`` (CaCT: ``z_k = d_k / eta - 1`` with ``d_k`` the
class-mean set size; CALS: ``z = (logit gap - m) / m``). Each function returns the penalty value and
``dP/dz``; the augmented-Lagrangian outer step sets the new multiplier to ``dP/dz`` at the current
constraint value, so ``P'(0) = lambda`` for all of them (a satisfied-on-the-boundary constraint keeps
its multiplier).

The formulas follow the CALS code (``calibrate/lagrangian/penalty.py``), re-derived here:

* PHR (Powell-Hestenes-Rockafellar): ``P = lambda z + rho z^2 / 2`` if ``lambda + rho z >= 0`` else
  ``-lambda^2 / (2 rho)``; ``P' = max(0, lambda + rho z)``.
* P3: ``lambda z + lambda rho z^2`` for ``z >= 0``, ``lambda z / (1 - rho z)`` for ``z < 0``.
* P2: P3 plus ``rho^2 z^3 / 6`` on the positive branch.
"""

import numpy as np
import torch

PENALTIES = ("phr", "p2", "p3")


def phr(z, lam, rho):
    """Powell-Hestenes-Rockafellar penalty and its derivative in ``z``.

    Parameters
    ----------
    z : torch.Tensor
        Normalised constraint values (feasible when ``z <= 0``).
    lam, rho : torch.Tensor or float
        Multipliers (``>= 0``) and penalty parameters (``> 0``), broadcastable to ``z``.

    Returns
    -------
    value, derivative : torch.Tensor
        ``P(z)`` and ``dP/dz``, same shape as the broadcast inputs.
    """
    lam, rho = _as_tensors(z, lam, rho)
    x = lam + rho * z
    active = x >= 0
    value = torch.where(active, lam * z + 0.5 * rho * z * z, -lam * lam / (2.0 * rho))
    derivative = torch.clamp(x, min=0.0)
    return value, derivative


def p3(z, lam, rho):
    """P3 penalty (quadratic on the infeasible side, rational on the feasible side) and ``dP/dz``.

    Parameters and returns as in :func:`phr`.
    """
    lam, rho = _as_tensors(z, lam, rho)
    # the rational branch is evaluated on min(z, 0) so torch.where never sees 1 / 0 from the unused side
    zn = torch.clamp(z, max=0.0)
    pos = z >= 0
    value = torch.where(pos, lam * z + lam * rho * z * z, lam * zn / (1.0 - rho * zn))
    derivative = torch.where(pos, lam + 2.0 * lam * rho * z, lam / (1.0 - rho * zn) ** 2)
    return value, derivative


def p2(z, lam, rho):
    """P2 penalty (P3 plus a cubic term on the infeasible side) and ``dP/dz``.

    Parameters and returns as in :func:`phr`.
    """
    lam, rho = _as_tensors(z, lam, rho)
    zn = torch.clamp(z, max=0.0)
    pos = z >= 0
    value = torch.where(
        pos, lam * z + lam * rho * z * z + rho * rho * z**3 / 6.0, lam * zn / (1.0 - rho * zn)
    )
    derivative = torch.where(
        pos, lam + 2.0 * lam * rho * z + 0.5 * rho * rho * z * z, lam / (1.0 - rho * zn) ** 2
    )
    return value, derivative


def phr_numpy(z, lam, rho):
    """:func:`phr` on float64 numpy arrays (the same formula; for the fused CPU loss)."""
    x = lam + rho * z
    value = np.where(x >= 0, lam * z + 0.5 * rho * z * z, -lam * lam / (2.0 * rho))
    return value, np.maximum(x, 0.0)


def p3_numpy(z, lam, rho):
    """:func:`p3` on float64 numpy arrays."""
    zn = np.minimum(z, 0.0)
    pos = z >= 0
    value = np.where(pos, lam * z + lam * rho * z * z, lam * zn / (1.0 - rho * zn))
    derivative = np.where(pos, lam + 2.0 * lam * rho * z, lam / (1.0 - rho * zn) ** 2)
    return value, derivative


def p2_numpy(z, lam, rho):
    """:func:`p2` on float64 numpy arrays (``z * z * z``: torch's ``z**3`` kernel)."""
    zn = np.minimum(z, 0.0)
    pos = z >= 0
    value = np.where(
        pos,
        lam * z + lam * rho * z * z + rho * rho * (z * z * z) / 6.0,
        lam * zn / (1.0 - rho * zn),
    )
    derivative = np.where(
        pos, lam + 2.0 * lam * rho * z + 0.5 * rho * rho * z * z, lam / (1.0 - rho * zn) ** 2
    )
    return value, derivative


def get_penalty(name, numpy=False):
    """Return the penalty function called ``name`` (one of ``"phr"``, ``"p2"``, ``"p3"``).

    ``numpy=True``: its twin on float64 numpy arrays (same formula, no torch dispatch).
    """
    if numpy:
        table = {"phr": phr_numpy, "p2": p2_numpy, "p3": p3_numpy}
    else:
        table = {"phr": phr, "p2": p2, "p3": p3}
    if name not in table:
        raise ValueError(f"penalty must be one of {sorted(table)}, got {name!r}.")
    return table[name]


def _as_tensors(z, lam, rho):
    lam = torch.as_tensor(lam, dtype=z.dtype, device=z.device)
    rho = torch.as_tensor(rho, dtype=z.dtype, device=z.device)
    return lam, rho
