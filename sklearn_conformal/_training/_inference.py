"""Float64 inference copies of trained networks.

Networks train in float32, but a float32 forward pass rounds differently for different batch
shapes (the matrix kernels block and vectorise by shape), so a prediction would depend, by about
one ulp (~1e-7), on which other rows share the call and in which order. The fitted estimators
therefore predict with a float64 CPU copy of the trained network: the rounding of float64
products is ~1e-16, far below anything the outputs are compared at, and inputs up to the float64
range stay finite.
"""

import copy

import numpy as np
import torch

__all__ = ["float64_copy", "forward_float64"]


def float64_copy(module):
    """An eval-mode float64 copy of ``module`` on the CPU, without gradients.

    Parameters
    ----------
    module : torch.nn.Module
        Trained network (any device, any floating dtype); it is not modified.

    Returns
    -------
    module64 : torch.nn.Module
    """
    module64 = copy.deepcopy(module).to("cpu").double().eval()
    for param in module64.parameters():
        param.requires_grad_(False)
    return module64


def forward_float64(module, X, batch_size=65536):
    """Outputs of a :func:`float64_copy` on the float64 array ``X``, as a float64 tensor.

    Rows are evaluated in fixed chunks of ``batch_size`` only to bound memory; in float64 the
    result of a row does not depend on the chunk it is in beyond ~1e-16.
    """
    X = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float64))
    module.eval()
    with torch.no_grad():
        if len(X) <= batch_size:
            return module(X).to(torch.float64)
        out = [module(X[i : i + batch_size]) for i in range(0, len(X), batch_size)]
    return torch.cat(out).to(torch.float64)
