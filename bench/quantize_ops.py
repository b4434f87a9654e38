"""Where INT8 wins and loses, by kind of operator: ONNX Runtime's own profile of FP32, plain static QDQ
(all operators) and a mix (dense convolutions INT8, depthwise convolutions and activations float).

    .venv/bin/python bench/quantize_ops.py [--model efficientnet_b0] [--runs 150] [--json results/quantize_ops.json]

Random weights (timing does not depend on them), 16 calibration crops of the shipped photos, batch 1,
2 threads. Each model is profiled alone (ONNX Runtime's per-node kernel times, averaged over the
runs) and timed without profiling in interleaved blocks. The "bound" row adds, for every kind, the
faster of FP32 and INT8: no mix of the two can beat it with these kernels, since mixing only adds
conversions between the kinds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

KINDS = ("dense conv (1x1, stem, head)", "depthwise conv", "activations and SE (Sigmoid, Mul, QuickGelu, pooling)",
         "layout and Q/DQ (Reorder, Transpose, (De)QuantizeLinear)", "other (Gemm, Add, ...)")


def kind_of(op: str, group: int) -> str:
    if op in ("Conv", "QLinearConv", "FusedConv"):
        return KINDS[1] if group > 1 else KINDS[0]
    if op in ("Sigmoid", "QLinearSigmoid", "Mul", "QLinearMul", "QuickGelu", "GlobalAveragePool",
              "QLinearGlobalAveragePool", "HardSigmoid", "HardSwish"):
        return KINDS[2]
    if op.startswith("Reorder") or op in ("Transpose", "QuantizeLinear", "DequantizeLinear"):
        return KINDS[3]
    return KINDS[4]


def session(path: Path, threads: int, profile: bool = False):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / "edgeship-ops")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def profile(path: Path, groups: dict[str, int], x: np.ndarray, threads: int, runs: int) -> dict[str, float]:
    """Mean kernel milliseconds per run, by kind."""
    s = session(path, threads, profile=True)
    feed = {s.get_inputs()[0].name: x}
    for _ in range(runs):
        s.run(None, feed)
    trace = s.end_profiling()
    events = json.loads(Path(trace).read_text())
    os.remove(trace)
    out: dict[str, float] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            group = groups.get(node) or next((g for n, g in groups.items() if n and n in node), 1)
            out[kind_of(e["args"]["op_name"], group)] += e["dur"] / 1e3 / runs
    return dict(out)


def timed(paths: dict[str, Path], x: np.ndarray, threads: int, runs: int, rounds: int = 5) -> dict[str, float]:
    """p50 ms of each model, timed in interleaved steady-state blocks."""
    sessions = {k: session(p, threads) for k, p in paths.items()}
    samples: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for k, s in sessions.items():
            feed = {s.get_inputs()[0].name: x}
            for _ in range(10):
                s.run(None, feed)
            for _ in range(max(1, runs // rounds)):
                t0 = time.perf_counter()
                s.run(None, feed)
                samples[k].append((time.perf_counter() - t0) * 1e3)
    return {k: float(np.median(v)) for k, v in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_b0")
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="results/bench-quantize-ops")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "quantize_ops.json"))
    args = ap.parse_args()

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from rich.console import Console
    from rich.table import Table

    from edgeship.bench.env import environment
    from edgeship.bundle import open_bundle
    from edgeship.optimize.calibration import ArrayReader, load_quant_data
    from edgeship.optimize.export import export

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundle_dir = work / args.model
    if not (bundle_dir / "edgeship.json").is_file():
        export(args.model, bundle_dir, overwrite=True)
    bundle = open_bundle(bundle_dir)
    pre = work / "pre.onnx"
    quant_pre_process(str(bundle_dir / "model.onnx"), str(pre))
    graph = onnx.load(str(pre)).graph
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in graph.node}
    depthwise = [n.name for n in graph.node if n.op_type == "Conv" and groups[n.name] > 1]
    data = load_quant_data(bundle, "photos", calibration_samples=16, eval_samples=1)
    input_name = graph.input[0].name
    layouts = {"int8, all operators": {}, "mix: dense conv int8, the rest float": {"op_types_to_quantize": ["Conv"],
                                                                                   "nodes_to_exclude": depthwise}}
    paths = {"fp32": bundle_dir / "model.onnx"}
    for name, extra in layouts.items():
        out = work / (name.split(",")[0].split(":")[0].replace(" ", "-") + ".onnx")
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(pre), str(out), ArrayReader(input_name, data.calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, extra_options={"WeightSymmetric": True}, **extra)
        paths[name] = out
    x = np.random.default_rng(0).standard_normal((1, *bundle.manifest.inputs[0].shape[1:])).astype(np.float32)
    prof = {k: profile(p, groups, x, args.threads, args.runs) for k, p in paths.items()}
    p50 = timed(paths, x, args.threads, args.runs)

    fp32, int8 = prof["fp32"], prof["int8, all operators"]
    bound_ms = sum(min(fp32.get(k, 0.0), int8.get(k, 0.0)) for k in KINDS)
    table = Table(title=f"{args.model}: kernel ms per run by kind (ONNX Runtime profile, {args.runs} runs, "
                        f"{args.threads} threads, batch 1, random weights)")
    table.add_column("kind")
    for k in paths:
        table.add_column(k, justify="right")
    table.add_column("faster of fp32 / int8", justify="right")
    for kind in KINDS:
        table.add_row(kind, *(f"{prof[k].get(kind, 0.0):.2f}" for k in paths),
                      f"{min(fp32.get(kind, 0.0), int8.get(kind, 0.0)):.2f}")
    table.add_row("sum of kernels", *(f"{sum(prof[k].values()):.2f}" for k in paths), f"{bound_ms:.2f}")
    table.add_row("p50 ms, no profiling", *(f"{p50[k]:.2f}" for k in paths), "")
    table.add_row("speed-up over fp32", *(f"{p50['fp32'] / p50[k]:.2f}x" for k in paths),
                  f"bound {sum(fp32.values()) / bound_ms:.2f}x")
    Console(width=170).print(table)
    result = {"model": args.model, "threads": args.threads, "runs": args.runs, "kernel_ms_by_kind": prof,
              "p50_ms": p50, "bound_speedup": sum(fp32.values()) / bound_ms, "environment": environment()}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
