"""Quantization, measured side by side: ORT FP32, the article's dynamic INT8, plain static QDQ and
the bundle ``edgeship quantize`` picks, at batch 1 with 2 threads, in one process.

    .venv/bin/python bench/quantize.py [--models resnet18,...] [--runs 60] [--json results/quantize.json]

Random weights for the torchvision models (timing does not depend on them; their accuracy gate is
not meaningful and is relaxed, said in the table); EfficientNet-Lite0 has its real weights and the
full gate: top-1 agreement with FP32 on 500 augmented crops of real photos, calibrated on other photos.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MODELS = ["mobilenet_v3_small", "efficientnet_b0", "resnet18", "resnet50", "efficientnet-lite0",
          "efficientnet-lite0@0.95"]  # @X: the same model gated at top-1 agreement X, to show the float fallback
REAL_WEIGHTS = {"efficientnet-lite0"}


def article_dynamic(src: Path, dst: Path) -> Path:
    """The article's recipe: quantize_dynamic over the whole convnet (Conv becomes ConvInteger)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", type=int, default=80, help="timed runs per model in the final table")
    ap.add_argument("--work", default="results/bench-quantize")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "quantize.json"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from edgeship.bench.env import environment
    from edgeship.bench.latency import interleaved
    from edgeship.bundle import sha256_file
    from edgeship.optimize.export import export
    from edgeship.optimize.quantize import QuantizeConfig, quantize
    from edgeship.runtime.session import RuntimeConfig, create_session

    console = Console(width=170)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label in args.models.split(","):
        t0 = time.perf_counter()
        name, _, gate = label.partition("@")
        bundle_dir = work / name
        if not (bundle_dir / "edgeship.json").is_file():
            export(name, bundle_dir, overwrite=True)
        real = name in REAL_WEIGHTS
        # Random weights make agreement meaningless: their gate is switched off (gate "agreement" at 0: the
        # default gate for them is now output similarity, see bench/quantize_gates.py) and they calibrate with
        # the quicker MinMax; Lite0 runs the defaults (Percentile, 500 crops, agreement >= 0.98).
        config = (QuantizeConfig(target="x86", mode="static", method="percentile", eval_samples=500,
                                 min_agreement=float(gate or 0.98), timing_runs=40, threads=args.threads) if real else
                  QuantizeConfig(target="x86", mode="static", method="minmax", eval_samples=50, gate="agreement",
                                 min_agreement=0.0, timing_runs=40, threads=args.threads, max_float_fraction=0.0))
        cand_dir = work / f"{label}-candidates"
        result = quantize(bundle_dir, config, work / f"{label}-int8", overwrite=True, workdir=cand_dir,
                          log=lambda line, n=label: console.print(f"  [{n}] {line}", highlight=False))
        plain = next(c for c in result.candidates if c.name == "int8:all")
        dynamic = article_dynamic(bundle_dir / "model.onnx", cand_dir / "article-dynamic.onnx")
        paths = {"fp32": bundle_dir / "model.onnx", "article dynamic": dynamic, "plain QDQ": plain.path,
                 "edgeship pick": work / f"{label}-int8" / "model.onnx"}
        sample = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        # The pick is often the very file of another column (FP32 kept, or plain QDQ won): time each
        # distinct file once, so one model never shows two speeds from noise.
        same_as = {}
        by_hash: dict[str, str] = {}
        for key, path in paths.items():
            same_as[key] = by_hash.setdefault(sha256_file(path), key)
        fns = {}
        for key, path in paths.items():
            if same_as[key] != key:
                continue
            sess = create_session(path, RuntimeConfig(intra_op_threads=args.threads, inter_op_threads=1))
            feed = {sess.get_inputs()[0].name: sample}
            fns[key] = (lambda s=sess, f=feed: s.run(None, f))
        # Two runs per model per round: load on a shared host drifts within seconds, and it should fall on all alike.
        timed = interleaved(fns, warmup=5, runs=args.runs, rounds=5)  # steady-state blocks, as the quantizer times
        stats = {key: timed[same_as[key]] for key in paths}
        base = stats["fp32"].p50_ms
        row = {
            "model": label, "weights": "real" if real else "random", "gate": config.min_agreement,
            "fp32_self_agreement": result.data.get("fp32_self_agreement_half_level_noise"),
            "best_int8_agreement": max((c.agreement for c in result.candidates if c.agreement is not None), default=None),
            "fp32_p50_ms": base, "fp32_p95_ms": stats["fp32"].p95_ms,
            **{f"{k.replace(' ', '_')}_p50_ms": stats[k].p50_ms for k in paths if k != "fp32"},
            **{f"{k.replace(' ', '_')}_speedup": base / stats[k].p50_ms for k in paths if k != "fp32"},
            "choice": result.choice, "reason": result.reason, "pick_is": same_as["edgeship pick"],
            "plain_agreement": plain.agreement, "pick_agreement": result.chosen.agreement if result.chosen else 1.0,
            "excluded_nodes": len(result.chosen.plan.exclude) if result.chosen and result.chosen.plan else 0,
            "quantize_result": result.to_dict(), "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        console.print(f"{label}: pick {result.choice} {row['edgeship_pick_speedup']:.2f}x, plain {row['plain_QDQ_speedup']:.2f}x, "
                      f"article dynamic {row['article_dynamic_speedup']:.2f}x ({row['seconds']:.0f}s)")

    table = Table(title=f"Quantization at batch 1, {args.threads} threads, this host (p50 ms; ratio = FP32 / model, >1 faster)")
    for col in ["model", "FP32 ms", "article dynamic", "plain QDQ", "edgeship pick", "pick",
                "agreement plain / pick / best INT8 (FP32 self)"]:
        table.add_column(col, justify="left" if col in ("model", "pick") else "right")
    for r in rows:
        agree = (f"{r['plain_agreement']:.3f} / {r['pick_agreement']:.3f} / {r['best_int8_agreement']:.3f} "
                 f"({r['fp32_self_agreement']:.3f}), gate {r['gate']}" if r["weights"] == "real" else "random weights, no gate")
        table.add_row(r["model"], f"{r['fp32_p50_ms']:.2f}",
                      f"{r['article_dynamic_p50_ms']:.2f} ({r['article_dynamic_speedup']:.2f}x)",
                      f"{r['plain_QDQ_p50_ms']:.2f} ({r['plain_QDQ_speedup']:.2f}x)",
                      f"{r['edgeship_pick_p50_ms']:.2f} ({r['edgeship_pick_speedup']:.2f}x)"
                      + ("" if r["pick_is"] == "edgeship pick" else f" = {r['pick_is']}"), r["choice"], agree)
    console.print(table)
    for r in rows:
        console.print(f"- {r['model']}: {r['reason']}", highlight=False)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": environment(args.threads), "rows": rows}, indent=2, default=str) + "\n")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
