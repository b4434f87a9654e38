"""ModelWorker without HTTP: a lone request runs on its decode thread, company goes to the batcher,
and the model never runs two batches at once."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np

from edgeship.serve.batching import ModelWorker
from edgeship.serve.config import ServeConfig


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
    """Doubles its input after a short sleep; records who ran it, with what, and any overlap."""

    name = "recording"
    max_batch = None

    def __init__(self, run_s: float = 0.01):
        self.run_s = run_s
        self.active = 0
        self.max_active = 0
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def run(self, x):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append((threading.current_thread().name, int(x.shape[0])))
        time.sleep(self.run_s)
        with self._lock:
            self.active -= 1
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


def test_lone_requests_run_on_the_decode_thread():
    model = RecordingModel()
    with ThreadPoolExecutor(2, thread_name_prefix="decode") as pool:
        for v in (1.0, 2.0, 3.0):  # one at a time: each finds the model idle
            (answer,), _ = asyncio.run(_serve(model, ServeConfig(max_batch=4), [v], pool))
            assert answer == 2 * v
    assert [t.startswith("decode") for t, _ in model.calls] == [True, True, True]


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
