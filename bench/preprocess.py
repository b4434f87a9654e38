"""A 640x480 JPEG to an input tensor: decode, then resize + centre crop + normalise, as served.

    .venv/bin/python bench/preprocess.py [--runs 300] [--json results/preprocess.json]

The same photo as bench/serve_load.py; the preprocessing that ``edgeship export`` writes into the
MobileNetV3-Small and EfficientNet-Lite0 bundles; the two stages ``Model.prepare`` times, in 3
interleaved rounds. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "preprocess.json"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from edgeship.bench.env import environment
    from edgeship.optimize.models import resolve_model
    from edgeship.runtime.preprocess import Preprocessor

    sys.path.insert(0, str(HERE))
    from serve_load import test_jpeg

    jpeg = test_jpeg()
    specs = {name: Preprocessor(resolve_model(name).preprocessing) for name in ("mobilenet_v3_small", "efficientnet-lite0")}
    times: dict[str, dict[str, list[float]]] = {n: {"decode": [], "preprocess": [], "total": []} for n in specs}
    for _ in range(3):
        for name, pre in specs.items():
            for _ in range(10):
                pre.from_image(pre.image(jpeg))
            for _ in range(args.runs // 3):
                t0 = time.perf_counter()
                image = pre.image(jpeg)
                t1 = time.perf_counter()
                pre.from_image(image)
                t2 = time.perf_counter()
                times[name]["decode"].append((t1 - t0) * 1e3)
                times[name]["preprocess"].append((t2 - t1) * 1e3)
                times[name]["total"].append((t2 - t0) * 1e3)
    table = Table(title=f"640x480 JPEG ({len(jpeg):,} bytes) to an input tensor, ms (median / p95), {args.runs} runs")
    for col in ("preprocessing of", "decode", "resize, crop, normalise", "total"):
        table.add_column(col, justify="left" if col == "preprocessing of" else "right")
    summary = {}
    for name, t in times.items():
        summary[name] = {k: {"median": float(np.median(v)), "p95": float(np.percentile(v, 95))} for k, v in t.items()}
        table.add_row(name, *(f"{summary[name][k]['median']:.2f} / {summary[name][k]['p95']:.2f}"
                              for k in ("decode", "preprocess", "total")))
    Console(width=140).print(table)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"jpeg_bytes": len(jpeg), "runs": args.runs, "ms": summary,
                               "environment": environment()}, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
