"""Will this bundle fit a target device, and how fast might it run there? A PREDICTION.

>>> from edgeship.targets import fit
>>> p = fit("resnet18/", "rpi5")
>>> p.ram.fits, p.predicted_latency_ms          # {"4 GiB": True, "8 GiB": True}, e.g. 310.0
>>> p.calibration.efficiency                    # measured here: model FLOP/s / MatMul FLOP/s

How: the model runs here for real (a short ONNX Runtime loop) and so does one big MatMul. The
ratio of the model's achieved FLOP/s to the MatMul's is this model's efficiency on a CPU; the
prediction assumes the target's CPU reaches the same fraction of its catalog peak:
``latency = FLOPs / (catalog GFLOP/s x efficiency)``. RAM need is the model file (held while
loading) + the RSS the session added here + the RSS the first runs added (activations).
Every figure says whether it was measured here, comes from the catalog, or is predicted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import BenchError, InputError
from ..util import rss as _rss
from .catalog import CATALOG_SOURCE, Benchmark
from .presets import HOST, preset

GIB = 1 << 30
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
           "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


@dataclass(frozen=True)
class RamFit:
    model_file_bytes: int  # measured: the file on disk
    session_rss_bytes: int  # measured here: RSS added by creating the session
    activation_bytes: int  # measured here: RSS added by the first runs (arena, activations)
    need_bytes: int
    ram_bytes: dict[str, int]  # the target's RAM variants (catalog), or this host's (probe)
    fits: dict[str, bool]


@dataclass(frozen=True)
class Calibration:
    """Measured on this host, in this run."""

    host_cpu: str
    threads: Union[int, None]
    runs: int
    model_latency_ms: float  # median
    model_gflops: float  # model FLOPs / median latency
    matmul_gflops: float  # best of the MatMul runs
    matmul_size: int
    matmul_via: str  # "onnxruntime" or "numpy"
    efficiency: float


@dataclass(frozen=True)
class FitPrediction:
    """A PREDICTION for ``target``; ``calibration`` is measured here, ``catalog_*`` from the article."""

    target: str
    device_name: str
    model: str
    flops: int
    flops_source: str
    input_shapes: dict[str, list[int]]
    ram: RamFit
    calibration: Calibration
    catalog_cpu_gflops: Union[float, None]
    predicted_latency_ms: Union[float, None]
    latency_floor_ms: Union[float, None]  # at the accelerator's catalog peak, efficiency 1
    notes: tuple[str, ...]
    catalog_benchmarks: tuple[Benchmark, ...]
    kind: str = "PREDICTION"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, grouped by where each figure comes from."""
        from .._config import to_dict

        return {
            "kind": self.kind,
            "target": self.target,
            "device": self.device_name,
            "model": self.model,
            "predicted": {"latency_ms": self.predicted_latency_ms, "latency_floor_ms": self.latency_floor_ms,
                          "ram_fits": self.ram.fits, "ram_need_bytes": self.ram.need_bytes},
            "measured_on_this_host": {**to_dict(self.calibration), "model_file_bytes": self.ram.model_file_bytes,
                                      "session_rss_bytes": self.ram.session_rss_bytes,
                                      "activation_bytes": self.ram.activation_bytes},
            "model_cost": {"flops": self.flops, "source": self.flops_source, "input_shapes": self.input_shapes},
            "catalog": {"source": CATALOG_SOURCE, "cpu_gflops": self.catalog_cpu_gflops, "ram_bytes": self.ram.ram_bytes,
                        "benchmarks": to_dict(list(self.catalog_benchmarks))},
            "notes": list(self.notes),
        }


def _input_shapes(session: Any, manifest: Any) -> dict[str, list[int]]:
    """Concrete input shapes: batch 1, image sides from the bundle's preprocessing when dynamic."""
    pre = manifest.preprocessing
    sides = {}
    if pre is not None:
        h, w = pre.size
        sides = {2: h, 3: w} if pre.layout == "NCHW" else {1: h, 2: w}
    shapes = {}
    for arg in session.get_inputs():
        dims = list(arg.shape)
        shapes[arg.name] = [d if isinstance(d, int) and d > 0 else (sides.get(i, 1) if len(dims) == 4 else 1)
                            for i, d in enumerate(dims)]
    return shapes


def _feeds(session: Any, shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        dtype = _DTYPES.get(arg.type, np.float32)
        shape = shapes[arg.name]
        feeds[arg.name] = (rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating)
                           else np.zeros(shape, dtype))
    return feeds


def _model_flops(bundle: Any, shapes: dict[str, list[int]]) -> tuple[int, str]:
    meta = bundle.manifest.metadata.get("flops")
    value = meta.get("flops") if isinstance(meta, dict) else meta
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value), "bundle metadata (manifest.metadata.flops)"
    from .flops import onnx_cost

    return onnx_cost(bundle.model_path, input_shapes=shapes).flops, "counted by edgeship.targets.flops"


