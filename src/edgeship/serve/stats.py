"""Per-version request and run counters in the units of Triton's statistics extension (ns).

>>> stats = ModelStats("mobilenet").version("3")
>>> stats.execution(rows=4, infer_s=0.012)                   # the inference thread: one model run
>>> stats.request(True, 0.020, rows=1, timing_ms={"queue": 3.1, "decode": 1.2, "infer": 12.0})
>>> stats.to_json()["inference_stats"]["success"]
{'count': 1, 'ns': 20000000}

Kept by the model's worker (serve/batching.py) and answered by ``GET /v2/models/.../stats``
(serve/triton.py). Plain integers under a lock: a request adds a few of them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
              "cache_miss")


class VersionStats:
    """Triton's $model_stat of one model version; recorded from the worker's threads (hence the lock)."""

    def __init__(self, name: str, version: str):
        self.name, self.version = name, version
        self._lock = threading.Lock()
        self._d = {k: [0, 0] for k in _DURATIONS}  # count, ns
        self._batches: dict[int, list[int]] = {}  # batch size -> [count, ns of compute_infer]
        self.inference_count = self.execution_count = self.last_inference_ms = 0

    def execution(self, rows: int, infer_s: float) -> None:
        """One run of the model on ``rows`` rows."""
        with self._lock:
            self.execution_count += 1
            b = self._batches.setdefault(rows, [0, 0])
            b[0] += 1
            b[1] += int(infer_s * 1e9)

    def request(self, ok: bool, total_s: float, rows: int = 0, timing_ms: dict | None = None) -> None:
        """One request answered (``ok``) or failed, with its timing (ms, as the worker keeps it)."""
        with self._lock:
            self._add("success" if ok else "fail", total_s)
            if not ok:
                return
            t = timing_ms or {}
            self.inference_count += rows
            self.last_inference_ms = int(time.time() * 1000)
            self._add("queue", t.get("queue", 0.0) / 1e3)
            self._add("compute_input", (t.get("decode", 0.0) + t.get("preprocess", 0.0)) / 1e3)
            self._add("compute_infer", t.get("infer", 0.0) / 1e3)
            self._add("compute_output", t.get("postprocess", 0.0) / 1e3)

    def _add(self, key: str, seconds: float) -> None:
        d = self._d[key]
        d[0] += 1
        d[1] += max(0, int(seconds * 1e9))

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            duration = {k: {"count": c, "ns": ns} for k, (c, ns) in self._d.items()}
            batches = [{"batch_size": size, "compute_input": {"count": c, "ns": 0},
                        "compute_infer": {"count": c, "ns": ns}, "compute_output": {"count": c, "ns": 0}}
                       for size, (c, ns) in sorted(self._batches.items())]
            return {"name": self.name, "version": self.version, "last_inference": self.last_inference_ms,
                    "inference_count": self.inference_count, "execution_count": self.execution_count,
                    "inference_stats": duration, "batch_stats": batches, "memory_usage": []}


class ModelStats:
    """The statistics of every version a served name has run (a live swap starts a new version's)."""

    def __init__(self, name: str):
        self.name = name
        self._versions: dict[str, VersionStats] = {}
        self._lock = threading.Lock()

    def version(self, version: str) -> VersionStats:
        with self._lock:
            if version not in self._versions:
                self._versions[version] = VersionStats(self.name, version)
            return self._versions[version]

    def versions(self) -> list[VersionStats]:
        with self._lock:
            return list(self._versions.values())


__all__ = ["ModelStats", "VersionStats"]
