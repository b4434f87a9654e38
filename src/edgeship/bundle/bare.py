"""Manifests for bare model files: read what the graph says, assume the rest and say so."""

from __future__ import annotations

from pathlib import Path

from .manifest import Format, Manifest, TensorSpec
from ..errors import BundleError, NotABundleError

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _dim(d):
    return d if isinstance(d, int) else (d or None)


def ort_specs(session) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """TensorSpecs of an onnxruntime session's inputs and outputs (image layout guessed from the shape)."""

    def spec(arg, guess_layout: bool) -> TensorSpec:
        shape = [_dim(d) for d in arg.shape]
        layout = None
        if guess_layout and len(shape) == 4:
            if shape[1] in (1, 3):
                layout = "NCHW"
            elif shape[3] in (1, 3):
                layout = "NHWC"
        return TensorSpec(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type), layout)

    return ([spec(a, True) for a in session.get_inputs()], [spec(a, False) for a in session.get_outputs()])


def load_onnx_session_for_inspection(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(
            f"{path}: not a loadable ONNX model ({first[:200]}); check the file is complete, or re-export it"
        ) from exc


def _inferred(path: Path):
    from .infer import infer_manifest

    fmt = Format.from_suffix(path)
    if not path.is_file():
        raise NotABundleError(f"{path}: not a file")
    found = infer_manifest(path)
    note = f"bare {fmt.value} file: no edgeship.json, so defaults were assumed (`edgeship bundle create` records them)"
    return found, [note, *found.assumed]


def bare_manifest(path: Path) -> tuple[Manifest, list[str]]:
    """Manifest for a bare .onnx/.tflite/.gguf file, and the list of assumptions made.

    What the file's exporter embedded (labels, sizes, task; see bundle.infer) is used, not assumed.
    """
    found, assumed = _inferred(path)
    return found.manifest, assumed


def bare_bundle(path: Path):
    """A Bundle for a bare model file. When the file brings labels or needs anchors, they are written
    beside a hard link of it in edgeship's cache (a folder per file digest), as a bundle would hold them."""
    import dataclasses
    import os
    import shutil

    import numpy as np

    from .cache import cache_dir, file_sha256
    from .manifest import LABELS_FILE, MANIFEST
    from .store import Bundle
    from ..util import write_text_atomic

    found, assumed = _inferred(path)
    if not found.labels and not found.extra_files:
        return Bundle(path.parent, found.manifest, assumed=assumed, source=path)
    root = cache_dir() / "bare" / file_sha256(path)[:32]
    manifest = found.manifest
    if found.labels:
        manifest = dataclasses.replace(manifest, labels=LABELS_FILE)
    if not (root / MANIFEST).is_file() or (root / MANIFEST).read_text(encoding="utf-8") != manifest.to_json():
        root.mkdir(parents=True, exist_ok=True)
        target = root / path.name
        if not target.exists():
            tmp = root / f".{path.name}.tmp"
            tmp.unlink(missing_ok=True)
            try:
                os.link(path, tmp)
            except OSError:  # another file system: copy
                shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        if found.labels:
            write_text_atomic(root / LABELS_FILE, "\n".join(found.labels) + "\n")
        for name, arr in found.extra_files.items():
            tmp = root / f".{name}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, root / name)
        write_text_atomic(root / MANIFEST, manifest.to_json())
    return Bundle(root, manifest, assumed=assumed, source=path)


__all__ = ["bare_bundle", "bare_manifest", "ort_specs"]
