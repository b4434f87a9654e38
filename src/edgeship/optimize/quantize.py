"""``quantize(bundle, QuantizeConfig(), out)``: INT8 (or FP16) that is accurate and faster, with the proof.

>>> result = quantize("resnet18/", QuantizeConfig(calibration="photos", target="x86"), "resnet18-int8/")
>>> result.choice, result.speedup, result.agreement
('int8:all', 2.4, 0.994)

What happens, in order:

1. ONNX Runtime's pre-processing (symbolic shape inference, graph optimisation) on the FP32 model.
2. Calibration once on real images (MinMax, Entropy or Percentile), cached for every layout; a tensor
   the histogram methods cannot bin (near-constant) is calibrated with MinMax, and the log and the
   provenance say which (:func:`.qbuild.calibrate`).
3. Candidate layouts (:mod:`.qlayouts`): which operators are INT8, in QDQ or QOperator format, with
   u8/s8 activations and s8 per-channel weights as the target preset says.
4. Speed gate: every candidate timed against FP32 on this host, side by side in one process.
5. Accuracy gate, fastest candidate first: labelled data must keep ``min_accuracy`` of FP32's accuracy,
   unlabelled held-out augmented crops ``min_agreement`` top-1 agreement with FP32; a model whose
   provenance says random weights is judged on how close its outputs stay to FP32's instead
   (``max_output_error``, :func:`.qgate.output_error`). A candidate that fails gets its most sensitive
   nodes kept float (:func:`.qgate.repair`: outlier activations by per-channel SQNR, then graph
   segments ranked by what they win back) and is tried again.
6. The winner is timed once more against FP32; if it is not faster, the bundle keeps FP32 and says why.

The output bundle holds the chosen model; its provenance row records both timings, the gate that ran
and its figures, the calibration (and any fallback), the layout, the excluded nodes and every candidate
tried. The steps are the methods of :class:`.qsearch.QuantizeRun`; this module drives them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import numpy as np

from .._config import to_dict
from .._deps import require
from ..errors import QuantizeError
from .qconfig import STATIC_LAYOUTS, Gate, Method, Mode, QuantizeConfig, TargetFormat, target_format
from .qgate import Candidate, Timer, session
from .qlayouts import Layout

__all__ = ["Gate", "Layout", "Method", "Mode", "QuantizeConfig", "QuantizeError", "QuantizeResult", "STATIC_LAYOUTS",
           "TargetFormat", "quantize", "target_format"]


@dataclass
class QuantizeResult:
    """What quantize() chose and why, with every figure it measured."""

    bundle: Any  # the output Bundle
    choice: str  # "int8:<layout>", "fp16" or "fp32"
    reason: str
    mode: Mode
    fp32: Candidate
    chosen: Union[Candidate, None]
    candidates: list[Candidate]
    data: dict[str, Any]

    @property
    def speedup(self) -> Union[float, None]:
        return self.chosen.speedup if self.chosen else None

    @property
    def agreement(self) -> Union[float, None]:
        return self.chosen.agreement if self.chosen else None

    @property
    def gate(self) -> Union[str, None]:
        """The accuracy gate that ran: "accuracy", "agreement" or "similarity"."""
        return (self.data.get("gate") or {}).get("gate")

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "reason": self.reason, "mode": self.mode.value, "gate": self.data.get("gate"),
                "fp32": self.fp32.row(), "chosen": self.chosen.row() if self.chosen else None,
                "candidates": [c.row() for c in self.candidates], "data": self.data,
                "bundle": str(self.bundle.root) if self.bundle is not None else None}


@contextlib.contextmanager
def _workdir(workdir: Union[str, os.PathLike, None]) -> Iterator[Path]:
    """``workdir`` (kept), or a temporary folder removed at the end."""
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="edgeship-quant-") as tmp:
        yield Path(tmp)


def quantize(bundle, config: QuantizeConfig | None = None, out: Union[str, os.PathLike, None] = None, *,
             overwrite: bool = False, timer: Timer | None = None, log: Callable[[str], None] | None = None,
             workdir: Union[str, os.PathLike, None] = None) -> QuantizeResult:
    """Quantize ``bundle`` as ``config`` says and write the chosen model to the bundle ``out``.

    ``timer`` replaces the host timing (tests inject one); ``log`` receives one line per step;
    ``workdir``: keep every candidate model there (default: a temporary folder, removed at the end).
    """
    from ..bundle import Bundle, open_bundle
    from .qsearch import QuantizeRun

    require("onnx", "optimize", "quantization")
    require("onnxruntime.quantization", "optimize", "quantization")
    config = config or QuantizeConfig()
    bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    with _workdir(workdir) as work:
        run = QuantizeRun(bundle, config, work, timer, log or (lambda line: None))
        run.prepare()
        run.build_candidates()
        run.rank()
        chosen, reason = run.choose()
        result = QuantizeResult(None, chosen.name if chosen else "fp32", reason, run.mode, run.fp32, chosen,
                                run.candidates, run.info())
        if out is not None:
            result.bundle = _write(bundle, result, config, out, overwrite, run.data.evaluation[0])
        return result


def _write(bundle, result: QuantizeResult, config: QuantizeConfig, out, overwrite: bool, sample: np.ndarray):
    """The output bundle: the chosen model (or FP32), a fresh golden pair, and the provenance row."""
    from importlib.metadata import version

    from ..bundle import Stage, StageName, now_iso, write_bundle

    chosen = result.chosen
    model_file = chosen.path if chosen else bundle.model_path
    golden = bundle.golden()
    x = golden[0] if golden is not None else sample[None]
    sess = session(Path(model_file), config.threads)
    y = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    params = to_dict(config)
    metrics = {
        "choice": result.choice, "reason": result.reason, "mode": result.mode.value, "gate": result.data.get("gate"),
        "fp32": result.fp32.row(), "chosen": chosen.row() if chosen else None,
        "candidates": [c.row() for c in result.candidates],
        "excluded_nodes": [n for e in (chosen.excluded if chosen else []) for n in e["nodes"]],  # by the fallback
        "float_nodes": list(chosen.plan.exclude) if chosen and chosen.plan else [],  # layout + fallback
        "data": result.data,
    }
    stage = Stage(StageName.QUANTIZE, now_iso(), f"edgeship + onnxruntime {version('onnxruntime')}", params, metrics)
    manifest = dataclasses.replace(bundle.manifest, model="model.onnx").with_stage(stage)
    keep = {bundle.manifest.model, bundle.manifest.labels, bundle.manifest.golden.file if bundle.manifest.golden else None}
    extra = {name: bundle.root / name for name in bundle.manifest.files if name not in keep}  # e.g. SSD anchors
    return write_bundle(out, manifest, model_file, labels=bundle.labels, golden=(x, y), extra_files=extra,
                        overwrite=overwrite)
