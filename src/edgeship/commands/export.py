"""``edgeship export MODEL -o BUNDLE_DIR``."""

from __future__ import annotations

import argparse

from ..optimize.config import ExportSpec
from .args import add_config_flags, add_json_flag, lazy, renamed_flag


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
    add_config_flags(p, ExportSpec)
    renamed_flag(p, "--batch", "--graph-batch", "the batch baked into the graph; bench --batch and serve --max-batch "
                 "are the inference batch")
    p.add_argument("--static-batch", action="store_true",
                   help="bake --graph-batch into the graph (default: a dynamic batch axis, for bench --batch 1,8 and "
                        "serve --max-batch)")
    p.add_argument("--dynamic-batch", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    p.add_argument("--weights", metavar="FILE", help="state-dict file to load into the architecture")
    p.add_argument("--name", help="bundle name (default: the model's)")
    add_json_flag(p, "the export's result (bundle, tolerance, max difference, size)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(run=lazy("edgeship.commands.export:run"))


def run(args) -> int:
    from ..optimize.export import export
    from ..util import console as make_console
    from .args import config_from_args, emit_json, json_to_stdout

    spec = config_from_args(ExportSpec, args, dynamic_batch=False) if args.static_batch else \
        config_from_args(ExportSpec, args)
    console = make_console(stderr=json_to_stdout(args))
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
    emit_json(args.json, {"bundle": str(result.bundle.root), "name": m.name, "checked_on": result.checked_on,
                          "max_abs_diff": result.max_abs_diff, "atol": spec.atol, "rtol": spec.rtol,
                          "top1_agree": result.top1_agree, "seconds": result.seconds, "input": m.inputs[0].shape,
                          "opset": spec.opset, "metrics": stage.metrics}, say=console.print)
    return 0
