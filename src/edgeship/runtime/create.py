"""``create_bundle("model.onnx")``: any ONNX or TFLite file as a bundle, its golden pair made and checked.

>>> result = create_bundle("yolov8n.onnx", "yolov8n/")
>>> result.inferred[:1], result.assumed[:1]
(['Ultralytics metadata: names, imgsz, stride, task'], [])
>>> result.check.ok, result.golden_source
(True, 'astronaut.png (scikit-image)')

The manifest comes from ``bundle.infer`` (what the exporter embedded, and what was assumed). The
golden input is a real photo prepared as the manifest says (an array of the input's shape when the
model takes no pictures); the model's answer to it, from the engine its file calls for, is the
golden output. The written bundle is then loaded again with the golden check on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..bundle import Bundle, Task, open_bundle, write_bundle
from ..bundle.infer import infer_manifest
from ..errors import BundleError, InputError
from .config import RuntimeConfig
from .model import GoldenCheck, Model

PathLike = Union[str, os.PathLike]
# The photo a golden pair is made from, per task: one whose answer is known (docs/assets.md).
_GOLDEN_PHOTO = {Task.CLASSIFY: "chelsea", Task.DETECT: "astronaut"}


@dataclass
class Created:
    bundle: Bundle
    inferred: list[str]
    assumed: list[str]
    check: GoldenCheck
    golden_source: str
    runtime: str


def _labels(path: Union[PathLike, None]) -> Union[list[str], None]:
    if path is None:
        return None
    try:
        labels = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: labels file unreadable ({exc})") from exc
    if not labels:
        raise InputError(f"{path}: the labels file is empty (one label per line)")
    return labels


def create_bundle(model: PathLike, out: Union[PathLike, None] = None, *, labels_file: Union[PathLike, None] = None,
                  preset: Union[str, None] = None, name: Union[str, None] = None, overwrite: bool = False) -> Created:
    """Write a bundle for ``model`` (an .onnx or .tflite file) at ``out`` and check its golden pair."""
    path = Path(model)
    if path.suffix.lower() not in (".onnx", ".tflite"):
        raise InputError(f"{path}: bundle create takes an .onnx or .tflite file")
    found = infer_manifest(path, labels=_labels(labels_file), preset=preset, name=name)
    out = Path(out) if out is not None else path.with_suffix("")
    if out.resolve() == path.resolve().parent:
        raise InputError(f"{out}: give another folder than the one holding the model file")
    manifest = found.manifest
    if found.labels is not None and len(manifest.outputs) == 1 and manifest.task is Task.CLASSIFY:
        n = manifest.outputs[0].shape[-1]
        if isinstance(n, int) and n != len(found.labels):
            raise InputError(f"{len(found.labels)} labels for {n} output classes; give the matching labels file")
    with tempfile.TemporaryDirectory(prefix="edgeship-create-") as tmp:
        stage = Path(tmp)
        shutil.copyfile(path, stage / manifest.model)
        extra = {}
        for fname, arr in found.extra_files.items():
            np.save(stage / fname, arr)
            extra[fname] = stage / fname
        model_run = Model(Bundle(stage, manifest), RuntimeConfig(golden_check=False))
        try:
            x, source = _golden_input(model_run, manifest.task)
            y = model_run.run(x)[0]
        finally:
            model_run.close()
        written = write_bundle(out, manifest, stage / manifest.model, labels=found.labels, golden=(x, y),
                               extra_files=extra, overwrite=overwrite)
    reopened = Model(open_bundle(written.root), RuntimeConfig(golden_check=True))
    try:
        check = reopened.golden_at_load
        runtime = reopened.describe_short()
    finally:
        reopened.close()
    if check is None:
        raise BundleError(f"{written.root}: written without a golden pair")
    return Created(written, found.inferred, found.assumed, check, source, runtime)


def _golden_input(model: Model, task: Task) -> tuple[np.ndarray, str]:
    if model.takes_images:
        from ..photos import photos

        found = photos()
        name = _GOLDEN_PHOTO.get(task, "chelsea")
        key = name if name in found else next(iter(found), None)
        if key is not None:
            return model.prepare(found[key]).x[None], f"{Path(str(found[key])).name} (a photo an installed package ships)"
    x = np.random.default_rng(0).standard_normal(model.blank_input(1).shape).astype(model.input_dtype)
    return x, "seeded random input of the model's shape"
