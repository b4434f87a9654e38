"""``edgeship predict BUNDLE IMAGE ...``."""

from __future__ import annotations

from .args import add_json_flag, add_runtime_flags, lazy, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="classify (or detect in) images with a bundle",
        description="Run a bundle on images: top-k with labels (or boxes), and the time each stage took.",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder, .tar, or bare .onnx")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--top-k", type=positive_int, default=None, help="classes to show (default: the bundle's)")
    add_runtime_flags(p, threads=True)
    add_json_flag(p, "the results")
    p.set_defaults(run=lazy("edgeship.commands.predict:run"))


def run(args) -> int:
    from pathlib import Path

    from rich.table import Table

    from ..util import console as make_console
    from ..util import emit_json
    from .args import json_to_stdout, load_model

    console = make_console(stderr=json_to_stdout(args))
    model = load_model(args.bundle, args, say=lambda line: console.print(line, style="cyan", highlight=False))
    for note in model.bundle.assumed:
        console.print(f"assumed: {note}", style="yellow", highlight=False)
    results = []
    for image in args.images:
        pred = model.predict(image, top_k=args.top_k)
        timing = "  ".join(f"{k} {v:.2f} ms" for k, v in pred.timing_ms.items())
        results.append({"image": image, **pred.output, "timing_ms": pred.timing_ms})
        title = f"{image}  ({timing})"
        if len(title) > console.width:  # the name, whole: a long absolute path would wrap into fragments
            title = f"{Path(image).name}  ({timing})"
        t = Table(title=title, title_justify="left", highlight=False)
        if "classes" in pred.output:
            t.add_column("#", justify="right")
            t.add_column("label")
            t.add_column("score", justify="right")
            for i, c in enumerate(pred.output["classes"], 1):
                t.add_row(str(i), c["label"], f"{c['score']:.4f}")
        elif "detections" in pred.output:
            for c in ("label", "score", "box (x1, y1, x2, y2)"):
                t.add_column(c)
            for d in pred.output["detections"]:
                t.add_row(d["label"], f"{d['score']:.3f}", ", ".join(f"{v:.0f}" for v in d["box"]))
        else:
            t.add_column("outputs")
            t.add_row(str([len(o) for o in pred.output.get("outputs", [])]))
        console.print(t)
    backend = model.describe()
    check = model.golden_at_load
    golden = "" if check is None else f"; golden check max error {check.max_abs_error:.2e} ({check.tolerance})"
    console.print(f"model load {model.load_ms:.0f} ms ({model.bundle.name}: {model.describe_short()}{golden})",
                  highlight=False)
    emit_json(args.json, {"bundle": args.bundle, "load_ms": model.load_ms, "backend": backend, "results": results},
              say=console.print)
    return 0
