"""``edgeship demo``: the main job on the embedded default model, end to end, measured.

Sections run in order and each writes its part of ``results/demo.json`` and ``results/report.md``:

- vision (here): export the packaged ImageNet-pretrained EfficientNet-Lite0, benchmark it beside
  PyTorch eager at batch 1 and 8, classify the real photos that installed packages ship;
- optimize, llm (here), describe, backends, ota, health (a module each in this package) join
  ``SECTIONS`` when what they need is installed (``_optional_sections``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ..util import write_json, write_text_atomic

# Photos whose answer is known (docs/assets.md lists the packages that ship them): printed beside
# the prediction so the user can check.
EXPECTED = {"chelsea": ("Egyptian cat", "tiger cat", "tabby"), "coffee": ("espresso",)}

Section = Callable[[Path, Any, bool], dict[str, Any]]


def vision_section(out: Path, console, quick: bool) -> dict[str, Any]:
    from rich.table import Table

    from ..bench.report import markdown, print_report
    from ..bench.runner import BenchConfig, bench_bundles
    from ..optimize.export import ExportSpec, export
    from ..photos import photos
    from ..runtime import Model, RuntimeConfig

    bundle_dir = out / "bundles" / "efficientnet-lite0"
    found = photos()
    with console.status("exporting efficientnet-lite0 (ImageNet-pretrained) to ONNX and validating it ..."):
        result = export("efficientnet-lite0", bundle_dir, ExportSpec(dynamic_batch=True), overwrite=True,
                        photos=[found[k] for k in ("chelsea", "coffee") if k in found])
    console.print(
        f"exported {bundle_dir}: max |onnx - torch| {result.max_abs_diff:.2e} on {', '.join(result.checked_on)}; "
        f"top-1 on photos {'matches PyTorch' if result.top1_agree else 'DIFFERS from PyTorch'}",
        highlight=False,
    )
    runs = 20 if quick else 100
    cfg = BenchConfig(batches=(1, 8), threads=None, warmup=5, runs=runs, vs_torch=True)
    report = bench_bundles([bundle_dir], BenchConfig(batches=(1,), warmup=5, runs=runs, vs_torch=True),
                           show_progress=console.is_terminal) if quick else bench_bundles(
        [bundle_dir], cfg, show_progress=console.is_terminal)
    print_report(report, console)

    model = Model.load(bundle_dir, RuntimeConfig())
    table = Table(title="EfficientNet-Lite0 on real photos from installed packages", title_justify="left")
    for c in ("photo", "top-1", "score", "top-2", "top-3", "expected", "decode+pre ms", "infer ms"):
        table.add_column(c, justify="right" if c.endswith("ms") or c == "score" else "left")
    photo_rows = []
    for name, path in found.items():
        pred = model.predict(path, top_k=3)
        cls = pred.output["classes"]
        expected = EXPECTED.get(name)
        verdict = "" if expected is None else ("✓ " if cls[0]["label"] in expected else "✗ ") + " / ".join(expected)
        t = pred.timing_ms
        table.add_row(name, cls[0]["label"], f"{cls[0]['score']:.3f}", cls[1]["label"], cls[2]["label"], verdict,
                      f"{t['decode'] + t['preprocess']:.1f}", f"{t['infer']:.1f}")
        photo_rows.append({"photo": name, "path": str(path), "classes": cls, "timing_ms": t,
                           "expected": list(expected) if expected else None})
    console.print(table)
    md = [
        "## Vision: EfficientNet-Lite0 (ImageNet-pretrained, packaged)", "",
        f"Export: max |onnx - torch| = {result.max_abs_diff:.2e} on {', '.join(result.checked_on)}.", "",
        markdown(report), "",
        "| photo | top-1 | score | top-2 | top-3 | expected |", "|---|---|---|---|---|---|",
        *[f"| {r['photo']} | {r['classes'][0]['label']} | {r['classes'][0]['score']:.3f} | {r['classes'][1]['label']} | "
          f"{r['classes'][2]['label']} | {' / '.join(r['expected'] or [])} |" for r in photo_rows],
    ]
    return {"export": {"max_abs_diff": result.max_abs_diff, "top1_agree": result.top1_agree},
            "bench": report, "photos": photo_rows, "markdown": "\n".join(md)}


def optimize_section(out: Path, console, quick: bool) -> dict[str, Any]:
    """The article's pipeline on real data: Fashion-MNIST teacher -> distilled student -> pruned -> INT8."""
    from ..optimize.pipeline import fashion_mnist_demo
    from ..optimize.report import Report

    r = fashion_mnist_demo(out / "optimize", quick=quick, progress=console.is_terminal, console=console)
    report = Report.from_dict(r["report"])
    console.print(report.table())
    for name, goal in r["goals"].items():
        console.print(f"goal {name}: {goal}", highlight=False)
    md = ["## Optimizer pipeline on Fashion-MNIST (10k test set)", "", report.markdown(), "",
          f"Goals: {r['goals']}", "", f"HTML report with plots: {r['files'].get('html', '')}"]
    return {**r, "markdown": "\n".join(md)}


