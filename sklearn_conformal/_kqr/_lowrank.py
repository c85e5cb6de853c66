"""Nystrom features: a low-rank kernel whose paths the solvers follow exactly.

With landmarks ``C`` (r points) the Nystrom kernel is ``k~(x, x') = k(x, C) K_CC^+ k(C, x')``,
a positive semi-definite kernel of rank at most ``r``; its features ``f(x) = k(x, C) W`` with
``W = U diag(w)^(-1/2)`` (the eigenpairs of ``K_CC`` above a relative floor) give
``k~(x, x') = f(x) . f(x')``. The path solvers take the calibration features as a
:class:`~._path.KernelFactor` and solve the quantile regression *of this kernel* exactly: the
conditional-coverage guarantee holds for the function class it spans, as for any kernel,
provided the landmarks do not depend on the calibration rows (they are drawn from the training
rows, or set aside from calibration).
"""

import numpy as np

from ._kernels import row_products
from ._path import KernelFactor, kernel_matrix, n_threads

#: eigenvalues of K_CC below this fraction of the largest are dropped (numerical rank)
EIGEN_RTOL = 1e-10


class NystroemFeatures:
    """The feature map ``f(x) = k(x, C) W`` of landmarks ``C`` for one kernel and ``gamma``."""

    def __init__(self, landmarks, kernel, gamma):
        self.landmarks = np.ascontiguousarray(landmarks, dtype=np.float64)
        self.kernel = kernel
        self.gamma = float(gamma)
        K_cc = kernel_matrix(self.landmarks, None, kernel, self.gamma)
        w, U = np.linalg.eigh(K_cc)
        keep = w > EIGEN_RTOL * max(float(w[-1]), 1e-300)
        # ascending eigenvalues: keep the columns in descending order (largest first); stored
        # transposed, one feature per row, for row_products
        weights = (U[:, keep] / np.sqrt(w[keep]))[:, ::-1]
        self.weights_t = np.ascontiguousarray(weights.T)

    @property
    def rank(self):
        return self.weights_t.shape[0]

    def transform(self, Z, n_jobs=1):
        """Features ``(len(Z), rank)`` of the rows ``Z``: a row's features do not depend on
        the other rows of ``Z`` (no BLAS blocking), so predictions are batch-invariant."""
        K_zc = kernel_matrix(Z, self.landmarks, self.kernel, self.gamma, n_jobs=n_jobs)
        return row_products(K_zc, self.weights_t, threads=n_threads(n_jobs))

    def factor(self, Z, n_jobs=1):
        """The rows' features as a :class:`~._path.KernelFactor` for the path solvers."""
        return KernelFactor(self.transform(Z, n_jobs=n_jobs))
