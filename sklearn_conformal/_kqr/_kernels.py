"""Kernel matrices built straight from the points, in place, in row blocks.

No squared-distance matrix is materialised: an ``n x n`` kernel needs one ``n x n`` buffer, not
two (the distances, then the kernel), and the cross-validation builds each fold's kernel from
the points instead of copying it out of a full one. ``d^2`` is accumulated exactly as
:func:`sq_dists` does and mapped by the same :func:`kernel_value`, so the matrices equal
``kernel_from_sq_dists(sq_dists(X, Y))`` bit for bit.

Also here: :func:`row_hash`, which keys duplicate kernel rows.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._numba import jit
from ..exceptions import InsufficientMemoryError


@jit(error_model="numpy", no_cfunc_wrapper=True)
def sq_dists(X, Y):
    """Squared Euclidean distances between the rows of ``X`` and ``Y``."""
    nx, p = X.shape
    ny = Y.shape[0]
    out = np.empty((nx, ny))
    for i in range(nx):
        for j in range(ny):
            acc = 0.0
            for k in range(p):
                t = X[i, k] - Y[j, k]
                acc += t * t
            out[i, j] = acc
    return out


@jit(error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def kernel_value(d2, kind, gamma, beta):
    """``k`` at squared distance ``d2`` (``kind``: 0 rbf, 1 laplacian, 2 matern32, 3 matern52,
    4 imq)."""
    if kind == 0:  # rbf
        return np.exp(-gamma * d2)
    r = np.sqrt(gamma * d2)
    if kind == 1:  # laplacian (Matern 1/2)
        return np.exp(-r)
    if kind == 2:  # Matern 3/2
        a = np.sqrt(3.0) * r
        return (1.0 + a) * np.exp(-a)
    if kind == 3:  # Matern 5/2
        a = np.sqrt(5.0) * r
        return (1.0 + a + a * a / 3.0) * np.exp(-a)
    # inverse multiquadric, normalised so that k(x, x) = 1
    return (1.0 + gamma * d2) ** (-beta)


@jit(error_model="numpy", no_cfunc_wrapper=True)
def kernel_from_sq_dists(D2, kind, gamma, beta):
    """Elementwise kernel of a squared-distance matrix (``kind`` as in :func:`kernel_value`)."""
    nx, ny = D2.shape
    out = np.empty((nx, ny))
    for i in range(nx):
        for j in range(ny):
            out[i, j] = kernel_value(D2[i, j], kind, gamma, beta)
    return out


@jit(error_model="numpy", no_cfunc_wrapper=True)
def row_hash(M, r):
    """``out[i] = sum_j M[i, j] r[j]`` summed in a fixed order: identical rows give identical
    values bit for bit (a BLAS product need not), so it can key duplicate rows."""
    n, p = M.shape
    out = np.empty(n)
    for i in range(n):
        acc = 0.0
        for j in range(p):
            acc += M[i, j] * r[j]
        out[i] = acc
    return out


@jit(error_model="numpy", no_cfunc_wrapper=True)
def kernel_block(X, Y, kind, gamma, beta, out, lo, hi):
    """``out[i, j] = k(X_i, Y_j)`` for rows ``lo <= i < hi`` (threads fill disjoint rows)."""
    ny = Y.shape[0]
    p = X.shape[1]
    for i in range(lo, hi):
        for j in range(ny):
            acc = 0.0
            for k in range(p):
                t = X[i, k] - Y[j, k]
                acc += t * t
            out[i, j] = kernel_value(acc, kind, gamma, beta)


@jit(error_model="numpy", no_cfunc_wrapper=True)
def kernel_sym_block(X, kind, gamma, beta, out, lo, hi):
    """``out[i, j]`` and ``out[j, i]`` for ``j >= i``, rows ``lo <= i < hi`` of ``k(X, X)``.

    Rows of different callers write disjoint entries (row ``i`` owns the upper part of its row
    and the lower part of its column), so threads may share ``out``.
    """
    n = X.shape[0]
    p = X.shape[1]
    for i in range(lo, hi):
        out[i, i] = kernel_value(0.0, kind, gamma, beta)
        for j in range(i + 1, n):
            acc = 0.0
            for k in range(p):
                t = X[i, k] - X[j, k]
                acc += t * t
            val = kernel_value(acc, kind, gamma, beta)
            out[i, j] = val
            out[j, i] = val


@jit(error_model="numpy", no_cfunc_wrapper=True)
def condensed_sq_dists(X, out):
    """Squared distances of the distinct pairs ``i < j`` into ``out`` (length ``n (n - 1) / 2``);
    returns how many are positive, moved to the front of ``out``."""
    n = X.shape[0]
    p = X.shape[1]
    c = 0
    for i in range(n):
        for j in range(i + 1, n):
            acc = 0.0
            for k in range(p):
                t = X[i, k] - X[j, k]
                acc += t * t
            if acc > 0.0:
                out[c] = acc
                c += 1
    return c


def _row_cuts(n, threads, triangle):
    """Row boundaries giving every thread the same work (the upper triangle when ``triangle``)."""
    if not triangle:
        return np.linspace(0, n, threads + 1).astype(int)
    # row i of the triangle costs n - i: solve i n - i^2 / 2 = share for i
    total = n * (n + 1) / 2.0
    cuts = [0]
    for t in range(1, threads):
        cuts.append(int(round(n - np.sqrt(max(n * n - 2.0 * total * t / threads, 0.0)))))
    cuts.append(n)
    return np.asarray(cuts)


def fill_kernel(X, Y, kind, gamma, beta, out, threads=1):
    """Fill ``out`` (float64, C-contiguous, shape ``(len(X), len(Y))``) with ``k(X_i, Y_j)``.

    ``Y is None`` means the symmetric ``k(X, X)`` (half the kernel evaluations).
    """
    n = X.shape[0]
    if n == 0 or out.size == 0:
        return out
    if Y is None:
        cuts = _row_cuts(n, max(1, min(threads, n // 64)), triangle=True)
        _run_cuts(lambda a, b: kernel_sym_block(X, kind, gamma, beta, out, a, b), cuts)
    else:
        cuts = _row_cuts(n, max(1, min(threads, n // 16)), triangle=False)
        _run_cuts(lambda a, b: kernel_block(X, Y, kind, gamma, beta, out, a, b), cuts)
    return out


@jit(error_model="numpy", no_cfunc_wrapper=True)
def row_products_block(A, B, out, lo, hi):
    """``out[i, j] = A_i . B_j`` for rows ``lo <= i < hi``, summed over ``k`` in order: each
    entry is the same whatever the batch (BLAS blocks a product by its shape, so one row
    alone would round differently than in a batch), and equal to the path solvers'
    ``factor_dot``."""
    nb = B.shape[0]
    p = A.shape[1]
    for i in range(lo, hi):
        for j in range(nb):
            acc = 0.0
            for k in range(p):
                acc += A[i, k] * B[j, k]
            out[i, j] = acc


def row_products(A, B, threads=1):
    """``A @ B.T`` row by row (see :func:`row_products_block`), in row blocks over threads."""
    A = np.ascontiguousarray(A, dtype=np.float64)
    B = np.ascontiguousarray(B, dtype=np.float64)
    out = np.empty((A.shape[0], B.shape[0]))
    if out.size == 0:
        return out
    cuts = _row_cuts(A.shape[0], max(1, min(threads, A.shape[0] // 16)), triangle=False)
    _run_cuts(lambda a, b: row_products_block(A, B, out, a, b), cuts)
    return out


def _run_cuts(fn, cuts):
    if len(cuts) <= 2:
        fn(int(cuts[0]), int(cuts[-1]))
        return
    with ThreadPoolExecutor(len(cuts) - 1) as pool:
        list(pool.map(lambda k: fn(int(cuts[k]), int(cuts[k + 1])), range(len(cuts) - 1)))


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------
def available_memory():
    """Bytes the process can still allocate without swapping, or ``None`` when unknown.

    ``MemAvailable`` of ``/proc/meminfo`` (else free physical pages), capped by a cgroup v2
    memory limit when one is set (containers are killed at their limit, not the host's).
    """
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            avail = None
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                room = int(limit) - int(fh.read().strip())
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return avail


def check_memory(n_bytes, what, remedy):
    """Raise :class:`~sklearn_conformal.exceptions.InsufficientMemoryError` when ``n_bytes`` more
    would not fit in the memory available now (nothing is checked when that is unknown)."""
    avail = available_memory()
    if avail is not None and n_bytes > avail:
        raise InsufficientMemoryError(
            f"{what} needs about {n_bytes / 2**30:.2f} GiB but only {avail / 2**30:.2f} GiB of "
            f"memory is available; {remedy}"
        )


def median_sq_dist(X):
    """Median of the positive squared distances over distinct pairs (``None`` when there are
    none); equals the median over the off-diagonal of the full matrix, with half the memory."""
    n = X.shape[0]
    buf = np.empty(n * (n - 1) // 2)
    c = condensed_sq_dists(X, buf)
    if c == 0:
        return None
    return float(np.median(buf[:c], overwrite_input=True))
