"""Kernel quantile regression path solvers (numba): exact lambda-path and S-path.

The RKHS quantile regression ``min sum_i rho_tau(S_i - Phi_i eta - f(x_i)) + lam/2 ||f||_H^2``
is solved *exactly* along its piecewise-linear solution paths:

* :func:`lambda_path` -- the regularisation path in ``lam`` (from the linear quantile regression
  at ``lam = inf`` down to ``lambda_min``), with SIC and validation loss at every breakpoint;
* :class:`SPathSolver` -- for each test point, the path in its imputed score ``S``, giving the
  conditional-conformal cutoff ``S* = sup{S : v_t(S) <= U}`` (SpeedCP; Gibbs, Cherian & Candes).

The hot loops are numba ``nopython`` kernels (``cache=True``), indexed in :mod:`._core`:
:mod:`._elbow` (path state, elbow inverse), :mod:`._events` (event scan), :mod:`._lam_path`,
:mod:`._s_path` and :mod:`._kernels`. The elbow system is kept as an explicit inverse updated
by bordering / Schur downdates with periodic re-inversion, so one step costs ``O(n |E|)``.
"""

from ._path import (
    KERNELS,
    KernelFactor,
    LambdaPathResult,
    PathError,
    SPathSolver,
    break_ties,
    in_row_space,
    kernel_matrix,
    lambda_path,
    linear_qr_start,
    phi_design,
    reduce_phi,
    sq_dists,
)
from ._lowrank import NystroemFeatures
from ._select import default_max_steps, gamma_grid, select_gamma_cv

__all__ = [
    "KERNELS",
    "KernelFactor",
    "LambdaPathResult",
    "NystroemFeatures",
    "PathError",
    "SPathSolver",
    "break_ties",
    "default_max_steps",
    "gamma_grid",
    "in_row_space",
    "kernel_matrix",
    "lambda_path",
    "linear_qr_start",
    "phi_design",
    "reduce_phi",
    "select_gamma_cv",
    "sq_dists",
]
