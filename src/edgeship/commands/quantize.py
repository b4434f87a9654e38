"""``edgeship quantize BUNDLE -o OUT``: accuracy- and speed-gated INT8 (or FP16)."""

from __future__ import annotations

from ..optimize.qconfig import QuantizeConfig
from .args import add_config_flags, add_json_flag, lazy


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
    add_config_flags(p, QuantizeConfig)  # every stage setting, its default and help from the config (recipes too)
    add_json_flag(p, "the full result")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(run=lazy("edgeship.commands.quantize:run"))


def _fmt(v, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def run(args) -> int:
    from rich.table import Table

    from ..optimize.quantize import quantize
    from ..util import console as make_console
    from .args import config_from_args, emit_json, json_to_stdout

    config = config_from_args(QuantizeConfig, args)
    console = make_console(stderr=json_to_stdout(args))
    with console.status("quantizing ...") as status:
        def log(line: str) -> None:
            status.update(line)
            console.print(f"  {line}", highlight=False)

        result = quantize(args.bundle, config, args.out, overwrite=args.force, log=log)
    table = Table(title=f"{args.bundle}: quantization candidates (batch 1, {config.threads} threads, this host)")
    for col in ("model", "p50 ms", "p95 ms", "vs FP32", "agreement", "accuracy", "output error", "float nodes", "gate"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for c in [result.fp32, *result.candidates]:
        verdict = "" if c is result.fp32 else ("chosen" if c is result.chosen else
                                               f"fails {result.gate}" if c.passed is False else
                                               "not evaluated" if c.passed is None else "passes")
        table.add_row(c.name, _fmt(c.p50_ms), _fmt(c.p95_ms), _fmt(c.speedup, ".2f", "x"), _fmt(c.agreement, ".4f"),
                      _fmt(c.accuracy, ".4f"), _fmt(c.output_error, ".4f"), str(len(c.plan.exclude)) if c.plan else "-",
                      verdict)
    console.print(table)
    gate = result.data.get("gate") or {}
    console.print(f"gate: {gate.get('gate')} ({gate.get('why')})", highlight=False)
    console.print(f"choice: [bold]{result.choice}[/bold] — {result.reason}", highlight=False)
    console.print(f"wrote {result.bundle.root}")
    emit_json(args.json, result.to_dict(), say=console.print)
    return 0
