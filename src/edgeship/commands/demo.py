"""``edgeship demo``."""

from __future__ import annotations

from .args import lazy


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="run the main job on the embedded default model and write a report",
        description=(
            "Export the packaged ImageNet-pretrained EfficientNet-Lite0, benchmark it beside PyTorch eager, "
            "classify real photos from installed packages, and run the other sections that are installed "
            "(optimizer pipeline on Fashion-MNIST, the default LLM). Writes demo.json and report.md."
        ),
    )
    p.add_argument("--out", default="results", help="results folder (default: results)")
    p.add_argument("--only", type=_names, default=None, metavar="A,B", help="run only these sections")
    p.add_argument("--skip", type=_names, default=None, metavar="A,B", help="skip these sections")
    p.add_argument("--quick", action="store_true", help="fewer runs and epochs (smoke test)")
    p.set_defaults(run=lazy("edgeship.commands.demo:run"))


def run(args) -> int:
    from pathlib import Path

    from ..demo import run_demo
    from ..util import console

    run_demo(Path(args.out), console(), only=args.only, skip=args.skip, quick=args.quick)
    return 0
