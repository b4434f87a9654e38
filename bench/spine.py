"""Spine benchmark: ONNX Runtime FP32 vs PyTorch eager, batch 1 and 8, measured side by side in one run.

    python bench/spine.py [--threads 2] [--runs 100] [--out results/bench-spine.json]

Models: the packaged ImageNet-pretrained EfficientNet-Lite0, MobileNetV3-Small and ResNet-18
(torchvision, random weights: timing does not depend on them). Each is exported with a dynamic
batch axis, then `edgeship bench --vs-torch` measures both backends with the same thread count.
Prints a table, writes JSON with the environment.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgeship.bench.env import describe
from edgeship.bench.runner import BenchConfig, bench_bundles
from edgeship.optimize.export import ExportSpec, export
from edgeship.util import console, write_json

MODELS = ["efficientnet-lite0", "mobilenet_v3_small", "resnet18"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "spine.json"))
    args = ap.parse_args()
    con = console()
    import torch

    torch.set_num_threads(args.threads)
    rows, reports = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            bundle = Path(tmp) / name
            export(name, bundle, ExportSpec(dynamic_batch=True), photos=[])
            cfg = BenchConfig(batches=(1, 8), threads=args.threads, warmup=args.warmup, runs=args.runs, vs_torch=True)
            report = bench_bundles([bundle], cfg, show_progress=False)
            reports[name] = report
            r = report["results"][0]
            for b in ("1", "8"):
                o, t = r["batches"][b], r["torch"]["batches"][b]
                rows.append({"model": name, "batch": int(b), "ort_p50_ms": o["p50_ms"], "ort_p95_ms": o["p95_ms"],
                             "ort_p99_ms": o["p99_ms"], "ort_items_s": o["throughput"], "torch_p50_ms": t["p50_ms"],
                             "torch_items_s": t["throughput"], "speedup_vs_torch": o["throughput"] / t["throughput"]})
            con.print(f"{name}: done", highlight=False)
    from rich.table import Table

    env = next(iter(reports.values()))["environment"]
    table = Table(title=f"ONNX Runtime FP32 vs PyTorch eager — {describe(env)}", title_justify="left")
    for c in ("model", "batch", "ORT p50 ms", "p95", "p99", "ORT items/s", "torch p50 ms", "torch items/s", "ORT / torch"):
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        table.add_row(r["model"], str(r["batch"]), f"{r['ort_p50_ms']:.2f}", f"{r['ort_p95_ms']:.2f}",
                      f"{r['ort_p99_ms']:.2f}", f"{r['ort_items_s']:.1f}", f"{r['torch_p50_ms']:.2f}",
                      f"{r['torch_items_s']:.1f}", f"{r['speedup_vs_torch']:.2f}x")
    con.print(table)
    write_json(args.out, {"environment": env, "rows": rows, "reports": reports})
    con.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
