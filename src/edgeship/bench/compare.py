"""Every way this host can run a bundle, timed side by side, and the fastest that passes its checks.

>>> report = compare_backends("effnet/", CompareConfig(threads=2, runs=100))
>>> [(r["label"], round(r["p50_ms"], 2)) for r in report["rows"]], report["pick"]["label"]
([('onnxruntime', 6.1), ('openvino fp32', 5.9), ('litert-uint8', 2.8)], 'litert-uint8')

A way is an engine, a provider and a precision: ONNX Runtime on the CPU (the reference that made
the golden pair) and on every GPU provider this onnxruntime has, OpenVINO fp32 on the same
model.onnx, TensorRT where there is a GPU, LiteRT for .tflite bundles, and each declared variant of
the bundle (a reduced precision admitted by the accuracy gate). Reduced precisions are never tried
unless declared. Each way loads with the golden check on: one that disagrees is listed as refused,
with by how much, and never picked. The ways that load are timed interleaved (bench.latency:
rounds of consecutive runs, each way in turn) on the same input (each way's golden input: the
same picture, prepared as that way is fed).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from ..bundle import Bundle, Format, open_bundle
from ..errors import EdgeshipError, InputError
from ..runtime import Model, RuntimeConfig
from ..runtime.backends import BackendKind
from .env import environment
from .latency import interleaved

ENGINE_MODULES = {BackendKind.ONNXRUNTIME: "onnxruntime", BackendKind.OPENVINO: "openvino",
                  BackendKind.LITERT: "ai_edge_litert", BackendKind.TENSORRT: "tensorrt"}
REFERENCE = "onnxruntime"


@dataclass(frozen=True)
class CompareConfig:
    backends: str = "all"  # "all" or a comma list of engines (onnxruntime, openvino, litert, tensorrt)
    threads: Union[int, None] = None
    batch: int = 1
    warmup: int = 10
    runs: int = 100
    # Rounds of runs/rounds consecutive runs, each way in turn: on a shared machine the load moves
    # within seconds, and more, shorter rounds spread it over every way alike (10 runs per round
    # keeps each way's weights warm in cache, as a deployed model's are).
    rounds: int = 20
    options: tuple[tuple[str, str], ...] = ()  # engine options given with --provider-option
    only: tuple[str, ...] = ()  # time only the ways with these labels (tune's head-to-head)

    def __post_init__(self) -> None:
        if self.runs < self.rounds or self.rounds < 1 or self.warmup < 0 or self.batch < 1:
            raise InputError(f"--runs must be at least the rounds ({self.rounds}), --warmup >= 0, --batch >= 1")

    def kinds(self) -> list[BackendKind]:
        if self.backends == "all":
            return list(BackendKind)
        return [BackendKind.parse(k.strip()) for k in self.backends.split(",") if k.strip()]


@dataclass(frozen=True)
class Way:
    label: str
    config: RuntimeConfig
    gate: dict[str, Any] = field(default_factory=dict)


def gate_text(g: dict[str, Any]) -> str:
    """One cell for a way's checks: the accuracy gate a variant passed (or failed), else what was compared."""
    if "gate" not in g:
        return g.get("compared", "")
    if g["gate"] == "similarity":
        text = f"output error {g['output_error']:.3f} (similarity gate: random weights)"
    elif g["gate"] == "accuracy":
        text = f"accuracy {g['accuracy']:.3f} of FP32's kept"
    else:
        text = f"top-1 agreement {g['agreement']:.3f} on {g.get('samples', '?')} photo crops"
    return text + ("" if g.get("passed") else "; FAILS the gate: never picked")


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _ort_gpu_providers() -> list[str]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [p for p, ep in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")) if ep in have]


def ways(bundle: Bundle, cfg: CompareConfig) -> tuple[list[Way], list[dict[str, str]]]:
    """The ways to try on this host, and those left out with the reason."""
    kinds, out, skipped = cfg.kinds(), [], []
    base = RuntimeConfig(intra_op_threads=cfg.threads, golden_check=True)
    fmt = bundle.manifest.format

    def add(label, kind, gate=None, **changes):
        if kind not in kinds:
            return
        if not _have(ENGINE_MODULES[kind]):
            skipped.append({"label": label, "reason": f"{ENGINE_MODULES[kind]} is not installed"})
            return
        opts = cfg.options if changes.get("provider") not in (None, "cpu") or kind is not BackendKind.ONNXRUNTIME else ()
        out.append(Way(label, base.with_changes(backend=kind, options=opts, **changes), gate or {}))

    if fmt is Format.ONNX:
        add(REFERENCE, BackendKind.ONNXRUNTIME, {"compared": "reference (made the golden pair)"}, provider="cpu")
        if BackendKind.ONNXRUNTIME in kinds and _have("onnxruntime"):
            for p in _ort_gpu_providers():
                add(f"onnxruntime {p}", BackendKind.ONNXRUNTIME, {"compared": "golden check (fp32)"}, provider=p)
        add("openvino fp32", BackendKind.OPENVINO, {"compared": "golden check (fp32)"}, precision="fp32")
        if BackendKind.TENSORRT in kinds:
            from ..targets.choice import gpu_names

            if not gpu_names():
                skipped.append({"label": "tensorrt", "reason": "no NVIDIA GPU (no driver under /proc/driver/nvidia)"})
            else:
                add("tensorrt", BackendKind.TENSORRT, {"compared": "golden check (graph precision)"})
    elif fmt is Format.TFLITE:
        add("litert", BackendKind.LITERT, {"compared": "reference (made the golden pair)"})
    for v in bundle.manifest.variants:
        kind = BackendKind.parse(v.backend)
        if v.precision == "bf16" and kind is BackendKind.OPENVINO and _have("openvino"):
            from ..runtime.backends.ov import cpu_capabilities

            if "BF16" not in cpu_capabilities():
                skipped.append({"label": v.name, "reason": "this CPU has no bf16 (OpenVINO would run it as fp32)"})
                continue
        add(v.name, kind, {**v.gate, "variant": v.name}, variant=v.name)
    if fmt is Format.ONNX and BackendKind.OPENVINO in kinds and _have("openvino"):
        declared = {v.precision for v in bundle.manifest.variants if v.backend == "openvino"}
        for precision in ("bf16", "int8"):
            if precision not in declared:
                skipped.append({"label": f"openvino-{precision}", "reason": "not a declared variant (reduced precision "
                                f"runs only when gated: `edgeship variant add BUNDLE openvino-{precision}`)"})
    return out, skipped


def _input(model: Model, batch: int) -> np.ndarray:
    golden = model.golden()
    if golden is not None:
        x = golden[0][:1]
    else:
        x = np.random.default_rng(0).standard_normal(model.blank_input(1).shape).astype(np.float32)
    return np.repeat(x, batch, axis=0).astype(model.input_dtype)


def compare_backends(path: Union[str, Path, Bundle], cfg: CompareConfig,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load every way (golden check on), time those that load interleaved, and pick the fastest."""
    say = log or (lambda line: None)
    bundle = path if isinstance(path, Bundle) else open_bundle(path)
    candidates, skipped = ways(bundle, cfg)
    if cfg.only:
        candidates = [w for w in candidates if w.label in cfg.only]
    if not candidates:
        raise InputError(f"{bundle.name}: no backend to compare on this host ({'; '.join(s['reason'] for s in skipped)})")
    loaded: dict[str, tuple[Way, Model]] = {}
    refused = []
    for w in candidates:
        try:
            model = Model(bundle, w.config)
        except EdgeshipError as exc:
            refused.append({"label": w.label, "reason": str(exc)})
            say(f"{w.label}: refused ({exc})")
            continue
        if cfg.batch > 1 and model.max_batch is not None and model.max_batch != cfg.batch:
            skipped.append({"label": w.label, "reason": f"fixed batch {model.max_batch} in the file"})
            model.close()
            continue
        loaded[w.label] = (w, model)
        check = model.golden_at_load
        say(f"{w.label}: loaded in {model.load_ms:.0f} ms" + (f", golden max error {check.max_abs_error:.2e}" if check else ""))
    try:
        inputs = {k: _input(m, cfg.batch) for k, (_, m) in loaded.items()}
        fns: dict[str, Callable[[], object]] = {k: functools.partial(m.run, inputs[k]) for k, (_, m) in loaded.items()}
        stats = interleaved(fns, cfg.warmup, cfg.runs, cfg.batch, cfg.rounds) if fns else {}
        rows = []
        for label, (w, m) in loaded.items():
            s = stats[label]
            check = m.golden_at_load
            rows.append({
                "label": label, "backend": m.backend.value, "variant": w.config.variant,
                "provider": w.config.provider, "precision": m.describe().get("precision") or "fp32",
                "runtime": m.describe(), "footer": m.describe_short(), "load_ms": m.load_ms,
                "golden_max_error": check.max_abs_error if check else None,
                "golden_tolerance": check.tolerance if check else None,
                "gate": w.gate, **s.to_dict(),
            })
    finally:
        for _, m in loaded.values():
            m.close()
    ref = next((r for r in rows if r["label"] == REFERENCE), None)
    for r in rows:
        r["speedup_vs_reference"] = ref["p50_ms"] / r["p50_ms"] if ref and r["p50_ms"] else None
    eligible = [r for r in rows if r["gate"].get("passed", True)]
    pick = min(eligible, key=lambda r: r["p50_ms"]) if eligible else None
    return {
        "bundle": str(bundle.source), "name": bundle.name, "environment": environment(cfg.threads),
        "config": {"backends": cfg.backends, "threads": cfg.threads, "batch": cfg.batch, "warmup": cfg.warmup,
                   "runs": cfg.runs, "rounds": cfg.rounds, "options": dict(cfg.options), "only": list(cfg.only)},
        "rows": sorted(rows, key=lambda r: r["p50_ms"]), "refused": refused, "skipped": skipped,
        "pick": pick,
    }


def print_comparison(report: dict[str, Any], console) -> None:
    from rich.table import Table

    from .env import describe

    t = Table(title=f"{report['name']}: every backend on this host, batch {report['config']['batch']}, interleaved",
              title_justify="left", caption=f"measured on {describe(report['environment'])}", caption_justify="left")
    for c in ("way", "precision", "p50 ms", "p95 ms", "items/s", f"vs {REFERENCE}", "golden max err", "gate"):
        t.add_column(c, justify="left" if c in ("way", "precision", "gate") else "right")
    pick = (report.get("pick") or {}).get("label")
    for r in report["rows"]:
        gtext = gate_text(r["gate"])
        speed = f"{r['speedup_vs_reference']:.2f}x" if r.get("speedup_vs_reference") else "-"
        err = f"{r['golden_max_error']:.2e}" if r.get("golden_max_error") is not None else "-"
        t.add_row(("★ " if r["label"] == pick else "") + r["label"], str(r["precision"]), f"{r['p50_ms']:.2f}",
                  f"{r['p95_ms']:.2f}", f"{r['throughput']:.1f}", speed, err, gtext)
    console.print(t)
    for r in report["rows"]:
        console.print(f"  {r['label']}: {r['footer']}", highlight=False)
    for r in report["refused"]:
        console.print(f"  refused {r['label']}: {r['reason']}", style="red", highlight=False)
    for r in report["skipped"]:
        console.print(f"  not run {r['label']}: {r['reason']}", style="yellow", highlight=False)
    if pick:
        console.print(f"pick: {pick} ({report['pick']['p50_ms']:.2f} ms at p50)", highlight=False)
