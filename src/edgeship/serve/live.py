"""The server's live view: one point a second of latency, throughput, queue, heat and governor state.

>>> live = LiveStats(models=lambda: state.models, heat=lambda: read_sample(root))
>>> live.record("mobilenet", 0.012, 200)      # from the request middleware, on the event loop
>>> live.start()                              # a thread appends a point every interval_s
>>> live.snapshot(history=True)               # what GET /status answers (the dashboard, `edgeship monitor`)

Latency percentiles are exact, over the requests answered in the last ``window_s`` seconds (not
interpolated from histogram buckets). Points are kept for ``history`` intervals (10 minutes).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import numpy as np

from ..monitor.thermal import THROTTLE_FLAGS, Sample, ThermalStatus


def _model_card(name: str, served: Any) -> dict[str, Any]:
    model = served.model
    m = model.bundle.manifest
    describe = getattr(model, "describe", None)
    return {"name": name, "version": getattr(model, "version", None) or m.version, "task": m.task.value,
            "format": m.format.value, "pending": served.worker.pending,
            "backend": describe() if callable(describe) else None}


class LiveStats:
    """Records request latencies and samples the device once per ``interval_s`` in a daemon thread."""

    def __init__(self, models: Callable[[], dict], heat: Callable[[], Sample | None] = lambda: None,
                 governor: Callable[[], dict | None] = lambda: None, llm: Callable[[], dict | None] = lambda: None,
                 interval_s: float = 1.0, window_s: float = 5.0, history: int = 600, started: float | None = None,
                 limits: Any = None):
        self.models = models
        self.limits = limits  # monitor.thermal.ThermalLimits: status and headroom when the governor is off
        self.heat = heat
        self.governor = governor
        self.llm = llm
        self.interval_s = interval_s
        self.window_s = window_s
        self.started = started or time.time()
        self._requests: collections.deque[tuple[float, str, float, int]] = collections.deque(maxlen=20_000)
        self.points: collections.deque[dict[str, Any]] = collections.deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_tick = time.monotonic()
        self.seq = 0

    def record(self, model: str, seconds: float, status: int) -> None:
        """One answered request (called for every model route; cheap: an append under a lock)."""
        with self._lock:
            self._requests.append((time.monotonic(), model, seconds, status))

    def busy(self, window_s: float) -> bool:
        """Whether any model request was answered in the last ``window_s`` seconds."""
        with self._lock:
            return bool(self._requests) and self._requests[-1][0] > time.monotonic() - window_s

    def tick(self) -> dict[str, Any]:
        """Compute and keep one point (the thread calls this; tests may call it directly)."""
        now = time.monotonic()
        with self._lock:
            recent = [r for r in self._requests if r[0] > now - self.window_s]
            since = [r for r in recent if r[0] > self._last_tick]
        interval = max(now - self._last_tick, 1e-6)
        self._last_tick = now
        ok = [r[2] for r in recent if r[3] < 400]
        p50, p99 = (np.percentile(ok, [50, 99]) * 1e3).tolist() if ok else (None, None)
        try:
            served = self.models()
            queue = sum(s.worker.pending for s in served.values())
        except Exception:  # noqa: BLE001  a swap may replace the dict while we read it
            queue = None
        sample = self._safe(self.heat)
        gov = self._safe(self.governor)
        point = {
            "t": time.time(),
            "rps": sum(1 for r in since if r[3] < 400) / interval,
            "errors_per_s": sum(1 for r in since if r[3] >= 500) / interval,
            "p50_ms": p50,
            "p99_ms": p99,
            "queue": queue,
            "temp_c": None if sample is None else sample.temp_c,
            "clock_mhz": None if sample is None or sample.clock_khz is None else sample.clock_khz / 1000.0,
            "throttled": None if sample is None or sample.flags is None else sample.firmware_throttling,
            "governor": None if gov is None else gov["state"],
        }
        with self._lock:
            self.points.append(point)
            self.seq += 1
        return point

    @staticmethod
    def _safe(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception:  # noqa: BLE001  the live view never breaks the server
            return None

    def snapshot(self, history: bool = False) -> dict[str, Any]:
        """The latest point, the device, the governor, the models; with ``history`` every kept point."""
        with self._lock:
            points = list(self.points)
            seq = self.seq
        # Fresh, not the last tick's: a client polling once a second must see a change at once.
        sample, gov = self._safe(self.heat), self._safe(self.governor)
        try:
            models = [_model_card(name, s) for name, s in self.models().items()]
        except Exception:  # noqa: BLE001
            models = []
        llm = self._safe(self.llm)
        if llm:
            models.append(llm)
        device = None
        if sample is not None and (sample.temp_c, sample.clock_khz, sample.flags) != (None, None, None):
            device = {
                "temp_c": sample.temp_c, "source": sample.source,
                "clock_mhz": None if sample.clock_khz is None else sample.clock_khz / 1000.0,
                "clock_ratio": sample.clock_ratio,
                "flags": None if sample.flags is None else {f: f in sample.flags for f in (*THROTTLE_FLAGS, "under_voltage")},
            }
        thermal = None
        if gov is not None:
            thermal = gov.get("thermal")
        elif sample is not None and sample.temp_c is not None and self.limits is not None:
            status = self.limits.status_for(sample.temp_c)
            if sample.firmware_throttling:
                status = max(status, ThermalStatus.SEVERE)
            thermal = {"temp_c": sample.temp_c, "status": status.name.lower(),
                       "headroom": self.limits.headroom(sample.temp_c)}
        out: dict[str, Any] = {"seq": seq, "interval_s": self.interval_s, "window_s": self.window_s,
                               "uptime_s": time.time() - self.started, "now": points[-1] if points else None,
                               "device": device, "thermal": thermal, "governor": gov, "models": models}
        if history:
            out["history"] = points
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def start(self) -> "LiveStats":
        self.tick()
        self._thread = threading.Thread(target=self._run, name="edgeship-live", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
