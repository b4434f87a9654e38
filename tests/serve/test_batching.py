"""ModelWorker without HTTP: a lone request runs on its decode thread (on the spinning twin with
--spinning auto), company goes to the batcher, and the model never runs two batches at once."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from edgeship.runtime import Model
from edgeship.serve.batching import STREAM_GAP_S, ModelWorker
from edgeship.serve.config import ServeConfig, runtime_config


class _Gauge:
    def set_function(self, fn):
        self.fn = fn


class _Sink:
    def observe(self, value):
        pass

    def inc(self):
        pass


def _metrics():
    sink = _Sink()
    return SimpleNamespace(queue_wait=sink, preprocess=sink, inference=sink, batch_size=sink,
                           rejected=sink, queue_depth=_Gauge())


class RecordingModel:
    """Doubles its input after a short sleep; records who ran it, with what, and any overlap.

    ``derive`` makes a twin that records into its parent, as ``Model.derive`` makes a second session.
    """

    name = "recording"
    max_batch = None

    def __init__(self, run_s: float = 0.01, parent: "RecordingModel | None" = None, changes: dict | None = None):
        self.run_s = run_s
        self.changes = changes or {}
        self.root = parent or self
        if parent is None:
            self.active = 0
            self.max_active = 0
            self.calls: list[tuple[str, int]] = []
            self.ran_on: list[RecordingModel] = []  # which model (the model itself or a twin) ran each call
            self.twins: list[RecordingModel] = []
            self._lock = threading.Lock()

    def derive(self, **changes):
        twin = RecordingModel(self.run_s, self.root, changes)
        self.root.twins.append(twin)
        return twin

    def run(self, x):
        root = self.root
        with root._lock:
            root.active += 1
            root.max_active = max(root.max_active, root.active)
            root.calls.append((threading.current_thread().name, int(x.shape[0])))
            root.ran_on.append(self)
        time.sleep(self.run_s)
        with root._lock:
            root.active -= 1
        return [x * 2]


def _prepare(value: float):
    def prepare():
        x = np.full((1, 2), value, np.float32)
        return x, (lambda outputs: float(outputs[0][0, 0])), {}

    return prepare


async def _serve(model, config, values, pool):
    worker = ModelWorker(model, config, _metrics(), pool)
    worker.start()
    try:
        results = await asyncio.gather(*(worker.submit(_prepare(v)) for v in values))
    finally:
        worker.stop()
    return [r for r, _ in results], worker


async def _one_by_one(model, config, values, pool, gap_s=0.0):
    worker = ModelWorker(model, config, _metrics(), pool)
    worker.start()
    answers = []
    try:
        for v in values:
            answer, _ = await worker.submit(_prepare(v))
            answers.append(answer)
            await asyncio.sleep(gap_s)
    finally:
        worker.stop()
    return answers


def test_lone_requests_run_on_the_decode_thread():
    model = RecordingModel()
    with ThreadPoolExecutor(2, thread_name_prefix="decode") as pool:
        answers = asyncio.run(_one_by_one(model, ServeConfig(max_batch=4), [1.0, 2.0, 3.0], pool))
    assert answers == [2.0, 4.0, 6.0]
    assert [t.startswith("decode") for t, _ in model.calls] == [True, True, True]
    # --spinning auto (the default): one twin, with spinning threads; a request that follows the one
    # before within STREAM_GAP_S runs on it, the first of a stream on the model's own session
    assert len(model.twins) == 1
    assert model.twins[0].changes == {"allow_spinning": True, "stop_spinning_after_run": False}
    assert model.ran_on == [model, model.twins[0], model.twins[0]]


def test_sparse_requests_never_run_on_the_spinning_twin():
    model = RecordingModel(run_s=0.0)
    with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        asyncio.run(_one_by_one(model, ServeConfig(), [1.0, 2.0, 3.0], pool, gap_s=STREAM_GAP_S + 0.02))
    assert len(model.twins) == 1 and model.ran_on == [model, model, model]


def test_without_auto_spinning_there_is_no_twin_session():
    model = RecordingModel()
    with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        answers = asyncio.run(_one_by_one(model, ServeConfig(spinning="off"), [1.0, 2.0], pool))
    assert answers == [2.0, 4.0] and model.twins == [] and model.ran_on == [model, model]


def test_concurrent_requests_batch_and_never_overlap():
    model = RecordingModel(run_s=0.02)
    values = [float(i) for i in range(24)]
    with ThreadPoolExecutor(4, thread_name_prefix="decode") as pool:
        answers, _ = asyncio.run(_serve(model, ServeConfig(max_batch=8, max_wait_ms=5), values, pool))
    assert answers == [2 * v for v in values]  # each request gets its own row back
    assert model.max_active == 1  # inline runs and batches take turns on the model
    assert sum(rows for _, rows in model.calls) == len(values)
    assert any(rows > 1 for _, rows in model.calls)  # requests that queued behind a run were batched
    assert any(t.startswith("edgeship-infer") for t, _ in model.calls)
    # batches run on the model's own (non-spinning) session; only lone runs take the spinning twin
    batched = [m for (_, rows), m in zip(model.calls, model.ran_on) if rows > 1]
    assert batched and all(m is model for m in batched)


def test_decoded_rows_in_flight_are_bounded_by_the_batch_not_the_queue():
    """40 requests at once: decoded rows not yet answered are at most a batch running (2) and the
    max_batch + prep_threads in-flight slots behind it, never the 40."""
    model = RecordingModel(run_s=0.01)
    live, most = [0], [0]
    lock = threading.Lock()

    def prepare(value):
        def run():
            with lock:
                live[0] += 1
                most[0] = max(most[0], live[0])
            x = np.full((1, 2), value, np.float32)

            def finish(outputs):
                with lock:
                    live[0] -= 1
                return float(outputs[0][0, 0])

            return x, finish, {}

        return run

    async def main():
        worker = ModelWorker(model, ServeConfig(max_batch=2, prep_threads=2, max_wait_ms=5), _metrics(), pool)
        worker.start()
        try:
            out = await asyncio.gather(*(worker.submit(prepare(float(v))) for v in range(40)))
        finally:
            worker.stop()
        return [a for a, _ in out], worker

    with ThreadPoolExecutor(2, thread_name_prefix="decode") as pool:
        answers, worker = asyncio.run(main())
    assert answers == [2.0 * v for v in range(40)] and worker.in_flight == 4
    assert 2 <= most[0] <= 4 + 2


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread priorities are read from Linux's /proc")
def test_the_spinning_twins_threads_run_at_the_lowest_priority(tiny_bundle):
    """With --spinning auto, the twin's ONNX Runtime threads get nice 19; the model's own keep the process's."""

    def new_threads(make):
        before = set(os.listdir("/proc/self/task"))
        made = make()
        started = set(os.listdir("/proc/self/task")) - before
        return made, {int(t): os.getpriority(os.PRIO_PROCESS, int(t)) for t in started}

    mine = os.getpriority(os.PRIO_PROCESS, 0)  # new threads start at this one's (0 unless run under nice)
    if mine == 19:
        pytest.skip("the tests run at nice 19 already")
    config = ServeConfig(threads=2)  # an intra-op pool with a thread of its own, on any machine
    model, own = new_threads(lambda: Model.load(tiny_bundle.root, runtime_config(config)))
    worker, twin = new_threads(lambda: ModelWorker(model, config, _metrics(), ThreadPoolExecutor(1)))
    assert worker._twin is not None and worker.models() == [model, worker._twin]
    assert own and set(own.values()) == {mine}
    assert twin and set(twin.values()) == {19}
    off = ServeConfig(threads=2, spinning="off")
    _, none = new_threads(lambda: ModelWorker(model, off, _metrics(), ThreadPoolExecutor(1)))
    assert none == {}


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread priorities are read from Linux's /proc")
def test_only_threads_this_thread_starts_get_the_lowest_priority():
    """A live swap makes the twin while the server runs: threads others start meanwhile keep their priority."""
    from edgeship.serve.batching import _lowest_priority_for_new_threads

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    if mine == 19:
        pytest.skip("the tests run at nice 19 already")
    tids: dict[str, int] = {}
    release = threading.Event()

    def park(key):
        tids[key] = threading.get_native_id()
        release.wait(10)

    def start_from_another_thread():
        t = threading.Thread(target=park, args=("theirs",))
        t.start()
        return t

    helper = ThreadPoolExecutor(1)
    helper.submit(lambda: None).result()  # its thread exists before the block, under its own name
    with _lowest_priority_for_new_threads():
        ours = threading.Thread(target=park, args=("ours",))
        ours.start()
        theirs = helper.submit(start_from_another_thread).result()
        while len(tids) < 2:
            time.sleep(0.001)
    try:
        assert os.getpriority(os.PRIO_PROCESS, tids["ours"]) == 19
        assert os.getpriority(os.PRIO_PROCESS, tids["theirs"]) == mine
        assert open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip() != ""  # name restored
    finally:
        release.set()
        ours.join()
        theirs.join()
        helper.shutdown()