def _timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def matmul_gflops(runtime: Any, size: int = 1024, runs: int = 5) -> tuple[float, str]:
    """This host's achieved FP32 GFLOP/s on a ``size``-square MatMul in ONNX Runtime (numpy without onnx)."""
    a = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    try:
        from onnx import TensorProto, helper
    except ImportError:
        via, run = "numpy", lambda: a @ a
    else:
        import onnxruntime as ort

        from ..runtime.session import session_options

        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("A", "B", "Y")]
        graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["Y"])], "matmul", io[:2], io[2:])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        proto.ir_version = min(proto.ir_version, 9)  # loadable by older onnxruntime on devices
        sess = ort.InferenceSession(proto.SerializeToString(), session_options(runtime),
                                    providers=["CPUExecutionProvider"])
        via, run = "onnxruntime", lambda: sess.run(None, {"A": a, "B": a})
    run()  # warm-up: thread pool start, page faults
    best = min(_timed(run, runs))
    return 2 * size**3 / best / 1e9, via


def fit(bundle_path: Union[str, os.PathLike], target: str, host_runs: int = 10, warmup: int = 2,
        matmul_size: int = 1024) -> FitPrediction:
    """Predict RAM fit and latency of ``bundle_path`` on ``target``, calibrated on this host.

    >>> fit("mobilenet.onnx", "rpi4", host_runs=20).predicted_latency_ms  # doctest: +SKIP
    """
    if host_runs < 1 or warmup < 0:
        raise InputError(f"host_runs must be at least 1 and warmup at least 0, got {host_runs} and {warmup}")
    target_preset = preset(target)  # InputError listing valid targets for an unknown one
    host = preset(HOST)
    from ..bundle import open_bundle
    from ..runtime.model import Model
    from .probe import probe_host

    bundle = open_bundle(bundle_path)
    import onnxruntime  # noqa: F401 - imported before the baseline so its own RSS is not counted

    before = _rss()
    model = Model(bundle, host.runtime)
    loaded = _rss()
    shapes = _input_shapes(model.session, bundle.manifest)
    feeds = _feeds(model.session, shapes)
    try:
        run = lambda: model.session.run(None, feeds)  # noqa: E731
        _timed(run, max(warmup, 1))
        warmed = _rss()
        latency = float(np.median(_timed(run, host_runs)))
    except Exception as exc:  # ORT errors on inputs it cannot take
        raise BenchError(f"{bundle.source}: the model did not run on this host with inputs {shapes}: {exc}") from exc
    flops, flops_source = _model_flops(bundle, shapes)
    matmul, via = matmul_gflops(host.runtime, matmul_size, runs=max(3, min(host_runs, 10)))
    model_rate = flops / latency / 1e9
    info = probe_host()
    calibration = Calibration(info.cpu_model, host.runtime.intra_op_threads, host_runs, latency * 1e3,
                              model_rate, matmul, matmul_size, via, model_rate / matmul)

    dev = target_preset.device
    file_bytes = Path(bundle.model_path).stat().st_size
    session_rss, activations = max(loaded - before, 0), max(warmed - loaded, 0)
    need = file_bytes + session_rss + activations
    if target == HOST:
        ram = {"this host": info.ram_total_bytes} if info.ram_total_bytes else {}
    elif dev.ram_gb is not None:
        ram = {f"{v:g} GiB": int(v * GIB) for v in dict.fromkeys((dev.ram_gb.low, dev.ram_gb.high))}
    else:
        ram = {}
    fits = {k: need <= v for k, v in ram.items()}

    notes = []
    predicted = None
    if dev.cpu_gflops:
        predicted = flops / (dev.cpu_gflops * 1e9 * calibration.efficiency) * 1e3
        notes.append(f"CPU path at the article's {dev.cpu_gflops:g} GFLOP/s x the efficiency measured here.")
        if target in ("rpi5", "rpi5-hailo"):
            # ResNet-18 is 3.63 GFLOP; the article's own 180 ms for it on a Pi 5 means ~20 GFLOP/s achieved
            notes.append("Caution: the article's 13 GFLOP/s is below what its own ResNet-18 FP32 figure implies "
                         "(3.63 GFLOP in 180 ms = 20 GFLOP/s achieved), so this prediction is likely pessimistic.")
    elif target == HOST:
        notes.append(f"The target is this host: its measured latency is {latency * 1e3:.2f} ms.")
    else:
        notes.append("No latency prediction: the article gives no CPU GFLOP/s for this device, and an "
                     "efficiency measured on this host's CPU does not transfer to a GPU or NPU.")
    floor = None
    if dev.accel_gflops:
        floor = flops / (dev.accel_gflops * 1e9) * 1e3
    elif dev.accel_tops:
        floor = flops / (dev.accel_tops.high * 1e12) * 1e3
    if floor is not None:
        notes.append("latency_floor_ms: FLOPs at the accelerator's catalog peak; real runs are slower.")
    if not ram:
        notes.append("RAM: the catalog gives no RAM figure for this target (it uses the host's RAM).")
    notes.extend(dev.notes)
    return FitPrediction(
        target=target, device_name=dev.name, model=bundle.name, flops=flops, flops_source=flops_source,
        input_shapes=shapes, ram=RamFit(file_bytes, session_rss, activations, need, ram, fits),
        calibration=calibration, catalog_cpu_gflops=dev.cpu_gflops, predicted_latency_ms=predicted,
        latency_floor_ms=floor, notes=tuple(notes), catalog_benchmarks=dev.benchmarks,
    )
