"""``edgeship demo``'s describe section: EfficientNet-Lite0 + SmolLM2 describe the shipped photos, streamed.

Registered in demo.py's SECTIONS when llama.cpp is installed (``edgeship demo --only describe``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def describe_section(out: Path, console, quick: bool) -> dict[str, Any]:
    """``edgeship demo``'s describe section: EfficientNet-Lite0 + SmolLM2 on the shipped photos, streamed.

    Uses the bundle the vision section exported (``OUT/bundles/efficientnet-lite0``), exporting it
    first when that section did not run.
    """
    from .commands.describe import _vision_line, describe_images
    from .llm.default import default_llm_path
    from .photos import photos
    from .pipeline.config import DescribeConfig
    from .pipeline.describe import Pipeline

    bundle = out / "bundles" / "efficientnet-lite0"
    if not (bundle / "edgeship.json").is_file():
        from .optimize.export import ExportSpec, export

        with console.status("exporting efficientnet-lite0 (ImageNet-pretrained) to ONNX ..."):
            export("efficientnet-lite0", bundle, ExportSpec(dynamic_batch=True), overwrite=True)
    found = photos()
    names = [n for n in ("chelsea", "coffee", "rocket", "china", "dog", "grace_hopper") if n in found]
    names = names[:2] if quick else names
    config = DescribeConfig(max_tokens=32 if quick else 48)
    with console.status("loading EfficientNet-Lite0 and SmolLM2-135M-Instruct, caching the prompt's head ..."):
        pipe = Pipeline.load(bundle, default_llm_path(), config)
    try:
        head = f"{len(pipe.head_tokens)} tokens, evaluated once in {pipe.prefix.warm_ms:.0f} ms" if pipe.prefix else "off"
        console.print(f"prompt head (system text and template): {head}", highlight=False)
        results = describe_images(pipe, [found[n] for n in names], console)
    finally:
        pipe.close()
    rows = []
    for name, r in zip(names, results):
        t, u = r["timing_ms"], r.get("usage") or {}
        rows.append(f"| {name} | {_vision_line(r['vision'])} | {r['description']} | {t['vision']:.0f} | "
                    f"{t.get('first_token', float('nan')):.0f} | {u.get('evaluated_prompt_tokens')} of "
                    f"{u.get('prompt_tokens')} | {t['total']:.0f} |")
    md = ["## Vision + LLM: describe (EfficientNet-Lite0 + SmolLM2-135M-Instruct, one process)", "",
          f"Prompt head cached: {head}. Times measured in this run, ms.", "",
          "| photo | vision | description | vision ms | first token ms | prompt tokens evaluated | total ms |",
          "|---|---|---|---|---|---|---|", *rows]
    return {"photos": names, "results": results, "markdown": "\n".join(md)}


__all__ = ["describe_section"]
