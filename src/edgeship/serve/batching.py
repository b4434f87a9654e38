"""One inference thread per model, fed by a bounded queue, running dynamic micro-batches.

>>> worker = ModelWorker(model, config, metrics.for_model(model.name, model), prep_pool)
>>> worker.start()
>>> with worker.admit():                       # Overloaded (503) when queue_size are in flight
...     output, timing = await worker.submit(prepare)

``prepare`` runs in the decode thread pool and returns ``(x, finish, timing)``: the input rows
``x`` ([n, ...]), and ``finish(outputs)`` which turns this request's slice of the outputs into
its answer on the thread that ran the model. Nothing here runs on the event loop except
``admit`` and the final hand-back of the result, so a slow model never stalls health checks or
metrics.

A lone request (the model idle, nothing queued, nothing else being decoded) runs the model on
the decode thread that prepared it: there is nothing to batch it with, and one thread hand-off
fewer is one wake-up fewer on its way. With ``spinning="auto"``, a lone request of a dense stream
(see STREAM_GAP_S) runs on a twin of the model (``model.derive``: a second session of the same
bundle) whose ONNX Runtime threads spin, during the run and for a while after it, as they would
in a tight in-process loop; batches run on the model's own session, whose threads sleep, so
under load they leave the cores to decoding and HTTP. The twin's threads run at the lowest CPU
priority (nice 19): spinning, they give way at once to the event loop, the decode thread and the
client that a stream wakes between two runs.
Everything else goes through the queue to the inference thread, which batches. The model runs
one batch at a time either way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from .config import Spinning
from .errors import Overloaded

log = logging.getLogger("edgeship.serve")

# With spinning "auto", a lone request runs on the spinning twin session only when it came within
# this long of the one before (a stream of at least 25 requests/s). The twin's threads then spin on
# after the run, as ONNX Runtime's do by default (about 30-40 ms here), which keeps the cores hot
# for the next request of the stream; a sparse stream (a camera sending 5 pictures a second) runs
# on the sleeping session and pays no spinning.
STREAM_GAP_S = 0.04

# The twin's settings, over the model's own: its threads spin, and go on spinning after a run as
# ONNX Runtime's default does (``runtime_config(ServeConfig(spinning="auto"))`` plus these is what
# ``lone_runtime_config`` gives).
TWIN_CHANGES = {"allow_spinning": True, "stop_spinning_after_run": False}

Finish = Callable[[list[np.ndarray]], Any]
Prepare = Callable[[], tuple[np.ndarray, Finish, dict]]


@dataclass
class _Job:
    prepare: Prepare
    fut: asyncio.Future
    loop: asyncio.AbstractEventLoop
    t_submit: float
    streaming: bool = False  # came within STREAM_GAP_S of the request before it
    x: Any = None
    finish: Any = None
    timing: dict = field(default_factory=dict)
    t_enqueued: float = 0.0
    slot: Any = None  # the worker's in-flight slot this job holds (touched only on the event loop)

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


@contextlib.contextmanager
def _lowest_priority_for_new_threads(label: str = "edgeship-twin", reniced: list | None = None) -> Iterator[None]:
    """Threads that this thread starts inside the block get nice 19 (Linux; elsewhere nothing changes).

    They are renamed ``label``; their thread ids are appended to ``reniced`` when it is given.

    Measured with a single client on 2 cores (EfficientNet-Lite0, two runs of 5000-7000 requests a
    row): spinning at normal priority between two runs, the twin's threads kept the cores from the
    wake-ups a request needs. The p99 of the HTTP part (client time minus server time) was 2.2-2.5
    ms, against 0.9-1.2 ms at nice 19, and the request's p99 18.0-20.6 ms against 16.1-17.8 ms.
    Inference was not slower (median 5.78 against 5.77 ms): nothing else wants the cores then.

    A live swap makes the twin while the server runs, so other threads may start meanwhile (the
    event loop's executor, say), and they must keep their priority. A new thread inherits its
    creator's name (``comm``), and ONNX Runtime does not rename its threads; so this thread takes
    a name of its own for the block, and only new threads that carry it are reniced.
    """
    tasks = "/proc/self/task"
    me = threading.get_native_id()
    comm = f"{tasks}/{me}/comm"
    try:
        with open(comm) as f:
            own_name = f.read().rstrip("\n")
        before = set(os.listdir(tasks))
        mark = f"es-nice-{me}"[:15]
        with open(comm, "w") as f:
            f.write(mark)
    except OSError:  # not Linux, or /proc is not mounted
        yield
        return
    try:
        yield
    finally:
        with open(comm, "w") as f:
            f.write(own_name)
        for tid in set(os.listdir(tasks)) - before:
            try:
                with open(f"{tasks}/{tid}/comm") as f:
                    if f.read().rstrip("\n") != mark:
                        continue  # started by another thread
                os.setpriority(os.PRIO_PROCESS, int(tid), 19)
                with open(f"{tasks}/{tid}/comm", "w") as f:
                    f.write(label)
                if reniced is not None:
                    reniced.append(int(tid))
            except OSError:  # the thread has ended already
                pass


def _free_slot(job: "_Job") -> None:
    """On the event loop: give back the job's in-flight slot, once (its rows are in a batch, or it is done)."""
    if job.slot is not None:
        job.slot.release()
        job.slot = None


def _free_slots(jobs: list["_Job"]) -> None:
    for job in jobs:
        _free_slot(job)


def _set(fut: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the request was cancelled (client gone, shutdown timeout)
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class ModelWorker:
    """Admission, the queue and the inference thread of one model."""

    def __init__(self, model, config, metrics, prep_pool: Executor, name: str | None = None, activity=None):
        self.model = model
        self.activity = activity  # serve/sharing.VisionActivity: an LLM yields to requests in flight here
        self.name = name or model.name
        self.config = config
        self.metrics = metrics
        stats = getattr(metrics, "stats", None)  # serve/stats.py: Triton's statistics of this version
        self.stats = stats.version(model.version) if stats is not None else None
        self.prep_pool = prep_pool
        self.fixed_batch = model.max_batch  # None when the batch axis is dynamic
        self.capacity = self.fixed_batch or config.max_batch
        # Requests past decoding hold their input rows until answered; at most this many are decoding,
        # waiting or running at once (a batch running, the next one decoding), so those rows are bounded
        # by the batch, not by the queue size (64 rows of a 640x640 detector would be 300 MB).
        self.in_flight = self.capacity + config.prep_threads
        self._slots: tuple[Any, asyncio.Semaphore] | None = None  # (its event loop, the semaphore)
        self._batch_buf: np.ndarray | None = None
        self._max_wait = config.max_wait_ms / 1e3
        self._cv = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._preparing = 0  # handed to the decode pool, not yet queued (guarded by _cv)
        self._running = False  # the model is running a batch, on either thread (guarded by _cv)
        self.pending = 0  # admitted and not yet answered (touched only on the event loop)
        self._closing = False
        self._stopping = False
        self._exited = False  # the inference thread has returned (guarded by _cv)
        self._thread: threading.Thread | None = None
        self._twin = None  # the spinning twin of the model (spinning "auto")
        self._last_submit = float("-inf")  # touched only on the event loop
        self.shadow = None  # an OTA canary (serve/ota.py) offered each batch's input; None: off
        # Spinning is ONNX Runtime's setting; another engine's twin would be a second copy for nothing.
        if config.spinning is Spinning.AUTO and getattr(getattr(model, "backend", None), "value", "onnxruntime") == "onnxruntime":
            with _lowest_priority_for_new_threads():  # ONNX Runtime starts the twin's threads here
                self._twin = model.derive(**TWIN_CHANGES)

    def limit_rows(self, rows: int) -> int:
        """At most ``rows`` rows per run (a dynamic batch axis, before the first batch); returns the rows.
        The rows in flight stay as ``max_batch`` set them: an input row is small beside its activations,
        and the bound costs throughput when small (docs/footprint.md: at max_batch 2, 9% against none)."""
        if self.fixed_batch is None and self._batch_buf is None:
            self.capacity = max(1, min(self.capacity, rows))
        return self.capacity

    def models(self) -> list:
        """The sessions this worker runs on: the model, and its spinning twin when there is one."""
        return [self.model] if self._twin is None else [self.model, self._twin]

    def release_sessions(self) -> None:
        """Free the twin this worker made (the model itself belongs to whoever loaded it)."""
        if self._twin is not None:
            self._twin.close()

    # --- event-loop side -------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"edgeship-infer-{self.name}", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the model's ``queue_size`` places for the life of a request."""
        if self._closing:
            raise Overloaded("the server is shutting down; retry on another instance", self.config.retry_after_s)
        if self.pending >= self.config.queue_size:
            self.metrics.rejected.inc()
            raise Overloaded(
                f"model {self.name!r} has {self.pending} requests in flight (queue size "
                f"{self.config.queue_size}); retry after {self.config.retry_after_s} s",
                self.config.retry_after_s,
            )
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def submit(self, prepare: Prepare) -> tuple[Any, dict]:
        """Run ``prepare`` in the decode pool, then the model in a batch; returns (answer, timing_ms)."""
        if self._thread is None:  # an app used without its lifespan (tests with ASGITransport)
            self.start()
        loop = asyncio.get_running_loop()
        job = _Job(prepare, loop.create_future(), loop, time.perf_counter())
        if self.activity is not None:  # from now until the answer, this request has work on the cores
            self.activity.enter()
            job.fut.add_done_callback(lambda _: self.activity.leave())
        job.streaming = job.t_submit - self._last_submit < STREAM_GAP_S
        self._last_submit = job.t_submit
        if self._slots is None or self._slots[0] is not loop:  # an app run again on a new loop (tests)
            self._slots = (loop, asyncio.Semaphore(self.in_flight))
        slots = self._slots[1]
        await slots.acquire()  # the wait for a slot counts as queueing (t_submit is before it)
        job.slot = slots
        try:
            with self._cv:
                self._preparing += 1
            try:
                self.prep_pool.submit(self._prepare, job)
            except RuntimeError:  # the pool is shut down
                with self._cv:
                    self._preparing -= 1
                job.fut.cancel()
                raise Overloaded("the server is shutting down", self.config.retry_after_s) from None
            return await job.fut
        finally:
            _free_slot(job)

    def close(self) -> None:
        """Refuse new requests; what is admitted still runs."""
        self._closing = True

    async def drain(self, timeout: float) -> bool:
        """Wait until every admitted request is answered (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.pending == 0

    def stop(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- decode pool -------------------------------------------------------------------------

    def _prepare(self, job: _Job) -> None:
        t0 = time.perf_counter()
        try:
            job.x, job.finish, job.timing = job.prepare()
            job.timing["queue"] = (t0 - job.t_submit) * 1e3  # waiting for a decode thread
            self.metrics.preprocess.observe(sum(job.timing.get(k, 0.0) for k in ("decode", "preprocess")) / 1e3)
        except BaseException as exc:  # noqa: BLE001  every failure goes back to the request
            # A client's bad upload must not stay in memory: the locals of the frames the error
            # passed through (the body, the decoded picture) are dropped now, and this frame lets
            # go of the future, else exc -> traceback -> this frame -> job -> future -> exc is a
            # cycle that holds them until the cyclic GC happens to run (measured: a server fed
            # truncated 16-bit PNGs grew by 500 MB before it did).
            traceback.clear_frames(exc.__traceback__)
            if self.stats is not None:
                self.stats.request(False, time.perf_counter() - job.t_submit)
            fut, loop = job.fut, job.loop
            del job
            with self._cv:
                self._preparing -= 1
                self._cv.notify()
            loop.call_soon_threadsafe(_set, fut, None, exc)
            del fut
            return
        job.t_enqueued = time.perf_counter()
        with self._cv:
            self._preparing -= 1
            gone = self._exited
            inline = not (gone or self._running or self._queue or self._preparing or self._stopping)
            if inline:
                self._running = True
            elif not gone:
                self._queue.append(job)
                self._cv.notify()
        if gone:  # admitted before a swap, and held up (a slow upload) past its drain timeout
            err = Overloaded(f"model {self.name!r} was replaced while this request was held up; retry",
                             self.config.retry_after_s)
            job.loop.call_soon_threadsafe(_set, job.fut, None, err)
        elif inline:
            self._execute_and_release([job], twin=job.streaming)

    # --- inference thread --------------------------------------------------------------------

    def _compatible(self, a: _Job, b: _Job) -> bool:
        return a.x.shape[1:] == b.x.shape[1:] and a.x.dtype == b.x.dtype

    def _next_batch(self) -> list[_Job] | None:
        with self._cv:
            while not self._queue or self._running:
                if self._stopping and self._preparing == 0 and not self._queue:
                    self._exited = True
                    return None
                self._cv.wait()
            self._running = True
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            deadline = first.t_enqueued + self._max_wait
            while rows < self.capacity:
                if self._queue:
                    nxt = self._queue[0]
                    if not self._compatible(first, nxt) or rows + nxt.rows > self.capacity:
                        break
                    batch.append(self._queue.popleft())
                    rows += nxt.rows
                    continue
                # Wait only for requests already being decoded: a lone request never waits.
                remaining = deadline - time.perf_counter()
                if self._preparing == 0 or remaining <= 0:
                    break
                self._cv.wait(remaining)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute_and_release(batch)

    def _execute_and_release(self, batch: list[_Job], twin: bool = False) -> None:
        """Run ``batch``, free the model, then answer: a client that hears back finds the model idle."""
        answers: list[tuple[_Job, Any, BaseException | None]] = []
        # The rows go into this batch's input now: the next batch may be decoded while this one runs.
        batch[0].loop.call_soon_threadsafe(_free_slots, batch)
        try:
            answers = self._execute(batch, self._twin if twin and self._twin is not None else self.model)
        except BaseException as exc:  # noqa: BLE001  never let the thread die
            log.error("inference error", exc_info=exc)
            answers = [(job, None, exc) for job in batch]
        finally:
            with self._cv:
                self._running = False
                if self._queue or self._stopping:  # else the inference thread has nothing to do
                    self._cv.notify()
            for job, result, error in answers:
                job.loop.call_soon_threadsafe(_set, job.fut, result, error)

    def _batch_input(self, batch: list[_Job], rows: int) -> np.ndarray:
        """Where a batch's rows are gathered: one buffer of ``capacity`` rows, made at the first batch and
        reused (a new array per batch, of a size that changes with the load, left the allocator holding
        several). Only the thread running the model touches it, one batch at a time."""
        first = batch[0].x
        buf = self._batch_buf
        if buf is None or buf.shape[1:] != first.shape[1:] or buf.dtype != first.dtype:
            buf = self._batch_buf = np.empty((self.capacity, *first.shape[1:]), dtype=first.dtype)
        return buf[:rows]

    def _execute(self, batch: list[_Job], model: Any) -> list[tuple[_Job, Any, BaseException | None]]:
        """Run ``model`` (the model or its twin) on ``batch``; returns each job's (job, answer, error)."""
        t0 = time.perf_counter()
        rows = sum(j.rows for j in batch)
        x = batch[0].x if len(batch) == 1 else np.concatenate([j.x for j in batch], out=self._batch_input(batch, rows))
        if len(batch) > 1:  # each job's rows now live in the batch: its own copy can go
            offset = 0
            for job in batch:
                job.x, offset = x[offset : offset + job.rows], offset + job.rows
        if self.fixed_batch and rows < self.fixed_batch:  # a fixed-batch graph: pad, then drop the padding
            x = np.concatenate([x, np.zeros((self.fixed_batch - rows, *x.shape[1:]), dtype=x.dtype)])
        try:
            outputs = model.run(x)
        except Exception as exc:
            if len(batch) > 1:  # one bad input must not fail its neighbours: run each alone
                return [answer for job in batch for answer in self._execute([job], model)]
            if self.stats is not None:
                self.stats.request(False, time.perf_counter() - batch[0].t_submit)
            return [(batch[0], None, exc)]
        t1 = time.perf_counter()
        infer_ms = (t1 - t0) * 1e3
        if self.shadow is not None:  # never blocks: a busy canary drops the sample
            self.shadow.offer(x[:rows])
        self.metrics.inference.observe(t1 - t0)
        self.metrics.batch_size.observe(rows)
        if self.stats is not None:
            self.stats.execution(rows, t1 - t0)
        offset = 0
        answers: list[tuple[_Job, Any, BaseException | None]] = []
        for job in batch:
            n = job.rows
            mine = [o[offset : offset + n] if getattr(o, "ndim", 0) and o.shape[0] == x.shape[0] else o for o in outputs]
            offset += n
            wait = (t0 - job.t_enqueued) * 1e3
            self.metrics.queue_wait.observe((wait + job.timing["queue"]) / 1e3)
            job.timing["queue"] += wait
            job.timing["infer"] = infer_ms
            job.timing["batch_size"] = rows
            t2 = time.perf_counter()
            error: BaseException | None = None
            try:
                result = job.finish(mine)
            except Exception as err:  # noqa: BLE001
                result, error = None, err
            t3 = time.perf_counter()
            job.timing["postprocess"] = (t3 - t2) * 1e3
            if self.stats is not None:
                self.stats.request(error is None, t3 - job.t_submit, n, job.timing)
            answers.append((job, (result, job.timing), error))
        return answers
