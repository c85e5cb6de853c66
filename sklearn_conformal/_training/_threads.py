"""Torch intra-op and BLAS thread limits for fits that may run in concurrent threads.

``torch.set_num_threads`` changes the calling thread's OpenMP setting *and* process-wide values
(the default that threads started later read, MKL's thread count). Saving and restoring it around
each fit is therefore not enough once fits overlap in threads: a fit that starts while another
holds the limit reads the limit as its "previous" value and restores it last, leaving the process
at the limit. :func:`torch_num_threads` counts the overlapping fits and puts back the value seen
before the first of them.
"""

import contextlib
import importlib
import threading

import torch

__all__ = ["single_threaded_blas", "torch_num_threads"]

_lock = threading.Lock()
_active = 0
_saved = None
_blas_active = 0
_blas_limiter = None


@contextlib.contextmanager
def torch_num_threads(n_threads):
    """Run the block with ``n_threads`` torch intra-op threads (``None``: unchanged).

    On exit the thread gets back its own previous setting if no other limited fit was running
    when it entered, else the process setting from before the overlapping fits; once the last
    of them exits the process-wide value is that setting again.
    """
    global _active, _saved
    if n_threads is None:
        yield
        return
    with _lock:
        own = torch.get_num_threads()
        first = _active == 0
        if first:
            _saved = own
        _active += 1
        torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            torch.set_num_threads(own if first else _saved)


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with one BLAS thread (threadpoolctl), counted like :func:`torch_num_threads`.

    The compiled CoCP epochs (:mod:`._mlp_kernels`) multiply small matrices through scipy's
    BLAS, whose default pool spreads a 512 x 64 x 64 product over every core: slower at that
    size, and folds trained side by side would compete for the cores. The limit is
    process-wide; overlapping blocks share one limiter, undone when the last of them exits.
    """
    global _blas_active, _blas_limiter
    with _lock:
        if _blas_active == 0:
            from threadpoolctl import threadpool_limits

            # load scipy's BLAS (the sgemm the compiled epochs call through numba), so that
            # the limit reaches it
            importlib.import_module("scipy.linalg")

            _blas_limiter = threadpool_limits(limits=1, user_api="blas")
        _blas_active += 1
    try:
        yield
    finally:
        with _lock:
            _blas_active -= 1
            if _blas_active == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