def llm_section(out: Path, console, quick: bool) -> dict[str, Any]:
    """The embedded default LLM (SmolLM2-135M-Instruct Q4_1) through llama.cpp: load, TTFT, tok/s, RAM."""
    from rich.table import Table

    from ..llm import demo_section

    with console.status("loading SmolLM2-135M-Instruct and asking it a question ..."):
        r = demo_section(out, max_tokens=24 if quick else 48)
    t = Table(title=f"LLM: {r['model']} ({r['quantization']}), {r['threads']} threads, llama.cpp", title_justify="left")
    for c in ("load s", "TTFT ms", "prompt tok/s", "generation tok/s", "RSS MB", "RSS added MB"):
        t.add_column(c, justify="right")
    cells = [f"{r['load_s']:.2f}", f"{r['ttft_s'] * 1e3:.0f}", f"{r['prompt_tps']:.0f}", f"{r['decode_tps']:.1f}",
             f"{r['rss_mb']:.0f}", f"{r['rss_added_mb']:.0f}"]
    t.add_row(*cells)
    console.print(t)
    console.print(f"Q: {r['question']}\nA: {r['answer']}", highlight=False)
    md = ["## LLM: SmolLM2-135M-Instruct (llama.cpp)", "",
          "| load s | TTFT ms | prompt tok/s | generation tok/s | RSS MB | RSS added MB |", "|---|---|---|---|---|---|",
          "| " + " | ".join(cells) + " |", "", f"Q: {r['question']}  ", f"A: {r['answer']}"]
    return {**r, "markdown": "\n".join(md)}


SECTIONS: dict[str, Section] = {"vision": vision_section}


def _optional_sections() -> None:
    """Sections from other parts of edgeship join when their code is installed."""
    import importlib.util

    if importlib.util.find_spec("torch_pruning") is not None:
        SECTIONS.setdefault("optimize", optimize_section)
    if importlib.util.find_spec("llama_cpp") is not None:
        from .describe import describe_section

        SECTIONS.setdefault("llm", llm_section)
        SECTIONS.setdefault("describe", describe_section)
    if importlib.util.find_spec("openvino") or importlib.util.find_spec("ai_edge_litert"):
        from .backends import backends_section

        SECTIONS.setdefault("backends", backends_section)
    if importlib.util.find_spec("tuf") is not None:
        from .ota import ota_section

        SECTIONS.setdefault("ota", ota_section)
    if importlib.util.find_spec("torch") is not None:
        from .thermal import health_section

        SECTIONS.setdefault("health", health_section)


def run_demo(out: Path, console, only: list[str] | None = None, skip: list[str] | None = None,
             quick: bool = False) -> dict[str, Any]:
    from ..bench.env import environment
    from ..errors import InputError

    _optional_sections()
    unknown = [n for n in [*(only or []), *(skip or [])] if n not in SECTIONS]
    if unknown:
        raise InputError(f"unknown demo section {unknown[0]!r}; sections on this install: {', '.join(SECTIONS)} "
                         "(optimize needs edgeship[optimize], llm needs edgeship[llm])")
    chosen = [s for s in SECTIONS if (not only or s in only) and s not in (skip or [])]
    if not chosen:
        raise InputError("--only and --skip leave no section to run")
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"environment": environment(), "sections": {}}
    md = ["# edgeship demo", "", f"Measured on {results['environment']['cpu']}, "
          f"{results['environment']['cores_logical']} cores, {results['environment']['date']}.", ""]
    for name in chosen:
        console.rule(f"[bold]{name}")
        t0 = time.perf_counter()
        section = SECTIONS[name](out, console, quick)
        section["seconds"] = round(time.perf_counter() - t0, 1)
        md += [section.pop("markdown", ""), ""]
        results["sections"][name] = section
    write_json(out / "demo.json", results)
    write_text_atomic(out / "report.md", "\n".join(md))
    console.print(f"wrote {out / 'demo.json'} and {out / 'report.md'}", highlight=False)
    return results
