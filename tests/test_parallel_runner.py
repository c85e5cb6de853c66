"""The runner that trains CoCP's folds in this process and in loky worker processes."""

import os
import time

import pytest
from joblib import parallel_backend
from sklearn.utils.parallel import delayed

from sklearn_conformal._parallel import default_process_pool, run_here_and_in_processes


def _task(index, seconds):
    time.sleep(seconds)
    return index, os.getpid()


def _failing(index):
    if index == 2:
        raise ValueError(f"task {index} failed")
    time.sleep(0.2)
    return index


def test_tasks_run_here_and_in_a_worker_in_order():
    done = []
    # slow enough that the worker (started on the first call) takes some of them
    results = run_here_and_in_processes(
        [delayed(_task)(i, 0.5) for i in range(8)], 2, on_result=done.append
    )
    assert [r[0] for r in results] == list(range(8))
    pids = {r[1] for r in results}
    assert os.getpid() in pids and len(pids) == 2
    assert sorted(done) == list(range(8))


def test_one_job_or_one_task_stays_in_this_process():
    for n_jobs, n_tasks in ((1, 3), (4, 1)):
        results = run_here_and_in_processes(
            [delayed(_task)(i, 0.0) for i in range(n_tasks)], n_jobs
        )
        assert [r for r in results] == [(i, os.getpid()) for i in range(n_tasks)]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_failing_task_raises_its_error(n_jobs):
    with pytest.raises(ValueError, match="task 2 failed"):
        run_here_and_in_processes([delayed(_failing)(i) for i in range(6)], n_jobs)


def test_the_pool_is_used_only_without_a_backend_of_the_caller():
    assert default_process_pool()
    with parallel_backend("loky", n_jobs=2):
        assert default_process_pool()
    for backend in ("threading", "multiprocessing", "sequential"):
        with parallel_backend(backend):
            assert not default_process_pool()


def test_no_pool_of_its_own_inside_a_joblib_worker():
    from joblib import Parallel
    from joblib import delayed as joblib_delayed

    inside = Parallel(n_jobs=2)(joblib_delayed(default_process_pool)() for _ in range(2))
    assert inside == [False, False]


def test_joblib_pools_still_work_after_the_runner():
    # the runner's pool is its own: joblib's reusable loky executor is neither reused nor
    # replaced by it
    from joblib import Parallel
    from joblib import delayed as joblib_delayed

    run_here_and_in_processes([delayed(_task)(i, 0.2) for i in range(4)], 2)
    assert Parallel(n_jobs=2)(joblib_delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    run_here_and_in_processes([delayed(_task)(i, 0.2) for i in range(4)], 3)
    assert Parallel(n_jobs=2)(joblib_delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def _run_in_child(queue):
    results = run_here_and_in_processes([delayed(_task)(i, 0.3) for i in range(4)], 2)
    queue.put([r[0] for r in results])


def test_a_forked_child_gets_a_pool_of_its_own():
    # the parent's pool object is inherited by a forked child without its management thread:
    # reusing it there would never run a task
    import multiprocessing

    run_here_and_in_processes([delayed(_task)(i, 0.3) for i in range(4)], 2)  # parent's pool
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_run_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
    assert queue.get(timeout=5) == [0, 1, 2, 3]


def _pool_flag(_):
    return default_process_pool()


def test_no_pool_of_its_own_in_a_multiprocessing_pool_worker():
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_pool_flag, [0]) == [False]


def test_concurrent_calls_of_different_sizes_in_threads():
    # two fits in threads with different n_jobs: a call must not shut down the pool another
    # call is still submitting to
    import threading

    out, errors = {}, []

    def call(n_jobs):
        try:
            res = run_here_and_in_processes([delayed(_task)(i, 0.3) for i in range(16)], n_jobs)
            out[n_jobs] = [r[0] for r in res]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(n,)) for n in (2, 3, 2, 4)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert out == {2: list(range(16)), 3: list(range(16)), 4: list(range(16))}
