"""What each accuracy gate of ``edgeship quantize`` says about the same INT8 models: agreement vs similarity.

    .venv/bin/python bench/quantize_gates.py [--models efficientnet-lite0,resnet18,...] [--eval-samples 300]

For every model: export it (torchvision architectures have random weights offline; EfficientNet-Lite0
is pretrained), build every static INT8 layout from one calibration, and score each on the held-out
photo crops: top-1 agreement with FP32, the output error of the similarity gate
(:func:`edgeship.optimize.qgate.output_error`) and the cosine similarity. The FP32 model fed inputs
moved by up to half a pixel level is scored too: the error 8-bit input images already carry. No
timing: the figures do not depend on the machine's load. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

MODELS = ["efficientnet-lite0", "resnet18", "mobilenet_v3_large", "efficientnet_b0"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--method", default="percentile", choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--eval-samples", type=int, default=300)
    ap.add_argument("--calibration-samples", type=int, default=64)
    ap.add_argument("--layouts", default=None, help="comma-separated layouts (default: every static layout)")
    ap.add_argument("--work", default="results/bench-quantize-gates")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "quantize_gates.json"))
    args = ap.parse_args()

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from edgeship.bench.env import environment
    from edgeship.bundle import open_bundle
    from edgeship.optimize.export import export
    from edgeship.optimize.qgate import cosine, output_error, outputs, score
    from edgeship.optimize.qsearch import QuantizeRun
    from edgeship.optimize.quantize import Gate, QuantizeConfig
    from edgeship.util import write_json

    console = Console(width=170)
    work = Path(args.work)
    rows = []
    for name in args.models.split(","):
        t0 = time.perf_counter()
        bundle_dir = work / name
        if not (bundle_dir / "edgeship.json").is_file():
            export(name, bundle_dir, overwrite=True)
        bundle = open_bundle(bundle_dir)
        config = QuantizeConfig(target="x86", mode="static", method=args.method, eval_samples=args.eval_samples,
                                calibration_samples=args.calibration_samples,
                                layouts=args.layouts.split(",") if args.layouts else None)
        cand_dir = work / f"{name}-candidates"
        cand_dir.mkdir(parents=True, exist_ok=True)
        run = QuantizeRun(bundle, config, cand_dir, timer=None,
                          say=lambda line, n=name: console.print(f"  [{n}] {line}", highlight=False, markup=False))
        run.prepare()
        run.build_candidates()
        pre = bundle.manifest.preprocessing
        amp = 0.5 * pre.scale / max(pre.std)
        rng = np.random.default_rng(config.seed)
        noisy = outputs(bundle.model_path, [x + rng.uniform(-amp, amp, x.shape).astype(np.float32)
                                            for x in run.data.evaluation], config.threads)
        export_row = next((s for s in bundle.manifest.provenance if s.stage == "export"), None)
        common = {"model": name, "pretrained": export_row.params.get("pretrained") if export_row else None,
                  "auto_gate": run.gate.value, "method": args.method,
                  "calibration_fallback": run.data.info.get("calibration", {}).get("fallback")}
        ref = run.ref
        rows.append({**common, "candidate": "fp32 + half-level input noise",
                     "agreement": float(np.mean(noisy.argmax(1) == ref.argmax(1))),
                     "output_error": output_error(noisy, ref), "cosine": cosine(noisy, ref)})
        for c in run.candidates:
            score(c, outputs(c.path, run.data.evaluation, config.threads), ref, None, None, config, Gate.AGREEMENT)
            rows.append({**common, "candidate": c.name, "agreement": c.agreement, "output_error": c.output_error,
                         "cosine": c.cosine})
        console.print(f"  [{name}] {time.perf_counter() - t0:.0f} s", markup=False)

    table = Table(title=f"INT8 layouts under both gates ({args.method} calibration, {args.eval_samples} held-out "
                        "photo crops; agreement needs >= 0.98, similarity <= max_output_error)")
    for col in ("model", "weights", "auto gate", "candidate", "agreement", "output error", "cosine"):
        table.add_column(col, justify="left" if col in ("model", "weights", "auto gate", "candidate") else "right")
    for r in rows:
        weights = {True: "pretrained", False: "random", None: "unknown"}[r["pretrained"]]
        table.add_row(r["model"], weights, r["auto_gate"], r["candidate"], f"{r['agreement']:.4f}",
                      f"{r['output_error']:.4f}", f"{r['cosine']:.4f}")
    console.print(table)
    default = QuantizeConfig()
    write_json(args.json, {"environment": environment(threads=default.threads),
                           "thresholds": {"min_agreement": default.min_agreement,
                                          "max_output_error": default.max_output_error},
                           "rows": rows})
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
