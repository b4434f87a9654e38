"""``tune(bundle)``: measure every way this host runs a bundle and record the fastest as this host's choice.

>>> result = tune("effnet/", CompareConfig(threads=2))
>>> result.choice.backend, result.choice.variant, result.host
('litert', 'litert-uint8', 'cpu: AMD EPYC (x86_64; fma, avx2)')

The choice (engine, provider, variant, threads; for ONNX Runtime on the CPU the server's spinning
setting) goes into the bundle's ``runtimes``, keyed by this host's class (CPU model and ISA, or the
GPU's name for a GPU engine). ``predict`` and ``serve`` then load the bundle that way on a host of
the same class; on any other host the choice is reported and not applied. Only ways that passed
their golden check at load, and variants the accuracy gate admitted, can be chosen.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

from ..bundle import RuntimeChoice, now_iso, open_bundle, update_manifest
from ..errors import BenchError, BundleError
from .compare import CompareConfig, compare_backends

CLOSE = 0.05  # a runner-up within 5% of the fastest is timed again, head to head


@dataclass
class TuneResult:
    host: str
    choice: RuntimeChoice
    report: dict[str, Any]
    written: bool


def tune(path: Union[str, Path], cfg: CompareConfig | None = None, write: bool = True,
         log: Callable[[str], None] | None = None) -> TuneResult:
    """Compare every way (bench.compare), record the pick for this host in the bundle folder."""
    from ..targets.choice import host_class, is_gpu

    cfg = cfg or CompareConfig()
    bundle = open_bundle(path)
    if write and (bundle.is_bare or bundle.source != bundle.root):
        raise BundleError(f"{path}: tune records its choice in the bundle: give a bundle folder "
                          "(`edgeship bundle create` or `bundle unpack` makes one)")
    report = compare_backends(bundle, cfg, log)
    pick = report["pick"]
    if pick is None:
        raise BenchError(f"{bundle.name}: no way to run it passed its checks on this host: "
                         + "; ".join(r["reason"] for r in report["refused"]))
    eligible = sorted((r for r in report["rows"] if r["gate"].get("passed", True)), key=lambda r: r["p50_ms"])
    if len(eligible) > 1 and eligible[1]["p50_ms"] < eligible[0]["p50_ms"] * (1 + CLOSE):
        # Two ways within a few percent: one noisy run must not decide. They are timed again, head to
        # head, and the faster there is recorded (as quantize confirms its pick against the runner-up).
        again = compare_backends(bundle, dataclasses.replace(cfg, only=(eligible[0]["label"], eligible[1]["label"])), log)
        if again["pick"] is not None:
            report["head_to_head"] = {r["label"]: r["p50_ms"] for r in again["rows"]}
            pick = next(r for r in report["rows"] if r["label"] == again["pick"]["label"])
            report["pick"] = pick
    host = host_class(gpu=is_gpu(pick["backend"], pick["provider"]))
    runtime = pick["runtime"]
    threads = runtime.get("intra_op_threads", runtime.get("threads"))
    choice = RuntimeChoice(
        host=host, backend=pick["backend"], variant=pick["variant"], provider=pick["provider"],
        threads=cfg.threads if cfg.threads is not None else threads,
        # the server's spinning setting applies to ONNX Runtime's CPU threads only; "auto" is its
        # measured default (bench/serve_load.py), kept here so that serve states what it uses
        spinning="auto" if pick["backend"] == "onnxruntime" and pick["provider"] in (None, "cpu") else None,
        options=dict(cfg.options) if pick["provider"] not in (None, "cpu") or pick["backend"] != "onnxruntime" else {},
        p50_ms=pick["p50_ms"],
        measured={r["label"]: {"p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"], "precision": r["precision"]}
                  for r in report["rows"]},
        created=now_iso(),
    )
    if write:
        fresh = open_bundle(bundle.root)  # re-read: tune took a while
        manifest = dataclasses.replace(fresh.manifest, runtimes={**fresh.manifest.runtimes, host: choice})
        update_manifest(bundle.root, manifest)
    return TuneResult(host, choice, report, write)
