"""Updates inside the server: the agent in a thread, a shadow canary on live traffic, the hot swap.

>>> ota = ServerOTA(state, Store(dir), AgentConfig(url), root=root_bytes)   # edgeship serve --ota URL
>>> ota.start(loop)            # recovers, then polls; every transition is one JSON log line

The canary shadows live requests: every request is answered by the committed model, and (up to
``shadow_share`` of batches, one at a time, dropped when the shadow thread is busy) the same input
tensor is also run on the committed and the candidate model, in alternating order on one thread.
Top-1 agreement needs both answers to the same input, which only shadowing gives; a candidate that
answers wrongly never reaches a client; and paired runs on one thread compare latency under the
same load. The cost: up to two extra runs per sampled request, on a spare thread, while a canary runs.

The swap: the candidate (already loaded and golden-checked) gets its own worker; the model table
entry is replaced on the event loop (requests look their model up once, so in-flight ones finish on
the old worker); the old worker drains, stops, and its session is freed.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import logging
import queue
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..ota.agent import Agent, AgentConfig
from ..ota.gate import CanaryConfig, GateFailed, judge, top1
from ..ota.state import REST, ModelRecord, UpdateState
from ..ota.store import Store
from ..runtime.model import Model

log = logging.getLogger("edgeship.ota")


class Shadow:
    """Runs sampled live inputs on committed and candidate models; counts agreement, errors, latency."""

    def __init__(self, committed: Model, candidate: Model, cfg: CanaryConfig):
        self.committed, self.candidate, self.cfg = committed, candidate, cfg
        self.samples = self.agree = self.errors = 0
        self.cand_ms: list[float] = []
        self.base_ms: list[float] = []
        self._q: queue.Queue = queue.Queue(maxsize=1)
        self._rng = random.Random()
        self._stop = False
        self._flip = False
        self._thread = threading.Thread(target=self._run, name="edgeship-canary", daemon=True)
        self._thread.start()

    def offer(self, x: np.ndarray) -> None:
        if self._rng.random() < self.cfg.shadow_share:
            try:
                self._q.put_nowait(np.array(x, copy=True))
            except queue.Full:
                pass

    def _time(self, model: Model, x: np.ndarray) -> tuple[Any, float]:
        t0 = time.perf_counter()
        out = model.run(x, self._sessions[id(model)])
        return out, (time.perf_counter() - t0) * 1e3

    def _run(self) -> None:
        import os

        from ..runtime.session import RuntimeConfig

        # Serving comes first: this thread runs at the lowest priority, on sessions of its own with one
        # thread each (no ONNX Runtime pool competing with the serving session's). Measured at 20
        # requests/s on 2 cores: shadowing on the serving sessions at normal priority put the p99 of
        # the 10 s around the swap at 4.5x the steady p99.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (OSError, AttributeError):
            pass
        one = RuntimeConfig(intra_op_threads=1, allow_spinning=False)
        self._sessions = {id(self.committed): self.committed.twin_session(one),
                          id(self.candidate): self.candidate.twin_session(one)}
        while not self._stop:
            try:
                x = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            self._flip = not self._flip
            try:
                order = [self.committed, self.candidate][:: -1 if self._flip else 1]
                results = {}
                failed = False
                for model in order:
                    try:
                        results[id(model)] = self._time(model, x)
                    except Exception:  # noqa: BLE001  a candidate that raises is counted
                        if model is self.committed:
                            raise
                        failed = True
                base, base_ms = results[id(self.committed)]
                self.samples += 1
                self.base_ms.append(base_ms)
                if failed:
                    self.errors += 1
                    continue
                cand, cand_ms = results[id(self.candidate)]
                self.cand_ms.append(cand_ms)
                a, b = top1(cand), top1(base)
                if a is not None and b is not None and a.shape == b.shape:
                    self.agree += int(np.mean(a == b) >= 0.5)
            except Exception:  # noqa: BLE001  the committed model failing is not the candidate's fault
                log.exception("canary sample failed")

    def verdict(self) -> tuple[bool, str]:
        return judge(self.cfg, self.samples, self.agree, self.errors, self.cand_ms, self.base_ms)

    def hopeless(self) -> bool:
        """Agreement or errors can no longer pass, whatever the remaining samples say."""
        n = self.cfg.min_samples
        return (self.samples - self.agree - self.errors > (1 - self.cfg.min_top1_agreement) * n
                or self.errors > self.cfg.max_error_rate * n)

    def stop(self) -> None:
        self._stop = True


def warm_up(model: Model, extra_sessions: list, runs: int = 3) -> None:
    """First runs of a session allocate its buffers: do them before requests arrive, on every session."""
    golden = model.bundle.golden()
    if golden is not None:
        x = golden[0]
    else:
        x = np.zeros([d if isinstance(d, int) else 1 for d in model.input_shape], dtype=model.input_dtype)
    for session in [None, *[s for s in extra_sessions if s is not None]]:
        for _ in range(runs):
            model.run(x, session)


class ServerGate:
    """The gate of a server: load beside the serving model, shadow canary, hot swap at commit."""

    def __init__(self, ota: "ServerOTA"):
        self.ota = ota
        self.candidates: dict[str, Model] = {}
        self.shadows: dict[str, Shadow] = {}

    def load(self, name: str, candidate: Path, committed: Path | None) -> str:
        from .config import runtime_config

        try:
            model = Model.load(candidate, runtime_config(self.ota.state.config))
            check = model.check_golden()
        except Exception as exc:  # noqa: BLE001
            raise GateFailed(f"the candidate does not load: {exc}"[:400]) from exc
        if check is not None and not check.ok:
            raise GateFailed(f"golden check failed: output differs by {check.max_abs_error:.3g} ({check.tolerance})")
        if model.preprocessor is not None:
            model.preprocessor.max_pixels = self.ota.state.config.max_pixels
        self.candidates[name] = model
        return "golden check passed" + (f" (max error {check.max_abs_error:.2e})" if check else "")

    def canary(self, name: str) -> str:
        cfg = self.ota.config.canary
        served = self.ota.state.models[name]
        shadow = self.shadows[name] = Shadow(served.model, self.candidates[name], cfg)
        served.worker.shadow = shadow
        deadline = time.monotonic() + cfg.max_duration_s
        try:
            while time.monotonic() < deadline and shadow.samples < cfg.min_samples and not shadow.hopeless():
                time.sleep(0.05)
        finally:
            served.worker.shadow = None
            shadow.stop()
        ok, summary = shadow.verdict()
        if shadow.samples < cfg.min_samples and ok and not shadow.hopeless():
            summary += f" (fewer than {cfg.min_samples} in {cfg.max_duration_s:.0f} s: committed on the golden check)"
        if not ok or shadow.hopeless():
            raise GateFailed(f"canary failed on live traffic: {summary}")
        return summary

    def commit(self, name: str, candidate: Path) -> None:
        self.ota.swap(name, self.candidates.pop(name))

    def abort(self, name: str) -> None:
        shadow = self.shadows.pop(name, None)
        if shadow is not None:
            shadow.stop()
        if self.candidates.pop(name, None) is not None:
            gc.collect()


class ServerOTA:
    def __init__(self, state, store: Store, config: AgentConfig, root: bytes | None = None):
        self.state = state
        self.store = store
        self.config = config
        self.gate = ServerGate(self)
        self.agent = Agent(store, config, root, gate=self.gate)
        self.lock = threading.Lock()  # the agent loop and admin calls take turns
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.history: collections.deque = collections.deque(maxlen=50)
        self._metrics()
        store.listeners.append(self._on_transition)

    # --- metrics ---------------------------------------------------------------------------------

    def _metrics(self) -> None:
        from prometheus_client import Counter, Enum

        r = self.state.metrics.registry
        self.m_state = Enum("edgeship_update_state", "Update state of each model", ["model"],
                            states=[s.value for s in UpdateState], registry=r)
        self.m_result = Enum("edgeship_update_last_result", "Result of the last update of each model", ["model"],
                             states=["none", "installed", "committed", "rolled_back", "aborted", "committing",
                                     "rolling_back", "canary_passed"], registry=r)
        self.m_rollbacks = Counter("edgeship_update_rollbacks", "Updates rolled back", ["model"], registry=r)
        for name in self.state.models:
            rec = self.store.record(name)
            self.m_state.labels(name).state(rec.state.value)
            self.m_result.labels(name).state((rec.last_result or {}).get("result", "none"))

    def _on_transition(self, old: ModelRecord, new: ModelRecord) -> None:
        self.m_state.labels(new.model).state(new.state.value)
        self.m_result.labels(new.model).state((new.last_result or {}).get("result", "none"))
        if new.state is UpdateState.FAILED and new.rollbacks > old.rollbacks:
            self.m_rollbacks.labels(new.model).inc()
        self.history.append({"model": new.model, "from": old.state.value, "to": new.state.value,
                             "at": new.updated})
        if new.state in REST and new.committed is not None:
            served = self.state.models.get(new.model)
            if served is not None and served.model.bundle.manifest.version != new.committed.version:
                # the committed version changed without a gate swap (an admin rollback, a commit finished
                # after a restart): serve the committed one
                from .config import runtime_config

                model = Model.load(self.store.bundle_dir(new.model, new.committed), runtime_config(self.state.config))
                self.swap(new.model, model)

    # --- the swap --------------------------------------------------------------------------------

    def call_soon(self, coro) -> Any:
        if self.loop is None:
            raise RuntimeError("the server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def swap(self, name: str, model: Model) -> None:
        """Serve ``model`` as ``name``: its worker (and sessions) are built here, off the event loop."""
        from .app import ServedModel
        from .batching import ModelWorker

        state = self.state
        if model.preprocessor is not None:
            model.preprocessor.max_pixels = state.config.max_pixels
        metrics = state.metrics.for_model(model)
        worker = ModelWorker(model, state.config, metrics, state.prep_pool)
        warm_up(model, [getattr(worker, "_lone_session", None)])
        worker.start()
        self.call_soon(self._switch(name, ServedModel(model, worker, metrics)))

    async def _switch(self, name: str, served) -> None:
        state = self.state
        old = state.models[name]
        m_old, m_new = old.model.bundle.manifest, served.model.bundle.manifest
        state.models[name] = served  # one assignment on the event loop: later requests get the new model
        if (m_old.version, m_old.files.get(m_old.model)) != (m_new.version, m_new.files.get(m_new.model)):
            try:
                state.metrics.model_info.remove(name, m_old.version, m_old.task.value, m_old.format.value,
                                                m_old.files.get(m_old.model, ""))
            except KeyError:
                pass
        old.worker.close()
        drained = await old.worker.drain(state.config.shutdown_timeout_s)  # in-flight requests finish on it
        old.worker.stop()
        log.info(json.dumps({"event": "ota_swap", "model": name, "from": m_old.version, "to": m_new.version,
                             "drained": drained}))
        del old
        await asyncio.to_thread(gc.collect)  # the old sessions' memory goes back now, not at some later GC

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._thread = threading.Thread(target=self._run, name="edgeship-ota-agent", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = random.Random()
        with self.lock:
            for name in self.agent.models():
                try:
                    self.agent.recover(name)
                except Exception:  # noqa: BLE001
                    log.exception("recovery of %s failed", name)
        delay = 0.5
        while not self._stop.wait(delay):
            self.check_all()
            delay = self.config.next_delay(rng)

    def check_all(self) -> dict[str, str]:
        with self.lock:
            return {name: self.agent.check_logged(name) for name in self.agent.models()}

    def stop(self) -> None:
        self._stop.set()

    def card(self, name: str) -> dict[str, Any]:
        rec = self.store.record(name)
        ver = lambda r: r.version if r else None  # noqa: E731
        return {"versions": {"committed": ver(rec.committed), "previous": ver(rec.previous),
                             "candidate": ver(rec.candidate), "failed": sorted(rec.failed), "pinned": rec.pinned},
                "update": {"state": rec.state.value, "attempts": rec.attempts, "rollbacks": rec.rollbacks,
                           "last_result": rec.last_result, "last_check": self.agent.last_check.get(name)}}
