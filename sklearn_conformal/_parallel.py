"""Parallel loops through joblib, so that a backend set by the caller can distribute them.

The package's internal loops (SpeedCP's gamma x fold cross-validation paths, its S-path chunks
over test points) are ``sklearn.utils.parallel.Parallel`` calls on module-level functions with
their data, ``prefer="threads"``: by default they run in threads of the calling process (the
numba solvers release the GIL), and under ``joblib.parallel_backend("dask")`` (or loky, ray) the
same tasks are pickled to worker processes, with identical results.

A worker process of a cluster does not know how many threads the task should use (dask sets no
BLAS / numba / torch limits), so a task that runs in a process other than the one that
dispatched it caps them to the threads it was given (:func:`run_task`); in the dispatching
process nothing changes.
"""

import contextlib
import os
import sys
import threading

__all__ = ["capped_threads", "parallel", "run_task", "threads_backend"]

_lock = threading.Lock()
_active = 0
_limiter = None


def threads_backend():
    """Whether ``Parallel(prefer="threads")`` runs its tasks in threads of this process.

    True without a backend set by the caller (joblib then picks threads) and under the
    threading or sequential backends; False under process or cluster backends (loky, dask,
    ray), whose tasks do not share this process's memory.
    """
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend(prefer="threads")
    return bool(getattr(backend, "uses_threads", False))


@contextlib.contextmanager
def capped_threads(n_threads):
    """Run the block with at most ``n_threads`` BLAS/OpenMP, numba and torch threads.

    BLAS/OpenMP pools are limited through threadpoolctl, process-wide: overlapping blocks
    (several tasks in threads of one worker) are counted and the first one's limiter is undone
    when the last exits. numba's setting is per thread; torch's through the package's counted
    :func:`~sklearn_conformal._training._threads.torch_num_threads`, only when torch is
    already imported (a task that does not use torch never imports it).
    """
    global _active, _limiter
    n_threads = max(int(n_threads), 1)
    with _lock:
        if _active == 0:
            from threadpoolctl import threadpool_limits

            _limiter = threadpool_limits(limits=n_threads)
        _active += 1
    numba_before = None
    try:
        import numba

        numba_before = numba.get_num_threads()
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):  # pragma: no cover - numba is a dependency
        numba_before = None
    try:
        if "torch" in sys.modules:
            from ._training._threads import torch_num_threads

            torch_limit = torch_num_threads(n_threads)
        else:
            torch_limit = contextlib.nullcontext()
        with torch_limit:
            yield
    finally:
        if numba_before is not None:
            numba.set_num_threads(numba_before)
        with _lock:
            _active -= 1
            if _active == 0:
                _limiter.restore_original_limits()
                _limiter = None


def run_task(parent_pid, n_threads, func, *args, **kwargs):
    """``func(*args, **kwargs)``; with thread limits (:func:`capped_threads`) when it runs in a
    process other than ``parent_pid``, the process that dispatched it."""
    if os.getpid() == parent_pid:
        return func(*args, **kwargs)
    with capped_threads(n_threads):
        return func(*args, **kwargs)


def parallel(n_jobs, prefer="threads", **kwargs):
    """``sklearn.utils.parallel.Parallel(n_jobs, prefer=prefer)`` returning its results as
    they complete, in order (a generator; a list with joblib < 1.3)."""
    from sklearn.utils.parallel import Parallel

    try:
        return Parallel(n_jobs=n_jobs, prefer=prefer, return_as="generator", **kwargs)
    except TypeError:  # pragma: no cover - joblib < 1.3: no return_as
        return Parallel(n_jobs=n_jobs, prefer=prefer, **kwargs)
