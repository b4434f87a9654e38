"""``edgeship variant add|list|remove``: reduced-precision and other-engine forms of a bundle, gated."""

from __future__ import annotations

from .args import lazy, positive_int


def register(sub) -> None:
    p = sub.add_parser("variant", help="add, list and remove a bundle's gated variants (bf16, INT8, .tflite, fp16)",
                       description=(
                           "A variant is another form of the bundle's model for one engine: OpenVINO bf16 (a "
                           "precision hint), OpenVINO INT8 (NNCF post-training quantization on real photos), a "
                           ".tflite file for LiteRT, an fp16 ONNX for TensorRT. It is added only when it passes "
                           "the accuracy gate `edgeship quantize` uses, and runs only when asked for by name or "
                           "chosen by `edgeship tune`."))
    verbs = p.add_subparsers(dest="variant_verb", metavar="ACTION", required=True)
    a = verbs.add_parser("add", help="build a variant, gate it against FP32 on real photos, add it when it passes")
    a.add_argument("bundle", metavar="BUNDLE_DIR")
    a.add_argument("kind", choices=["openvino-bf16", "openvino-int8", "litert", "tensorrt-fp16", "onnxruntime-int8"])
    a.add_argument("--from", dest="source", metavar="FILE", help="the model file (litert: the .tflite)")
    a.add_argument("--calibration", default="photos", help="calibration/evaluation images: a folder or 'photos'")
    a.add_argument("--calibration-samples", type=positive_int, default=64, help="calibration crops (default 64)")
    a.add_argument("--eval-samples", type=positive_int, default=300, help="held-out evaluation crops (default 300)")
    a.add_argument("--gate", choices=["auto", "accuracy", "agreement", "similarity"], default="auto",
                   help="the accuracy gate, as quantize's (auto: accuracy with labels, similarity for random "
                        "weights, agreement otherwise)")
    a.add_argument("--min-agreement", type=float, default=0.98, help="top-1 agreement with FP32 needed (default 0.98)")
    a.add_argument("--max-output-error", type=float, default=0.15,
                   help="similarity gate: largest output error relative to FP32's variation (default 0.15)")
    a.add_argument("--threads", type=positive_int, default=2, help="threads while gating (default 2)")
    a.set_defaults(run=lazy("edgeship.commands.variant:add"))
    ls = verbs.add_parser("list", help="the declared variants and what their gate measured")
    ls.add_argument("bundle", metavar="BUNDLE")
    ls.set_defaults(run=lazy("edgeship.commands.variant:list_"))
    r = verbs.add_parser("remove", help="drop a declared variant")
    r.add_argument("bundle", metavar="BUNDLE_DIR")
    r.add_argument("name")
    r.set_defaults(run=lazy("edgeship.commands.variant:remove"))


def add(args) -> int:
    from ..optimize.variants import VariantConfig, add_variant
    from ..util import console as make_console

    console = make_console()
    cfg = VariantConfig(calibration=args.calibration, calibration_samples=args.calibration_samples,
                        eval_samples=args.eval_samples, gate=args.gate, min_agreement=args.min_agreement,
                        max_output_error=args.max_output_error, threads=args.threads)
    result = add_variant(args.bundle, args.kind, source=args.source, config=cfg,
                         log=lambda line: console.print(f"  {line}", highlight=False))
    style = "green" if result.passed else "red"
    console.print(f"[{style}]{result.reason}[/{style}]" + ("; added to the bundle" if result.passed else "; not added"),
                  highlight=False)
    return 0 if result.passed else 1


def list_(args) -> int:
    from rich.table import Table

    from ..bench.compare import gate_text
    from ..bundle import open_bundle
    from ..util import console as make_console

    console = make_console()
    b = open_bundle(args.bundle)
    t = Table(title=f"{b.name}: variants", title_justify="left")
    for column in ("name", "engine", "precision", "file", "gate", "golden tolerance"):
        t.add_column(column)
    for v in b.manifest.variants:
        gate = gate_text(v.gate) if v.gate else "-"
        t.add_row(v.name, v.backend, v.precision, v.model, gate, f"atol {v.golden.atol:.3g}" if v.golden else "-")
    console.print(t)
    for host, c in b.manifest.runtimes.items():
        console.print(f"runtime choice for {host}: {c.backend}" + (f", variant {c.variant}" if c.variant else "")
                      + (f", provider {c.provider}" if c.provider else "") + f" ({c.p50_ms:.2f} ms p50, {c.created[:10]})",
                      highlight=False)
    return 0


def remove(args) -> int:
    from ..optimize.variants import remove_variant

    remove_variant(args.bundle, args.name)
    print(f"removed variant {args.name}")
    return 0
