"""Fashion-MNIST optimization pipeline, every stage measured in one run: teacher, distilled student,
pruned student, INT8.

    python bench/optimize_fmnist.py [--quick] [--out results/optimize_fmnist]

Runs ``recipes/fashion-mnist.yaml`` (the same as ``edgeship demo``'s optimizer section): accuracy on
the 10k test set in ONNX Runtime, params, FLOPs, file size, p50/p95 latency at batch 1 with 2 threads.
Goals checked on the measured rows: the pruned student has at least 2x fewer FLOPs than the unpruned
student and loses at most 1.5 points of accuracy after fine-tuning; INT8 keeps at least 99% of the
FP32 accuracy. Prints the table, writes JSON (and the HTML report) under --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and epochs (smoke test)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "optimize_fmnist"))
    args = ap.parse_args()

    from edgeship.optimize.pipeline import fashion_mnist_demo
    from edgeship.optimize.report import Report
    from edgeship.util import console, write_json

    con = console()
    t0 = time.perf_counter()
    result = fashion_mnist_demo(args.out, quick=args.quick, console=console(stderr=True))
    con.print(Report.from_dict(result["report"]).table())
    g = result["goals"]
    if "prune_flops_reduction" in g:
        con.print(f"pruned vs student: {g['prune_flops_reduction']:.2f}x fewer FLOPs (goal >= 2), "
                  f"{g['prune_accuracy_drop_points']:+.2f} points lost (goal <= 1.5): "
                  + ("[green]met[/green]" if g["prune_ok"] else "[red]not met[/red]"))
    if "int8_accuracy_kept" in g:
        con.print(f"INT8 keeps {g['int8_accuracy_kept']:.2%} of FP32 accuracy (goal >= 99%): "
                  + ("[green]met[/green]" if g["int8_ok"] else "[red]not met[/red]")
                  + f"; INT8 p50 speed-up {g.get('int8_speedup')}x")
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    path = write_json(Path(args.out) / "optimize_fmnist.json", result)
    con.print(f"{result['wall_seconds']:.0f} s; wrote {path} and {result['files'].get('html')}")


if __name__ == "__main__":
    main()
