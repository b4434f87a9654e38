"""Export a PyTorch module to an ONNX bundle that validates itself.

>>> src = resolve_model("efficientnet-lite0")
>>> result = export_module(src.module, "effnet/", ExportSpec(), name=src.name,
...                        labels=src.labels, preprocessing=src.preprocessing)
>>> result.max_abs_diff, result.top1_agree
(3.1e-06, True)

The exported graph is run in ONNX Runtime and compared with torch on random inputs and on
real photos preprocessed exactly as the bundle says; beyond ``atol + rtol * |torch|`` the export
fails and says by how much. Nothing is written to ``out`` unless validation passes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from .. import __version__
from .._deps import require
from ..bundle import Bundle, Golden, Manifest, Preprocessing, Stage, StageName, Task, TensorSpec, now_iso, write_bundle
from ..errors import ExportError
from .config import ExportSpec  # noqa: F401 - re-exported: the stage's config


@dataclass
class ExportResult:
    bundle: Bundle
    max_abs_diff: float  # worst |onnx - torch| over all validation inputs
    top1_agree: Union[bool, None]  # on real photos, when there were any
    seconds: float
    checked_on: list[str]


def _torch_export(module, dummy, path: Path, spec: ExportSpec) -> None:
    torch = require("torch", "optimize", "exporting PyTorch models")
    dynamic = {"input": {0: "batch"}, "output": {0: "batch"}} if spec.dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; failures still raise
        torch.onnx.export(
            module, dummy, str(path), opset_version=spec.opset, input_names=["input"],
            output_names=["output"], dynamic_axes=dynamic, do_constant_folding=True, dynamo=False,
        )


def _simplify(path: Path) -> None:
    onnxslim = require("onnxslim", "optimize", "simplifying ONNX graphs")
    onnx = require("onnx", "optimize")
    with contextlib.redirect_stdout(io.StringIO()):
        slim = onnxslim.slim(str(path))
    onnx.save(slim, str(path))


def _validation_inputs(pre: Preprocessing, spec: ExportSpec, photos: Sequence[Any], seed: int = 0):
    """Random inputs (a batch at the export batch size) and real photos preprocessed as the bundle will."""
    from ..runtime.preprocess import Preprocessor

    h, w = spec.input_size or pre.size
    shape = (spec.batch, spec.channels, h, w) if pre.layout == "NCHW" else (spec.batch, h, w, spec.channels)
    rng = np.random.default_rng(seed)
    cases = [("random", rng.standard_normal(shape).astype(np.float32))]
    if photos and spec.channels == pre.channels:
        prep = Preprocessor(dataclasses.replace(pre, size=(h, w)))
        for p in photos:
            x = prep(p)[0][None]
            cases.append((Path(str(p)).name, np.repeat(x, spec.batch, axis=0)))
    return cases


def export_module(
    module: Any,
    out: Union[str, Path],
    spec: ExportSpec = ExportSpec(),
    *,
    name: str,
    task: Task = Task.CLASSIFY,
    labels: list[str] | None = None,
    preprocessing: Preprocessing | None = None,
    version: str = "1",
    photos: Sequence[Any] = (),
    provenance: Sequence[Stage] = (),
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export ``module`` to a validated bundle at ``out``."""
    torch = require("torch", "optimize", "exporting PyTorch models")
    from ..runtime.session import RuntimeConfig, create_session

    t0 = time.perf_counter()
    pre = preprocessing or Preprocessing()
    if spec.input_size is not None:
        pre = dataclasses.replace(
            pre, size=tuple(spec.input_size),
            resize_to=max(pre.resize_to or 0, int(round(min(spec.input_size) / 0.875))) if pre.resize_to else None,
        )
    module = module.eval()
    cases = _validation_inputs(pre, spec, photos)
    with tempfile.TemporaryDirectory(prefix="edgeship-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with torch.inference_mode():
                _torch_export(module, torch.from_numpy(cases[0][1]), path, spec)
        except Exception as exc:  # the exporter raises many types for unsupported ops
            raise ExportError(f"{name}: torch.onnx.export failed at opset {spec.opset}: {str(exc)[:400]}") from exc
        if spec.simplify:
            _simplify(path)
        session = create_session(path, RuntimeConfig(log_severity=3))
        worst, agree, checked, ran = 0.0, [], [], []
        for label, x in cases:
            with torch.inference_mode():
                ref = module(torch.from_numpy(x))
            ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).detach().numpy()
            got = session.run(None, {session.get_inputs()[0].name: x})[0]
            if got.shape != ref.shape:
                raise ExportError(f"{name}: ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
            diff = np.abs(got - ref)
            worst = max(worst, float(diff.max()))
            excess = diff - (spec.atol + spec.rtol * np.abs(ref))
            if (excess > 0).any():
                raise ExportError(
                    f"{name}: the exported model differs from PyTorch on the {label} input by up to "
                    f"{float(diff.max()):.3g} (tolerance atol={spec.atol:g} + rtol={spec.rtol:g}*|x|, exceeded by "
                    f"{float(excess.max()):.3g}); try another --opset, or --no-simplify"
                )
            if label != "random" and task is Task.CLASSIFY and ref.ndim == 2:
                agree.append(bool((ref.argmax(1) == got.argmax(1)).all()))
            checked.append(label)
            ran.append((label, x, got))
        # the golden pair is a real photo when there is one: it also catches preprocessing drift
        golden = next(((x, y) for label, x, y in ran if label != "random"), ran[0][1:])
        inputs = [TensorSpec(i.name, [d if isinstance(d, int) else "batch" for d in i.shape], "float32", pre.layout)
                  for i in session.get_inputs()]
        outputs = [TensorSpec(o.name, [d if isinstance(d, int) else "batch" for d in o.shape], "float32")
                   for o in session.get_outputs()]
        size = path.stat().st_size
        params = int(sum(p.numel() for p in module.parameters()))
        metrics: dict[str, Any] = {
            "max_abs_diff_vs_torch": worst,
            "top1_agree_on_photos": all(agree) if agree else None,
            "file_bytes": size,
            "params": params,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        metadata: dict[str, Any] = {"params": params}
        try:
            from ..targets.flops import onnx_cost

            cost = onnx_cost(path)
            metrics["flops"] = metadata["flops"] = int(cost.flops)
        except Exception:  # FLOPs are a report, never a reason to fail an export
            pass
        stage = Stage(
            StageName.EXPORT, now_iso(), f"edgeship {__version__}, torch {torch.__version__}",
            params={**(source or {}), **_spec_params(spec)}, metrics=metrics,
        )
        manifest = Manifest(
            name=name, model="model.onnx", version=version, task=task, inputs=inputs, outputs=outputs,
            preprocessing=pre, provenance=[*provenance, stage], golden=Golden(atol=max(1e-5, spec.atol), rtol=spec.rtol),
            metadata=metadata,
        )
        bundle = write_bundle(out, manifest, path, labels=labels, golden=golden, overwrite=overwrite)
    return ExportResult(bundle, worst, all(agree) if agree else None, time.perf_counter() - t0, checked)


def _spec_params(spec: ExportSpec) -> dict[str, Any]:
    from .._config import to_dict

    return to_dict(spec)


def export(model: str, out: Union[str, Path], spec: ExportSpec = ExportSpec(), *, weights: str | None = None,
           name: str | None = None, overwrite: bool = False, photos: Sequence[Any] | None = None) -> ExportResult:
    """``edgeship export MODEL``: resolve the name, export, validate on random inputs and real photos."""
    from ..photos import photos as find_photos
    from .models import resolve_model

    src = resolve_model(model, weights=weights)
    if photos is None:
        photos = list(find_photos().values())[:4]
    return export_module(
        src.module, out, spec, name=name or src.name, task=src.task, labels=src.labels,
        preprocessing=src.preprocessing, photos=photos, overwrite=overwrite,
        source={"source": src.source, "weights": weights, "pretrained": src.pretrained},
    )
