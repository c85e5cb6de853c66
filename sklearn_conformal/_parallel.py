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

import collections
import contextlib
import os
import sys
import threading

__all__ = [
    "capped_threads", "default_process_pool", "parallel", "run_here_and_in_processes",
    "run_task", "threads_backend",
]

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


def default_process_pool():
    """Whether process tasks of this call would go to joblib's own loky pool: no backend set by
    the caller (dask, ray, threading) and not inside a joblib worker (where joblib nests with
    threads)."""
    import multiprocessing

    from joblib.parallel import get_active_backend

    if multiprocessing.current_process().daemon:
        # a multiprocessing pool's worker may not start processes (joblib runs sequentially)
        return False
    backend, _ = get_active_backend(prefer="processes")
    return type(backend).__name__ == "LokyBackend" and getattr(backend, "nesting_level", 0) == 0


_pool_lock = threading.Lock()
_pool = None
_POOL_IDLE_SECONDS = 300  # as joblib's loky workers: idle workers exit, later tasks respawn them


def _worker_pool(n_workers):
    """The package's own pool of ``n_workers`` loky worker processes, kept between calls.

    Not joblib's reusable executor: joblib decorates that one (memmapping reducers, a temporary
    folder manager) and replaces it whenever its arguments change, so sharing it would break or
    restart the caller's joblib pool. This one is recreated when its size changes, when it broke,
    and in a forked child (which inherits the pool object but not its management thread: tasks
    submitted there would never run; the parent's pool is left alone).
    """
    global _pool
    from joblib.externals.loky.process_executor import ProcessPoolExecutor

    with _pool_lock:
        owner, pool = _pool if _pool is not None else (None, None)
        if owner != os.getpid():
            pool = None  # not ours to use (or shut down): created by the process we forked from
        if pool is None or pool._max_workers != n_workers or pool._flags.broken or (
            pool._flags.shutdown
        ):
            if pool is not None:
                pool.shutdown(wait=False)
            pool = ProcessPoolExecutor(max_workers=n_workers, timeout=_POOL_IDLE_SECONDS)
            _pool = (os.getpid(), pool)
        return pool


def run_here_and_in_processes(jobs, n_jobs, on_result=None):
    """Run ``delayed`` calls on ``n_jobs`` workers, one of which is this process.

    The calling thread takes tasks itself while ``n_jobs - 1`` loky worker processes (a pool of
    the package's, kept between calls) take the others, each worker taking the next task when it is free. Compared
    with ``n_jobs`` worker processes this saves one worker's start (importing the task's modules,
    seconds for torch) and keeps the calling process's imported modules busy. For tasks that
    return the same result wherever they run (seeded, no shared state).

    Parameters
    ----------
    jobs : iterable of (function, args, kwargs)
        ``delayed`` calls (sklearn's wrapper, which carries the configuration to workers, is
        unwrapped: the tasks must not depend on it).
    n_jobs : int
        joblib's convention (``-1``: every core).
    on_result : callable or None
        ``on_result(index)`` after each task, called under a lock (never concurrently).

    Returns
    -------
    results : list
        In task order. The first error of any task is raised; after an error no new task starts
        (a worker's running task finishes in the background).
    """
    from joblib import effective_n_jobs

    calls = [(getattr(func, "function", func), args, kwargs) for func, args, kwargs in jobs]
    n_workers = min(effective_n_jobs(n_jobs), len(calls)) - 1
    results = [None] * len(calls)
    pending = collections.deque(range(len(calls)))
    errors = []
    lock = threading.Lock()

    def take():
        with lock:
            return None if errors or not pending else pending.popleft()

    def done(index, result):
        with lock:
            results[index] = result
            if on_result is not None:
                on_result(index)

    def feed(executor):
        while (index := take()) is not None:
            func, args, kwargs = calls[index]
            try:
                result = executor.submit(func, *args, **kwargs).result()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                with lock:
                    errors.append(exc)
                return
            done(index, result)

    feeders = []
    if n_workers > 0:
        executor = _worker_pool(n_workers)
        feeders = [threading.Thread(target=feed, args=(executor,), daemon=True)
                   for _ in range(n_workers)]
        for thread in feeders:
            thread.start()
    try:
        while (index := take()) is not None:
            func, args, kwargs = calls[index]
            done(index, func(*args, **kwargs))
    except BaseException as exc:
        with lock:
            errors.append(exc)  # the feeders take no new task; their running ones are dropped
        if feeders:
            _release_pool_in_child(kill=True)
        raise
    for thread in feeders:
        thread.join()
    if feeders:
        _release_pool_in_child(kill=bool(errors))
    if errors:
        raise errors[0]
    return results


def _release_pool_in_child(kill):
    """Shut the pool down in a child process of ``multiprocessing`` (a forked or spawned
    ``Process``): such a child joins its own children at exit before it runs the atexit hook
    that stops idle workers, so kept workers would hold its exit for their idle timeout."""
    global _pool
    import multiprocessing

    if multiprocessing.parent_process() is None:
        return
    with _pool_lock:
        owned = _pool is not None and _pool[0] == os.getpid()
        pool, _pool = (_pool[1] if owned else None), (None if owned else _pool)
    if pool is not None:
        pool.shutdown(wait=not kill, kill_workers=kill)
