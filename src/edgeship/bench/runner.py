"""``edgeship bench``: measure bundles the way they will run on the device.

>>> report = bench_bundles(["effnet/", "effnet-int8/"], BenchConfig(batches=(1, 8), threads=2))
>>> report["results"][0]["batches"]["1"]["p50_ms"]

Per bundle: load time, first-inference time, latency mean/std/p50/p90/p95/p99 and throughput per
batch size, RSS added by the model and peak RSS; CPU temperature before and after, throttling and
energy per inference where the host exposes sensors ("not available" otherwise); optionally the
source PyTorch model timed beside it. The environment goes into the JSON.

Heat: temperature, actual clock and throttle flags are sampled in the background during the run
(:class:`edgeship.bench.heat.HeatSampler`); a run whose clock fell more than 5% or during which the
firmware throttled is marked thermally unstable. ``duration_s`` runs each batch size for that long
instead of ``runs`` times (a sustained run) and records the throughput of every ``window_s`` with
the temperature and clock of that window.
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..bundle import Bundle, StageName, open_bundle
from ..errors import BenchError, InputError
from ..runtime.model import Model
from ..util import rss as _rss
from .config import BenchConfig  # noqa: F401 - re-exported: the verb's config
from .env import environment
from .heat import HeatSampler
from .latency import LatencyStats, time_callable, time_for


class PeakRSS:
    """Samples this process's RSS every few milliseconds in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.005):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _celsius(reading) -> float | None:
    return None if reading is None else reading.celsius


def _throttling(status) -> str | None:
    """A short verdict: firmware flags where the board reports them, else the lowest CPU clock ratio."""
    if status.throttled_now is not None:
        return "throttled now" if status.throttled_now else "not throttled"
    ratio = status.min_cpu_ratio
    return None if ratio is None else f"lowest CPU clock at {ratio:.0%} of its maximum"


def _input_for(model: Model, batch: int) -> np.ndarray:
    """The bundle's golden input when it has one (real data), else seeded random data."""
    golden = model.golden()
    if golden is not None:
        x = golden[0][:1]
    else:
        shape = [d if isinstance(d, int) else 1 for d in model.input_shape]
        shape[0] = 1
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return np.repeat(x, batch, axis=0).astype(model.input_dtype)


def _torch_timer(bundle: Bundle, threads: int | None) -> tuple[Callable[[np.ndarray], Any], str]:
    """The source PyTorch model of a bundle, rebuilt from its export provenance."""
    export = next((s for s in bundle.manifest.provenance if s.stage is StageName.EXPORT), None)
    source = export.params.get("source") if export else None
    if export is None or not source:
        raise BenchError(f"{bundle.name}: --vs-torch needs a bundle made by `edgeship export` (its source is unknown)")
    from .._deps import require

    torch = require("torch", "optimize", "--vs-torch")
    from ..optimize.models import resolve_model

    if threads:
        torch.set_num_threads(threads)
    module = resolve_model(source, weights=export.params.get("weights")).module

    def run(x: np.ndarray) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(x))

    return run, f"torch {torch.__version__} eager"


