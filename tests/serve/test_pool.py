"""HotThreadPool: the thread idle last gets the next task; queued work, errors and shutdown."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest

from edgeship.serve.pool import HotThreadPool


def test_a_lone_stream_of_tasks_keeps_to_one_thread():
    pool = HotThreadPool(3, "t")
    try:
        names = {pool.submit(lambda: threading.current_thread().name).result() for _ in range(20)}
    finally:
        pool.shutdown()
    assert len(names) == 1  # ThreadPoolExecutor would rotate through all three


def test_queued_work_spreads_and_every_task_runs():
    pool = HotThreadPool(3, "t")
    gate = threading.Event()

    def task(i):
        gate.wait(5)
        return i, threading.current_thread().name

    futures = [pool.submit(task, i) for i in range(12)]
    gate.set()
    results = [f.result(5) for f in futures]
    pool.shutdown()
    assert [i for i, _ in results] == list(range(12))
    assert len({name for _, name in results}) == 3


def test_errors_reach_the_caller_and_the_thread_survives():
    pool = HotThreadPool(1, "t")
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)
    assert pool.submit(lambda: 7).result(5) == 7
    pool.shutdown()


def test_run_in_executor_and_shutdown():
    pool = HotThreadPool(2, "t")

    async def main():
        return await asyncio.get_running_loop().run_in_executor(pool, sum, [1, 2, 3])

    assert asyncio.run(main()) == 6
    slow = [pool.submit(time.sleep, 0.05) for _ in range(2)]
    queued = pool.submit(lambda: "queued")
    pool.shutdown(wait=True)  # queued work still runs
    assert queued.result(0) == "queued" and all(f.done() for f in slow)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)
    assert not any(t.name.startswith("t_") and t.is_alive() for t in threading.enumerate())


def test_shutdown_can_cancel_queued_work():
    pool = HotThreadPool(1, "c")
    gate = threading.Event()
    running = pool.submit(gate.wait, 5)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert running.result(5) is True and queued.cancelled()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_renice_lowers_the_pools_threads_and_only_them():
    pool = HotThreadPool(2, "t")
    try:
        tids = pool.renice(10)
        assert sorted(tids) == sorted(w.thread.native_id for w in pool._workers)
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert {os.getpriority(os.PRIO_PROCESS, t) for t in tids} == {max(mine, 10)}
        # the threads' own view: what they run at, as the tasks see it
        assert pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result(5) == max(mine, 10)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # the caller is untouched
    finally:
        pool.shutdown()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_renice_never_raises_a_thread_already_lower():
    pool = HotThreadPool(1, "t")
    try:
        tid = pool._workers[0].thread.native_id
        low = min(19, os.getpriority(os.PRIO_PROCESS, tid) + 15)
        os.setpriority(os.PRIO_PROCESS, tid, low)  # as under `nice -n 15`: raising it back would need privileges
        assert pool.renice(10) == [tid] and os.getpriority(os.PRIO_PROCESS, tid) == max(low, 10)
    finally:
        pool.shutdown()
