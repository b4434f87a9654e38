"""ResNet-18 pruned to half its FLOPs vs the unpruned model, batch 1, ONNX Runtime, side by side.

    python bench/prune_resnet18.py [--threads 2] [--runs 100] [--target-flops 0.5] [--out results/prune_resnet18.json]

torchvision ResNet-18 with random weights (timing does not depend on them) is pruned with
edgeship's structured pruning (torch-pruning dependency graph, channels rounded to 8, fc kept)
until its FLOPs are at most half. Both models are exported through edgeship's validated exporter
and timed interleaved in rounds in one process, so drift on a shared machine falls on both alike.
Goal: the pruned model is at least 35% faster (p50 ratio >= 1.35). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--target-flops", type=float, default=0.5)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "prune_resnet18.json"))
    args = ap.parse_args()

    import torch
    import torchvision
    from rich.table import Table

    from edgeship.bench.env import describe, environment
    from edgeship.bench.latency import interleaved
    from edgeship.optimize.measure import export_temp, session
    from edgeship.optimize.prune import PruneConfig, prune
    from edgeship.optimize.report import human
    from edgeship.targets.flops import onnx_cost
    from edgeship.util import console, write_json

    con = console()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = torchvision.models.resnet18(weights=None).eval()
    pruned = copy.deepcopy(base)
    with con.status("pruning (searching the channel ratio for the FLOPs budget) ..."):
        result = prune(pruned, PruneConfig(target_flops=args.target_flops, round_to=8), input_shape=(3, 224, 224),
                       measure=False)
    shape = (3, 224, 224)
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="edgeship-bench-") as tmp:
        paths = {"resnet18": export_temp(base, shape, tmp, "base", dynamic_batch=False),
                 "resnet18-pruned": export_temp(pruned, shape, tmp, "pruned", dynamic_batch=False)}
        sessions = {k: session(p, args.threads) for k, p in paths.items()}
        names = {k: s.get_inputs()[0].name for k, s in sessions.items()}
        with con.status(f"timing both, interleaved ({args.runs} runs each, {args.threads} threads) ..."):
            stats = interleaved({k: (lambda s=s, n=names[k]: s.run(None, {n: x})) for k, s in sessions.items()},
                                warmup=args.warmup, runs=args.runs, batch=1)
        for key, m in (("resnet18", result.before), ("resnet18-pruned", result.after)):
            # FLOPs counted on the exported graphs (Conv/Gemm), as every edgeship report does
            rows[key] = {"params": m.params, "flops": onnx_cost(paths[key]).flops, "file_bytes": paths[key].stat().st_size,
                         "p50_ms": stats[key].p50_ms, "p95_ms": stats[key].p95_ms, "mean_ms": stats[key].mean_ms}
    speedup = rows["resnet18"]["p50_ms"] / rows["resnet18-pruned"]["p50_ms"]
    flops_ratio = rows["resnet18"]["flops"] / rows["resnet18-pruned"]["flops"]
    env = environment(args.threads)
    table = Table(title="ResNet-18 structured pruning, batch 1, ONNX Runtime (measured side by side)",
                  caption=describe(env))
    for col in ("model", "params", "FLOPs", "ONNX size", "p50 ms", "p95 ms", "speed-up"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for key, r in rows.items():
        table.add_row(key, human(r["params"]), human(r["flops"]), human(r["file_bytes"], "B"), f"{r['p50_ms']:.2f}",
                      f"{r['p95_ms']:.2f}", "1.00x" if key == "resnet18" else f"{speedup:.2f}x")
    con.print(table)
    ok = speedup >= 1.35
    con.print(f"channel ratio {result.ratio:.3f}; FLOPs {flops_ratio:.2f}x fewer; pruned is {100 * (speedup - 1):.0f}% faster "
              f"(goal >= 35%): {'[green]met[/green]' if ok else '[red]not met[/red]'}")
    write_json(args.out, {"rows": rows, "speedup_p50": speedup, "flops_reduction": flops_ratio, "goal_met": ok,
                          "ratio": result.ratio, "layers": {k: list(v) for k, v in result.layers.items()},
                          "env": env, "threads": args.threads, "runs": args.runs})
    con.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
