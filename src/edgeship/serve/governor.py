"""The thermal governor in the server process: what each step of the ladder does to the server.

>>> config = ServeConfig(target="rpi5", governor=GovernorConfig.for_limits(limits_for("rpi5")),
...                      variants={"effnet": "effnet-int8/"})
>>> app = create_app(["effnet/"], config)          # the governor polls the sensors once a second

Steps (see :mod:`edgeship.monitor.governor` for when each is taken):

- threads: every model is swapped, live, to a session with half the intra-op threads (at least 1);
- variant: every model that declares a lighter variant (``ServeConfig.variants``: its INT8 or
  pruned bundle) is swapped to it, with the threads of the step before; released, the primary
  bundle is loaded back;
- rate_limit: low-priority inference requests beyond ``low_priority_rps`` are answered 503 with
  ``Retry-After``. A request is low priority when it carries the RFC 9218 ``Priority`` header
  with an urgency of 5 to 7 (``Priority: u=7`` for background work); normal requests pass;
- stop: every inference request is answered 503 with ``Retry-After`` (the stop step's dwell) and
  readiness answers 503 ``not_ready``, so a load balancer sends traffic elsewhere. Liveness,
  metrics, the dashboard and ``/status`` keep answering.

Swaps use the server's live swap (``ServerState.swap`` / ``reconfigure``): no request fails.
Every decision is a JSON log line (logger ``edgeship.governor``) and counts in
``edgeship_governor_transitions_total{from,to,trigger}``; ``edgeship_governor_state`` is a state set.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
from typing import Any

from ..monitor.governor import Action, Decision, Governor, GovernorLoop, GovernorState
from ..monitor.thermal import read_sample
from .errors import ApiError, Overloaded, error_response

log = logging.getLogger("edgeship.governor")

# Inference routes the governor may refuse; everything else (health, metrics, dashboard) always answers.
INFERENCE = [
    (re.compile(r"^/v1/models/(?P<name>[^/]+)/predict$"), "/v1/models/{name}/predict"),
    (re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/[^/]+)?/infer$"), "/v2/models/{name}/infer"),
    (re.compile(r"^/v1/chat/completions$"), "/v1/chat/completions"),
    (re.compile(r"^/v1/completions$"), "/v1/completions"),
    (re.compile(r"^/v1/pipelines/describe$"), "/v1/pipelines/describe"),
]
READINESS = ("/health/ready", "/v2/health/ready")
_URGENCY = re.compile(r"(?:^|,)\s*u\s*=\s*(\d)\s*(?:[;,]|$)")
LOW_URGENCY = 5  # RFC 9218 urgencies 5, 6 and 7 are low priority (the default is 3)


def is_low_priority(headers: list[tuple[bytes, bytes]]) -> bool:
    """RFC 9218: ``Priority: u=N`` with N from 5 to 7 (``u=7``: background). Malformed: normal."""
    for key, value in headers:
        if key.lower() == b"priority":
            m = _URGENCY.search(value.decode("latin-1"))
            if m and LOW_URGENCY <= int(m.group(1)) <= 7:
                return True
    return False


class TokenBucket:
    """``rate`` requests a second, bursts of up to ``burst``; ``take`` returns 0 or the seconds to wait."""

    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.tokens = self.burst
        self.clock = clock
        self.t = clock()

    def take(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf


class ServerActuator:
    """The governor's hands in the server. Runs on the governor's thread; swaps run on the event loop."""

    def __init__(self, state, config, swap_timeout_s: float = 120.0):
        self.state = state
        self.config = config
        self.loop: asyncio.AbstractEventLoop | None = None
        self.swap_timeout_s = swap_timeout_s
        self.rate_limited = False
        self.stopped = False
        self.threads: int | None = config.threads  # what models run with now (None: one per core)
        self.on_variant: set[str] = set()
        self.bucket = TokenBucket(config.low_priority_rps)
        self._lock = threading.Lock()
        self.variants = dict(config.variants)

    # --- the steps ---------------------------------------------------------------------------

    def engage(self, action: Action) -> str:
        if action is Action.THREADS:
            base = self.config.threads or os.cpu_count() or 1
            self.threads = max(1, base // 2)
            return self._each_model(lambda name: self._reconfigure(name, self.threads),
                                    f"intra-op threads {base} -> {self.threads}")
        if action is Action.VARIANT:
            names = [n for n in self.state.models if n in self.variants]
            if not names:
                return "no model declares a lighter variant (serve --variant NAME=BUNDLE)"
            notes = [self._swap_to(n, self.variants[n], variant=True) for n in names]
            return "; ".join(notes)
        if action is Action.RATE_LIMIT:
            with self._lock:
                self.rate_limited = True
                self.bucket = TokenBucket(self.config.low_priority_rps)
            return f"low-priority requests limited to {self.config.low_priority_rps:g}/s"
        self.stopped = True
        return "refusing all inference requests (503), readiness not_ready"

    def release(self, action: Action) -> str:
        if action is Action.THREADS:
            self.threads = self.config.threads
            shown = self.threads or (os.cpu_count() or 1)
            return self._each_model(lambda name: self._reconfigure(name, self.threads), f"intra-op threads back to {shown}")
        if action is Action.VARIANT:
            names = sorted(self.on_variant)
            if not names:
                return "no model was on its variant"
            return "; ".join(self._swap_to(n, self.state.primary[n], variant=False) for n in names)
        if action is Action.RATE_LIMIT:
            self.rate_limited = False
            return "low-priority requests pass again"
        self.stopped = False
        return "accepting work again"

    # --- swaps -------------------------------------------------------------------------------

    def _run(self, coro) -> Any:
        if self.loop is None or self.loop.is_closed():
            coro.close()
            raise RuntimeError("the server's event loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.swap_timeout_s)

    def _each_model(self, fn, note: str) -> str:
        failed = []
        for name in list(self.state.models):
            try:
                fn(name)
            except Exception as exc:  # noqa: BLE001  one model's failure must not stop the others
                failed.append(f"{name}: {exc}")
        return note + (f" (failed: {'; '.join(failed)})" if failed else "")

    def _reconfigure(self, name: str, threads: int | None) -> None:
        self._run(self.state.reconfigure(name, intra_op_threads=threads))

    def _swap_to(self, name: str, source, variant: bool) -> str:
        from ..runtime.model import Model
        from .config import runtime_config

        runtime = runtime_config(self.config)
        if self.threads is not None:
            runtime = runtime.replace(intra_op_threads=self.threads)
        model = Model.load(source, runtime, max_pixels=self.config.max_pixels)
        try:
            result = self._run(self.state.swap(name, model))
        except BaseException:
            model.close()  # a refused swap leaves the new model to its caller
            raise
        (self.on_variant.add if variant else self.on_variant.discard)(name)
        if variant:  # an update that commits meanwhile waits for the step back (ServerState.held)
            self.state.held[name] = "the thermal governor serves its lighter variant"
        else:
            self.state.held.pop(name, None)
        return f"{name}: version {result.old_version} -> {result.new_version}"

    # --- admission ---------------------------------------------------------------------------

    def admit(self, low_priority: bool) -> tuple[str, float] | None:
        """None to let a request through, else (why, retry_after_s)."""
        if self.stopped:
            return "stopped", 0.0
        if self.rate_limited and low_priority:
            with self._lock:
                wait = self.bucket.take()
            if wait > 0:
                return "rate_limit", wait
        return None


class GovernorGate:
    """Pure ASGI middleware: refuses inference requests as the governor says; answers readiness when stopped."""

    def __init__(self, app, service: "GovernorService"):
        self.app = app
        self.service = service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        actuator = self.service.actuator
        if actuator.stopped and scope.get("method") == "GET" and path in READINESS:
            from starlette.responses import JSONResponse

            self.service.metrics.readiness.state("not_ready")
            scope["edgeship_endpoint"] = path  # for the request counter: this never reaches a route
            body: dict[str, Any] = {"status": "not_ready", "reasons": [self.service.stop_reason()]}
            if path.startswith("/v2"):
                body = {"ready": False, **body}
            return await JSONResponse(body, status_code=503)(scope, receive, send)
        if scope.get("method") == "POST":
            for pattern, template in INFERENCE:
                m = pattern.match(path)
                if m is None:
                    continue
                verdict = actuator.admit(is_low_priority(scope.get("headers", [])))
                if verdict is None:
                    break
                why, wait = verdict
                model = m.groupdict().get("name") or ""
                scope["edgeship_endpoint"] = template  # for the request counter: this never reaches a route
                scope.setdefault("path_params", {"name": model} if model else {})
                self.service.rejected.labels(why).inc()
                retry = self.service.retry_after(why, wait)
                err: ApiError = Overloaded(self.service.refusal(why, retry), retry)
                from starlette.requests import Request

                return await error_response(Request(scope), err)(scope, receive, send)
        return await self.app(scope, receive, send)


class GovernorService:
    """The governor, its loop, its actuator, its metrics: built by ``create_app`` when the config asks."""

    def __init__(self, state, config, limits, metrics, live=None):
        from prometheus_client import Counter, Enum, Gauge

        self.config = config
        self.metrics = metrics
        self.actuator = ServerActuator(state, config)
        r = metrics.registry
        self.transitions = Counter("edgeship_governor_transitions", "Thermal governor decisions",
                                   ["from", "to", "trigger"], registry=r)
        self.state_set = Enum("edgeship_governor_state", "The thermal governor's state (a state set)",
                              states=[s.value for s in GovernorState], registry=r)
        self.rejected = Counter("edgeship_governor_rejected", "Requests the governor refused with 503",
                                ["reason"], registry=r)
        self.forecast = Gauge("edgeship_thermal_headroom_forecast",
                              "Thermal headroom predicted 10 s ahead from the recent slope (governor)", registry=r)
        self.governor = Governor(config.governor, limits, self.actuator, on_decision=[self._count])
        self.forecast.set_function(lambda: self.governor.tracker.headroom(10.0) or 0.0)
        self.state_set.state(GovernorState.NORMAL.value)
        self.live = live
        self.loop = GovernorLoop(self.governor, read=lambda: read_sample(config.sensors_root), busy=self._busy)

    def _count(self, d: Decision) -> None:
        self.transitions.labels(d.before.value, d.after.value, d.trigger).inc()
        self.state_set.state(d.after.value)

    def _busy(self) -> bool:
        if self.live is not None and self.live.busy(2.0):
            return True
        return any(s.worker.pending for s in self.actuator.state.models.values())

    def retry_after(self, why: str, wait: float) -> int:
        if why == "stopped":
            stop = next((s for s in self.config.governor.steps if s.action is Action.STOP), None)
            return max(self.config.retry_after_s, int(stop.min_dwell_s) if stop else 30)
        return max(1, math.ceil(wait))

    def refusal(self, why: str, retry: int) -> str:
        if why == "stopped":
            return f"{self.stop_reason()}; retry after {retry} s"
        return (f"the device is hot: low-priority requests are limited to {self.config.low_priority_rps:g}/s; "
                f"retry after {retry} s")

    def stop_reason(self) -> str:
        temp = self.governor.tracker.latest
        shown = "" if temp is None else f" at {temp:.1f} C"
        return f"thermal governor: the device is too hot{shown}, the server stopped accepting work until it cools"

    def snapshot(self) -> dict[str, Any]:
        snap = self.governor.snapshot()
        snap["threads"] = self.actuator.threads
        snap["on_variant"] = sorted(self.actuator.on_variant)
        snap["rate_limited"] = self.actuator.rate_limited
        snap["stopped"] = self.actuator.stopped
        return snap

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.actuator.loop = loop
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()
