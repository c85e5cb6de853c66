"""Float64 inference copies of trained networks.

Networks train in float32, but a float32 forward pass rounds differently for different batch
shapes (the matrix kernels block and vectorise by shape), so a prediction would depend, by about
one ulp (~1e-7), on which other rows share the call and in which order. The fitted estimators
therefore predict with a float64 CPU copy of the trained network: the rounding of float64
products is ~1e-16, far below anything the outputs are compared at, and inputs up to the float64
range stay finite.
"""

import copy
import itertools
import warnings

import numpy as np
import torch

from ..exceptions import Float32InferenceWarning

__all__ = ["float64_copy", "forward_float64"]


def float64_copy(module, X_probe=None, estimator="the estimator"):
    """An eval-mode float64 copy of ``module`` on the CPU, without gradients.

    Parameters
    ----------
    module : torch.nn.Module
        Trained network (any device, any floating dtype); it is not modified.
    X_probe : ndarray of shape (n, n_features), optional
        A few rows to check that the copy runs in float64. A module that cannot (e.g. its
        ``forward`` casts its input with ``.float()``) is copied in float32 instead, with a
        :class:`~sklearn_conformal.exceptions.Float32InferenceWarning`.
    estimator : str
        Name in the warning.

    Returns
    -------
    module64 : torch.nn.Module
    """
    module64 = copy.deepcopy(module).to("cpu").double().eval()
    for param in module64.parameters():
        param.requires_grad_(False)
    if X_probe is None:
        return module64
    try:
        forward_float64(module64, X_probe)
    except (RuntimeError, TypeError) as exc:
        warnings.warn(
            f"{estimator}: the network does not run in float64 ({exc}); predictions use float32 "
            "and may change by ~1e-7 with the other rows of the call. Let forward() follow the "
            "input dtype to predict in float64.",
            Float32InferenceWarning,
            stacklevel=3,
        )
        module32 = copy.deepcopy(module).to("cpu").float().eval()
        for param in module32.parameters():
            param.requires_grad_(False)
        return module32
    return module64


def forward_float64(module, X, batch_size=65536):
    """Outputs of a :func:`float64_copy` on the float64 array ``X``, as a float64 tensor.

    ``X`` is cast to the module's floating dtype (float64, or float32 for the fallback copy).

    Rows are evaluated in fixed chunks of ``batch_size`` only to bound memory; in float64 the
    result of a row does not depend on the chunk it is in beyond ~1e-16.
    """
    dtype = next(
        (t.dtype for t in itertools.chain(module.parameters(), module.buffers())
         if t.is_floating_point()),
        torch.float64,
    )
    X = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float64)).to(dtype)
    module.eval()
    with torch.no_grad():
        if len(X) <= batch_size:
            return module(X).to(torch.float64)
        out = [module(X[i : i + batch_size]) for i in range(0, len(X), batch_size)]
    return torch.cat(out).to(torch.float64)
