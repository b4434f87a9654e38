"""``edgeship export MODEL -o BUNDLE_DIR``."""

from __future__ import annotations

import argparse

from .args import lazy, positive_int


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW like 224 or 240x320, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW of at least 8, got {text!r}")
    return parts[0], parts[1]


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a PyTorch model to a validated ONNX bundle",
        description=(
            "Export MODEL to an ONNX bundle, run it in ONNX Runtime and compare with PyTorch on random "
            "inputs and real photos; beyond the tolerance the export fails and nothing is written. "
            "MODEL: efficientnet-lite0 (ImageNet-pretrained, packaged), a torchvision architecture name "
            "(random weights unless --weights), or package.module:function returning an nn.Module."
        ),
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--out", required=True, metavar="BUNDLE_DIR", help="bundle folder to create")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; 13 for older ARM builds)")
    p.add_argument("--input-size", type=_size, default=None, metavar="HxW", help="input size (default: the model's)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size baked into the graph (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch axis dynamic")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    p.add_argument("--weights", metavar="FILE", help="state-dict file to load into the architecture")
    p.add_argument("--name", help="bundle name (default: the model's)")
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance vs PyTorch (default 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance vs PyTorch (default 1e-3)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(run=lazy("edgeship.commands.export:run"))


def run(args) -> int:
    from ..util import console as make_console

    from ..errors import InputError
    from ..optimize.export import ExportSpec, export

    console = make_console()
    try:
        spec = ExportSpec(opset=args.opset, input_size=args.input_size, batch=args.batch,
                          dynamic_batch=args.dynamic_batch, simplify=not args.no_simplify, atol=args.atol, rtol=args.rtol)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    with console.status(f"exporting {args.model} ..."):
        result = export(args.model, args.out, spec, weights=args.weights, name=args.name, overwrite=args.force)
    m = result.bundle.manifest
    stage = m.provenance[-1]
    console.print(f"[green]exported[/green] {m.name} → {result.bundle.root}", highlight=False)
    console.print(
        f"  checked on {', '.join(result.checked_on)}: max |onnx - torch| = {result.max_abs_diff:.2e} "
        f"(tolerance atol={spec.atol:g}, rtol={spec.rtol:g})"
        + ("" if result.top1_agree is None else f"; top-1 on photos {'matches' if result.top1_agree else 'DIFFERS'}"),
        highlight=False,
    )
    flops = stage.metrics.get("flops")
    console.print(
        f"  {stage.metrics['file_bytes'] / 2**20:.1f} MB, {stage.metrics['params'] / 1e6:.2f} M params"
        + (f", {flops / 1e9:.2f} GFLOPs" if flops else "") + f", input {m.inputs[0].shape}, opset {spec.opset}",
        highlight=False,
    )
    if stage.params.get("pretrained") is False:
        console.print("  note: random weights (no pretrained weights offline); pass --weights FILE", style="yellow")
    return 0
