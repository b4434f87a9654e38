"""``edgeship quantize BUNDLE -o OUT``: accuracy- and speed-gated INT8 (or FP16)."""

from __future__ import annotations

import argparse

from .args import lazy, positive_int

_LAYOUTS = ["all", "int8-chain", "no-se", "float-ends", "float-stem", "conv-only", "qoperator", "dynamic"]


def _layouts(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in _LAYOUTS]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(_LAYOUTS)}; got {text!r}")
    return values


def register(sub) -> None:
    p = sub.add_parser(
        "quantize",
        help="INT8/FP16 quantization, kept only if accurate and faster",
        description=(
            "Quantize BUNDLE: static INT8 calibrated on real images (several operator layouts tried), dynamic "
            "INT8 for MatMul-heavy models, FP16 for GPU targets. Accuracy gate: the quantized model keeps "
            "--min-accuracy of FP32 accuracy (or top-1 agreement on held-out augmented crops); sensitive "
            "nodes are kept float when it fails. Speed gate: timed against FP32 on this host; FP32 is kept "
            "when no quantized model is faster. The output bundle records the choice and every measurement."
        ),
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder, .tar or bare .onnx")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="bundle folder to create")
    p.add_argument("--calibration", default="photos", metavar="DIR|photos|fashion-mnist",
                   help="calibration images: a folder, the photos installed packages ship (default), or fashion-mnist")
    p.add_argument("--method", default="percentile", choices=["minmax", "entropy", "percentile"],
                   help="calibration method (default percentile)")
    p.add_argument("--target", default="host", metavar="TARGET",
                   help="device preset giving the INT8 format (u8/s8) and where it runs (default: this host)")
    p.add_argument("--mode", default="auto", choices=["auto", "static", "dynamic", "fp16"],
                   help="auto: fp16 for GPU targets, dynamic for MatMul-heavy graphs, else static (default)")
    p.add_argument("--layouts", type=_layouts, default=None, metavar="L1,L2",
                   help=f"operator layouts to try (default: all that apply): {', '.join(_LAYOUTS)}")
    p.add_argument("--gate", default="auto", choices=["auto", "accuracy", "agreement", "similarity"],
                   help="how INT8 is judged against FP32. auto (default): accuracy with labelled data; else "
                        "similarity when the bundle's provenance says random weights (top-1 of near-uniform outputs "
                        "is noise); else agreement")
    p.add_argument("--min-accuracy", type=float, default=0.99,
                   help="with labelled data: the fraction of FP32 accuracy to keep (default 0.99)")
    p.add_argument("--min-agreement", type=float, default=0.98,
                   help="without labels: top-1 agreement with FP32 on held-out crops (default 0.98)")
    p.add_argument("--max-output-error", type=float, default=0.15,
                   help="similarity gate: ||INT8 - FP32|| over how much FP32's outputs vary by input (default 0.15)")
    p.add_argument("--min-speedup", type=float, default=1.05,
                   help="how much faster than FP32 a quantized model must be to be chosen (default 1.05)")
    p.add_argument("--eval", metavar="DIR", default=None,
                   help="evaluation images (class subfolders named like the labels give accuracy); "
                        "default: the held-out half of --calibration")
    p.add_argument("--calibration-samples", type=positive_int, default=64, help="calibration inputs (default 64)")
    p.add_argument("--eval-samples", type=positive_int, default=500, help="augmented evaluation crops (default 500)")
    p.add_argument("--timing-runs", type=positive_int, default=60, help="timed runs per model (default 60)")
    p.add_argument("--threads", type=positive_int, default=2, help="intra-op threads for timing (default 2)")
    p.add_argument("--json", metavar="OUT", help="write the full result as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(run=lazy("edgeship.commands.quantize:run"))


def _fmt(v, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..optimize.quantize import QuantizeConfig, quantize
    from ..util import write_json

    config = QuantizeConfig(
        mode=args.mode, target=args.target, calibration=args.calibration, method=args.method,
        calibration_samples=args.calibration_samples, eval=args.eval, eval_samples=args.eval_samples,
        gate=args.gate, min_accuracy=args.min_accuracy, min_agreement=args.min_agreement,
        max_output_error=args.max_output_error, min_speedup=args.min_speedup, layouts=args.layouts,
        timing_runs=args.timing_runs, threads=args.threads,
    )
    console = Console()
    with console.status("quantizing ...") as status:
        result = quantize(args.bundle, config, args.out, overwrite=args.force,
                          log=lambda line: (status.update(line), console.print(f"  {line}", highlight=False)))
    table = Table(title=f"{args.bundle}: quantization candidates (batch 1, {args.threads} threads, this host)")
    for col in ("model", "p50 ms", "p95 ms", "vs FP32", "agreement", "accuracy", "output error", "float nodes", "gate"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for c in [result.fp32, *result.candidates]:
        gate = "" if c is result.fp32 else ("chosen" if c is result.chosen else
                                            f"fails {result.gate}" if c.passed is False else "not evaluated" if c.passed is None else "passes")
        table.add_row(c.name, _fmt(c.p50_ms), _fmt(c.p95_ms), _fmt(c.speedup, ".2f", "x"), _fmt(c.agreement, ".4f"),
                      _fmt(c.accuracy, ".4f"), _fmt(c.output_error, ".4f"), str(len(c.plan.exclude)) if c.plan else "-", gate)
    console.print(table)
    gate = result.data.get("gate") or {}
    console.print(f"gate: {gate.get('gate')} ({gate.get('why')})", highlight=False)
    console.print(f"choice: [bold]{result.choice}[/bold] — {result.reason}", highlight=False)
    console.print(f"wrote {result.bundle.root}")
    if args.json:
        write_json(args.json, result.to_dict())
    return 0
