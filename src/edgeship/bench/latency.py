"""Time a callable: warm-up, then per-call wall-clock with percentiles.

>>> stats = time_callable(lambda: session.run(None, feed), warmup=10, runs=100, batch=1)
>>> stats.p50_ms, stats.throughput
(6.1, 163.9)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency over ``runs`` timed calls of ``batch`` items each (milliseconds)."""

    batch: int
    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput: float  # items per second, from the mean

    @classmethod
    def from_samples(cls, samples_ms: list[float] | np.ndarray, batch: int = 1) -> "LatencyStats":
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no samples")
        p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
        mean = float(a.mean())
        return cls(batch, int(a.size), mean, float(a.std()), float(a.min()), float(p50), float(p90), float(p95),
                   float(p99), float(a.max()), batch * 1e3 / mean if mean > 0 else float("inf"))

    def to_dict(self) -> dict:
        return asdict(self)


def time_callable(fn: Callable[[], object], warmup: int = 10, runs: int = 100, batch: int = 1,
                  progress: Callable[[int], None] | None = None) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed one by one."""
    for _ in range(warmup):
        fn()
    samples = np.empty(runs, dtype=np.float64)
    clock = time.perf_counter
    for i in range(runs):
        t0 = clock()
        fn()
        samples[i] = (clock() - t0) * 1e3
        if progress is not None:
            progress(1)
    return LatencyStats.from_samples(samples, batch)


def time_session(session, feed: dict, warmup: int = 10, runs: int = 100, batch: int = 1) -> LatencyStats:
    """Time an onnxruntime session on a fixed input feed."""
    names = [o.name for o in session.get_outputs()]
    return time_callable(lambda: session.run(names, feed), warmup, runs, batch)


def interleaved(fns: dict[str, Callable[[], object]], warmup: int = 10, runs: int = 100, batch: int = 1,
                rounds: int = 5) -> dict[str, LatencyStats]:
    """Time several callables side by side, alternating in rounds so drift on a shared machine
    (other processes, thermal state, frequency) falls on all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    per_round = max(1, runs // rounds)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    clock = time.perf_counter
    for _ in range(rounds):
        for key, fn in fns.items():
            for _ in range(per_round):
                t0 = clock()
                fn()
                samples[key].append((clock() - t0) * 1e3)
    return {k: LatencyStats.from_samples(v, batch) for k, v in samples.items()}


def time_for(fn: Callable[[], object], duration_s: float, warmup: int = 10, batch: int = 1,
             window_s: float = 1.0, progress: Callable[[float], None] | None = None,
             clock: Callable[[], float] = time.perf_counter) -> tuple[LatencyStats, list[dict]]:
    """Call ``fn`` for ``duration_s`` seconds (a sustained run); returns the latency stats and the
    throughput of each ``window_s`` window: ``[{"t_s": 0.0, "seconds": 1.0, "items_per_s": 161.2}, ...]``.

    ``t_s`` is measured from the start of the timed part, ``start`` is the window's ``clock()``
    reading (to match other samplers against); ``progress`` receives seconds elapsed.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    windows: list[dict] = []
    start = clock()
    w_start, w_items = start, 0
    deadline = start + duration_s
    now = start
    while now < deadline:
        t0 = clock()
        fn()
        now = clock()
        samples.append((now - t0) * 1e3)
        w_items += batch
        if now - w_start >= window_s or now >= deadline:
            windows.append({"t_s": w_start - start, "start": w_start, "seconds": now - w_start,
                            "items_per_s": w_items / (now - w_start) if now > w_start else 0.0})
            if progress is not None:
                progress(now - w_start)
            w_start, w_items = now, 0
    return LatencyStats.from_samples(samples, batch), windows
