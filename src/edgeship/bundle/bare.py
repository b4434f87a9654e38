"""Manifests for bare model files: read what the graph says, assume the rest and say so."""

from __future__ import annotations

from pathlib import Path

from ..errors import NotABundleError
from .graph import load_onnx_session_for_inspection, ort_specs  # their old home; other modules import them here
from .manifest import Format, Manifest


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


__all__ = ["bare_manifest", "load_onnx_session_for_inspection", "ort_specs"]
