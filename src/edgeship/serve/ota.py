"""Updates inside the server: the agent in a thread, a shadow canary on live traffic, the hot swap.

>>> ota = ServerOTA(state, Store(dir), AgentConfig(url), root=root_bytes)   # edgeship serve --ota URL
>>> ota.start(loop)            # recovers, then polls; every transition is one JSON log line

The canary shadows live requests: every request is answered by the committed model, and (up to
``shadow_share`` of batches, one at a time, dropped when the shadow thread is busy) the same input
tensor is also run on the committed and the candidate model, in alternating order on one thread.
Top-1 agreement needs both answers to the same input, which only shadowing gives; a candidate that
answers wrongly never reaches a client; and paired runs on one thread compare latency under the
same load. The cost: up to two extra runs per sampled request, on a spare thread, while a canary runs.

The swap is the server's own (``ServerState.swap``): the candidate's worker and sessions are built
and warmed off the event loop, the name switches in one assignment on it (in-flight requests finish
on the old worker), the old worker drains and its sessions are freed.
"""

from __future__ import annotations

import asyncio
import collections
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
        # sessions of its own, one thread each, made here at normal priority (a session built at nice
        # 10 on a busy board took seconds); a shadow run never holds the serving session's thread pool
        self._shadows = {id(m): m.derive(intra_op_threads=1, allow_spinning=False) for m in (committed, candidate)}
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
        out = self._shadows[id(model)].run(x)
        return out, (time.perf_counter() - t0) * 1e3

    def _run(self) -> None:
        import os

        # Serving comes first: shadow runs go at nice 10, behind requests (nice 19 starved the canary
        # on a board busy with other work: no samples in 20 s). The cost: a second copy of both
        # models while the canary runs.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        try:
            self._loop()
        finally:
            for m in self._shadows.values():
                m.close()

    def _loop(self) -> None:
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

    def stop(self, wait_s: float = 0.0) -> None:
        """Stop sampling; the thread closes its sessions after its current run. The gate does not wait for
        that (the thread runs at nice 10: on a busy board its last run can take long); a bench does."""
        self._stop = True
        if wait_s:
            self._thread.join(wait_s)


class ServerGate:
    """The gate of a server: load beside the serving model, shadow canary, hot swap at commit."""

    def __init__(self, ota: "ServerOTA"):
        self.ota = ota
        self.candidates: dict[str, Model] = {}
        self.shadows: dict[str, Shadow] = {}

    def load(self, name: str, candidate: Path, committed: Path | None) -> str:
        current = self.ota.state.lookup(name).model
        try:  # the serving model's settings carry over (threads, backend, pixel limit)
            model = Model.load(candidate, current.config, max_pixels=current.max_pixels)
            check = model.check_golden()
        except Exception as exc:  # noqa: BLE001
            raise GateFailed(f"the candidate does not load: {exc}"[:400]) from exc
        if check is not None and not check.ok:
            raise GateFailed(f"golden check failed: output differs by {check.max_abs_error:.3g} ({check.tolerance})")
        self.candidates[name] = model
        return "golden check passed" + (f" (max error {check.max_abs_error:.2e})" if check else "")

    def canary(self, name: str) -> str:
        cfg = self.ota.config.canary
        served = self.ota.state.models[name]
        try:
            shadow = self.shadows[name] = Shadow(served.model, self.candidates[name], cfg)
        except Exception as exc:  # noqa: BLE001  no canary is a failed canary, never a pass
            raise GateFailed(f"the canary could not start: {exc}"[:300]) from exc
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
        model = self.candidates.pop(name)
        state = self.ota.state
        state.primary[name] = candidate
        if name in state.held:  # e.g. the governor's lighter variant: it swaps to primary when it lets go
            model.close()
            log.info(json.dumps({"event": "ota_commit_held", "model": name, "held_by": state.held[name]}))
            return
        try:
            result = self.ota.call_soon(self.ota.state.swap(name, model))  # warm, check, switch, drain, free
        except BaseException:
            model.close()
            raise
        log.info(json.dumps({"event": "ota_swap", "model": name, "from": result.old_version,
                             "to": result.new_version, "warmup_ms": round(result.warmup_ms, 1),
                             "drain_ms": round(result.drain_ms, 1), "drained": result.drained}))

    def abort(self, name: str) -> None:
        shadow = self.shadows.pop(name, None)
        if shadow is not None:
            shadow.stop()
        model = self.candidates.pop(name, None)
        if model is not None:
            model.close()


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
            committed_dir = self.store.bundle_dir(new.model, new.committed)
            if served is not None:
                self.state.primary[new.model] = committed_dir
            if (served is not None and new.model not in self.state.held
                    and served.model.bundle.manifest.version != new.committed.version):
                # the committed version changed without a gate swap (an admin rollback, a commit finished
                # after a restart): serve the committed one
                current = served.model
                model = Model.load(committed_dir, current.config,
                                   max_pixels=current.max_pixels)
                try:
                    self.call_soon(self.state.swap(new.model, model))
                except BaseException:
                    model.close()
                    raise

    # --- the swap --------------------------------------------------------------------------------

    def call_soon(self, coro) -> Any:
        if self.loop is None:
            raise RuntimeError("the server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

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
