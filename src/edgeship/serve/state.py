"""What the routes share, and the live swap of the model a name serves.

>>> state = app.state.edgeship
>>> with state.admit("mobilenet") as served:         # look up and take a queue place, in one step
...     answer, timing = await served.worker.submit(job)
>>> new = await state.load_for("mobilenet", "mobilenet-v4/")   # the serving model's settings
>>> await state.swap("mobilenet", new)                # warm, check, switch, drain, free
SwapResult(name='mobilenet', old_version='3', new_version='4', warmup_ms=41.2, drain_ms=3.1, ...)
>>> await state.reconfigure("mobilenet", intra_op_threads=1)   # the same model, fewer threads

A swap never fails a request: the new model gets its worker (and its spinning twin), both sessions
pass the golden check and are warm before any request reaches them; then the name points at the
new worker in one assignment on the event loop. A request looks its model up once, when it is
admitted, so what is in flight finishes on the old worker, which is then drained, stopped and
its sessions freed. A new model that fails its check is refused with SwapError, and the old one
keeps serving as if nothing had happened.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from ..errors import SwapError
from ..runtime.model import Model
from .batching import ModelWorker
from .errors import ApiError
from .health import check_model

log = logging.getLogger("edgeship.serve")

SWAP_HISTORY = 20  # swaps remembered per model, for GET /v1/models/{name}
# Golden checks per session before the switch: the first run of a session pays its allocations
# and thread-pool start; the second is what a request will see.
WARM_RUNS = 2


@dataclass
class ServedModel:
    """The model a name serves now, with its worker; replaced whole by a swap, never changed."""

    model: Model
    worker: ModelWorker
    metrics: Any  # ModelMetrics, shared by every model this name serves over time
    name: str = ""
    since: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.name = self.name or self.model.name


@dataclass(frozen=True)
class SwapResult:
    """What one swap did. ``drained`` is False when requests were still running at the timeout."""

    name: str
    old_version: str
    new_version: str
    old_backend: dict
    new_backend: dict
    warmup_ms: float  # building the worker (and twin session) and passing the checks, off the loop
    drain_ms: float  # from the switch until the last request on the old worker was answered
    drained: bool
    at: float  # wall-clock time of the switch

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class ServerState:
    """What the routers share: the models, the config, metrics, health and the optional LLM."""

    models: dict[str, ServedModel]
    config: Any  # ServeConfig
    metrics: Any  # ServeMetrics
    prep_pool: Any
    health: Any  # HealthChecker
    llm: Any = None
    swaps: dict[str, collections.deque] = field(default_factory=dict)
    # What each name serves when nothing holds it back: the bundle given at start, then each version
    # an update commits. A holder (the thermal governor on a lighter variant) puts its reason in
    # ``held``; an update then only moves ``primary``, and the holder swaps back to it when it lets go.
    primary: dict[str, Any] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)
    closing: bool = False
    memory_plan: Any = None  # MemoryPlan made at start (serve/budget.py)
    memory_budget: Any = None  # Budget it was checked against
    memory_at_start: Any = None  # the process's memory measured when the plan was made
    memory_llm_loaded: Any = None  # RSS the LLM's load added, measured
    decoding: str | None = None  # what --decode-priority low set; None: the decode threads run at normal priority
    ota: Any = None  # the updater of serve/ota.py, when create_app is given one
    _retiring: dict[str, list[ModelWorker]] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def lookup(self, name: str) -> ServedModel:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ApiError(404, f"no vision model named {name!r} (loaded: {known})", "model_not_found") from None

    @contextlib.contextmanager
    def admit(self, name: str) -> Iterator[ServedModel]:
        """The model ``name`` serves now, holding one of its queue places until the block ends.

        Lookup and admission happen together, with no await between them: a request admitted
        here runs on the worker it looked up, even if a swap switches the name meanwhile.
        """
        served = self.lookup(name)
        with served.worker.admit():
            yield served

    def pending(self, name: str) -> int:
        """Requests admitted and not yet answered for ``name``, on its current and retiring workers."""
        served = self.models.get(name)
        now = served.worker.pending if served is not None else 0
        return now + sum(w.pending for w in self._retiring.get(name, ()))

    def history(self, name: str) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.swaps.get(name, ())]

    async def load_for(self, name: str, source: Any, verify: bool = True) -> Model:
        """A model loaded off the event loop with the settings of the one serving ``name`` now.

        The runtime config (threads, spinning, backend) and the picture limits carry over, so an
        update does not undo what ``reconfigure`` set. Not yet serving: give it to ``swap``.
        """
        current = self.lookup(name).model
        return await asyncio.to_thread(Model.load, source, current.config, verify, max_pixels=current.max_pixels,
                                       max_decode_bytes=current.max_decode_bytes)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def swap(self, name: str, model: Model, drain_timeout_s: float | None = None) -> SwapResult:
        """Serve ``model`` (loaded by the caller) under ``name`` from now on; see the module's docstring.

        On SwapError nothing changed; ``model`` stays open and is the caller's to close.
        """
        self.lookup(name)  # 404 for an unknown name, before waiting for the lock
        async with self._lock(name):
            return await self._swap_locked(name, model, drain_timeout_s)

    async def reconfigure(self, name: str, drain_timeout_s: float | None = None, **runtime_changes: Any) -> SwapResult:
        """Swap ``name`` to its own model with other runtime settings, e.g. ``intra_op_threads=1``."""
        self.lookup(name)
        async with self._lock(name):
            current = self.lookup(name).model
            model = await asyncio.to_thread(current.derive, **runtime_changes)
            try:
                return await self._swap_locked(name, model, drain_timeout_s)
            except BaseException:
                model.close()
                raise

    async def _swap_locked(self, name: str, model: Model, drain_timeout_s: float | None) -> SwapResult:
        old = self.lookup(name)
        if self.closing:
            raise SwapError(f"swap of {name!r} refused: the server is shutting down")
        if model is old.model:
            raise SwapError(f"swap of {name!r} refused: that Model object is the one serving already")
        t0 = time.perf_counter()
        worker = await asyncio.to_thread(self._build_worker, name, old, model)
        warmup_ms = (time.perf_counter() - t0) * 1e3
        if self.closing:  # the server began to shut down while the new sessions were warming
            await asyncio.to_thread(worker.release_sessions)
            raise SwapError(f"swap of {name!r} refused: the server is shutting down")
        worker.start()
        new = ServedModel(model, worker, old.metrics, name)
        self._retiring.setdefault(name, []).append(old.worker)
        self.models[name] = new  # the switch: every request admitted from here on gets the new worker
        old.worker.close()  # nothing can reach it now but what is admitted already
        switched_at = time.time()
        self.metrics.replace_model_info(name, old.model, model)
        t1 = time.perf_counter()
        timeout = self.config.shutdown_timeout_s if drain_timeout_s is None else drain_timeout_s
        drained = await old.worker.drain(timeout)
        drain_ms = (time.perf_counter() - t1) * 1e3
        if not drained:
            log.warning("swap of %r: %d requests still on the old worker after %.0f s; stopping it",
                        name, old.worker.pending, timeout)
        async with self.health.paused():  # no readiness check may be running the old model now
            await asyncio.to_thread(self._retire, old)
        self._retiring[name].remove(old.worker)
        result = SwapResult(name, old.model.version, model.version, old.model.describe(), model.describe(),
                            warmup_ms, drain_ms, drained, switched_at)
        self.swaps.setdefault(name, collections.deque(maxlen=SWAP_HISTORY)).append(result)
        log.info("swap %s", json.dumps({"event": "model_swapped", **result.as_dict()}, default=str))
        return result

    def _build_worker(self, name: str, old: ServedModel, model: Model) -> ModelWorker:
        """The new worker, its sessions checked and warm; runs off the event loop."""
        what = f"swap of {name!r} from version {old.model.version} to {model.version} refused"
        try:
            worker = ModelWorker(model, self.config, old.metrics, self.prep_pool, name=name,
                                 activity=old.worker.activity)
            worker.limit_rows(old.worker.capacity)  # the rows per run the name started with (--max-batch-mb)
        except Exception as exc:  # the twin session could not be made (memory, a bad file)
            raise SwapError(f"{what}: {exc}; version {old.model.version} keeps serving") from exc
        try:
            for m in worker.models():
                for _ in range(WARM_RUNS):
                    check = check_model(m)
                    if not check["ok"]:
                        reason = check.get("reason", "its check failed")
                        raise SwapError(f"{what}: {reason}; version {old.model.version} keeps serving")
        except BaseException:
            worker.release_sessions()
            raise
        return worker

    @staticmethod
    def _retire(old: ServedModel) -> None:
        old.worker.stop()
        old.worker.release_sessions()
        old.model.close()
