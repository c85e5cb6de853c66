"""numba kernels of the relaxed sorting network on one float64 vector (CaCT's training quantile).

A CaCT training batch runs the network on a window of 16 scores: 10 stages of 8 comparators.
In numpy every stage is some ten array operations on 8 values, each costing a microsecond of
call overhead for nanoseconds of arithmetic; here a stage is a loop. The comparator arithmetic
is :func:`~._soft_quantile._network_forward_np`'s, operation for operation (``expit(d)`` as
``1 / (1 + exp(-d))``, scipy's formula; no fast-math, so no fused multiply-adds), and the
comparators of a stage touch disjoint positions, so running them one after the other reads what
the array version reads: the results are the same bit for bit (tested).
"""

import math

from .._numba import jit

__all__ = ["network_backward_vector", "network_forward_vector"]


@jit()
def network_forward_vector(x, A, B, d, alpha):
    """Stages ``A[s], B[s]`` on ``x`` (pre-scaled, in place); fills ``d`` and ``alpha`` (the
    per-stage comparator inputs of the backward pass)."""
    for s in range(A.shape[0]):
        for j in range(A.shape[1]):
            i = A[s, j]
            k = B[s, j]
            a = x[i]
            b = x[k]
            dj = b - a
            al = 1.0 / (1.0 + math.exp(-dj))
            ad = al * dj
            x[i] = b - ad  # soft minimum
            x[k] = a + ad  # soft maximum
            d[s, j] = dj
            alpha[s, j] = al


@jit()
def network_backward_vector(g, A, B, d, alpha):
    """Vector-Jacobian product of :func:`network_forward_vector`, stages in reverse, in place."""
    for s in range(A.shape[0] - 1, -1, -1):
        for j in range(A.shape[1]):
            i = A[s, j]
            k = B[s, j]
            g_lo = g[i]
            g_hi = g[k]
            al = alpha[s, j]
            dj = d[s, j]
            g_d = (g_hi - g_lo) * (al + al * (1.0 - al) * dj)
            g[i] = g_hi - g_d
            g[k] = g_lo + g_d
