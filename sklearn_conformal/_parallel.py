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
_pools = {}  # n_workers -> [pool, number of calls using it], of the process in _pools_pid
_pools_pid = None
_POOL_IDLE_SECONDS = 300  # as joblib's loky workers: idle workers exit, later tasks respawn them


@contextlib.contextmanager
def _borrowed_pool(n_workers):
    """A pool of ``n_workers`` loky worker processes of the package's own, kept between calls.

    Not joblib's reusable executor: joblib decorates that one (memmapping reducers, a temporary
    folder manager) and replaces it whenever its arguments change, so sharing it would break or
    restart the caller's joblib pool. One pool per size, never shut down while a call (another
    thread's fit) uses it; a broken one is replaced for later calls. A forked child starts
    without pools: it inherits the pool objects but not their management threads (tasks
    submitted there would never run), and the parent's pools are left alone. In a child process
    of ``multiprocessing`` the last call using a pool shuts it down: such a child joins its
    children at exit before the hook that stops idle workers, so kept workers would hold its
    exit for their idle timeout.
    """
    global _pools, _pools_pid
    import multiprocessing

    from joblib.externals.loky.process_executor import ProcessPoolExecutor

    with _pool_lock:
        if _pools_pid != os.getpid():
            _pools, _pools_pid = {}, os.getpid()
        entry = _pools.get(n_workers)
        if entry is None or entry[0]._flags.broken or entry[0]._flags.shutdown:
            pool = ProcessPoolExecutor(max_workers=n_workers, timeout=_POOL_IDLE_SECONDS)
            entry = _pools[n_workers] = [pool, 0]
        entry[1] += 1
    failed = False
    try:
        yield entry[0]
    except BaseException:
        failed = True
        raise
    finally:
        with _pool_lock:
            entry[1] -= 1
            release = (
                entry[1] == 0 and multiprocessing.parent_process() is not None
                and _pools.get(n_workers) is entry
            )
            if release:
                del _pools[n_workers]
        if release:
            entry[0].shutdown(wait=not failed, kill_workers=failed)


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

    with _borrowed_pool(n_workers) if n_workers > 0 else contextlib.nullcontext() as executor:
        feeders = [threading.Thread(target=feed, args=(executor,), daemon=True)
                   for _ in range(max(n_workers, 0))]
        for thread in feeders:
            thread.start()
        try:
            while (index := take()) is not None:
                func, args, kwargs = calls[index]
                done(index, func(*args, **kwargs))
        except BaseException as exc:
            with lock:
                errors.append(exc)  # the feeders take no new task; running ones are dropped
            raise
        for thread in feeders:
            thread.join()
        if errors:
            raise errors[0]
    return results