def bench_bundle(path: str | Path, cfg: BenchConfig, progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    from .. import monitor

    rss0 = _rss()
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        bundle = open_bundle(path)
        model = Model(bundle, cfg.session_config())
        load_ms = (time.perf_counter() - t0) * 1e3
        rss_loaded = _rss()
        x1 = _input_for(model, 1)
        t1 = time.perf_counter()
        model.run(x1)
        first_ms = (time.perf_counter() - t1) * 1e3
        temp_before = _celsius(monitor.cpu_temperature(cfg.sensors_root))
        heat = HeatSampler(cfg.sensors_root, cfg.heat_interval_s).start()
        batches: dict[str, Any] = {}
        try:
            for b in cfg.batches:
                if model.max_batch is not None and b != model.max_batch:
                    batches[str(b)] = {"skipped": f"the graph has a fixed batch of {model.max_batch}; export it without --static-batch"}
                    if progress:
                        progress(cfg.progress_units)
                    continue
                batches[str(b)] = _bench_batch(model, b, cfg, heat, progress)
        finally:
            heat.stop()
        temp_after = _celsius(monitor.cpu_temperature(cfg.sensors_root))
        throttling = _throttling(monitor.throttle_status(cfg.sensors_root))
    result: dict[str, Any] = {
        "bundle": str(path),
        "name": bundle.name,
        "version": bundle.manifest.version,
        "assumed": bundle.assumed,
        "model_bytes": bundle.model_path.stat().st_size,
        "load_ms": load_ms,
        "first_inference_ms": first_ms,
        "rss_added_bytes": rss_loaded - rss0,
        "peak_rss_bytes": peak.peak,
        "cpu_temp_c_before": temp_before,
        "cpu_temp_c_after": temp_after,
        "throttling": throttling,
        "heat": heat.summary(),
        "batches": batches,
        "runtime": model.describe(),  # engine, version, providers, threads, options actually used
        "runtime_line": model.describe_short(),
    }
    if cfg.vs_torch:
        result["torch"] = bench_torch(bundle, model, cfg, progress)
    return result


def _bench_batch(model: Model, b: int, cfg: BenchConfig, heat: HeatSampler, progress) -> dict[str, Any]:
    from .. import monitor

    x = _input_for(model, b)
    meter = monitor.EnergyMeter(cfg.sensors_root)
    meter.start()
    if cfg.duration_s is None:
        stats = time_callable(lambda: model.run(x), cfg.warmup, cfg.runs, b, progress)
        windows = None
    else:
        stats, windows = time_for(lambda: model.run(x), cfg.duration_s, cfg.warmup, b, cfg.window_s, progress)
        for w in windows:
            t0 = w.pop("start") - heat.started_at
            w.update(heat.series(t0, t0 + w["seconds"]))
    energy = meter.stop()
    entry = stats.to_dict()
    entry["energy_j_per_item"] = energy.joules / (stats.runs * b) if energy is not None else None
    entry["energy_source"] = f"{energy.source} ({energy.method})" if energy is not None else None
    if windows is not None:
        entry["duration_s"] = cfg.duration_s
        entry["fps_over_time"] = windows
    return entry


def bench_torch(bundle: Bundle, model: Model, cfg: BenchConfig, progress=None) -> dict[str, Any]:
    run, label = _torch_timer(bundle, cfg.threads)
    out: dict[str, Any] = {"backend": label, "batches": {}}
    for b in cfg.batches:
        if model.max_batch is not None and b != model.max_batch:
            if progress:
                progress(cfg.progress_units)
            continue
        x = _input_for(model, 1).astype(np.float32)
        x = np.repeat(x, b, axis=0)
        if cfg.duration_s is None:
            stats: LatencyStats = time_callable(functools.partial(run, x), cfg.warmup, cfg.runs, b, progress)
        else:
            stats, _ = time_for(functools.partial(run, x), cfg.duration_s, cfg.warmup, b, cfg.window_s, progress)
        out["batches"][str(b)] = stats.to_dict()
    return out


def bench_bundles(paths: Sequence[str | Path], cfg: BenchConfig, show_progress: bool = True) -> dict[str, Any]:
    """Benchmark bundles one after another in this process; returns the JSON-ready report."""
    if not paths:
        raise InputError("give at least one bundle")
    per = len(cfg.batches) * cfg.progress_units * (2 if cfg.vs_torch else 1)
    results = []
    if show_progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=True) as bar:
            for p in paths:
                task = bar.add_task(f"bench {Path(p).name}", total=per)
                results.append(bench_bundle(p, cfg, functools.partial(bar.advance, task)))
    else:
        results = [bench_bundle(p, cfg) for p in paths]
    return {
        "environment": environment(cfg.threads),
        "config": {"batches": list(cfg.batches), "threads": cfg.threads, "warmup": cfg.warmup, "runs": cfg.runs,
                   "duration_s": cfg.duration_s, "window_s": cfg.window_s, "heat_interval_s": cfg.heat_interval_s},
        "results": results,
    }
