"""The bundle: the one artifact every stage produces and every other stage consumes.

>>> from edgeship.bundle import open_bundle, pack, unpack
>>> b = open_bundle("mobilenet")            # a folder, a .tar, or a bare .onnx
>>> b.verify()                               # every sha256, or IntegrityError

Modules: ``manifest`` (the edgeship.json schema), ``store`` (open, write, verify, pack,
unpack), ``archive`` (tar entries checked before anything is written), ``bare`` (manifests
inferred for bare model files). The names below are the package's public surface.
"""

from .manifest import (
    GOLDEN_FILE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LABELS_FILE,
    MANIFEST,
    SCHEMA_VERSION,
    BoxDecoder,
    Format,
    Golden,
    Manifest,
    Postprocessing,
    Preprocessing,
    Resize,
    Stage,
    StageName,
    Task,
    TensorSpec,
    now_iso,
)
from .store import Bundle, open_bundle, pack, read_manifest, sha256_file, unpack, update_manifest, write_bundle

__all__ = [
    "GOLDEN_FILE", "IMAGENET_MEAN", "IMAGENET_STD", "LABELS_FILE", "MANIFEST", "SCHEMA_VERSION",
    "BoxDecoder", "Bundle", "Format", "Golden", "Manifest", "Postprocessing", "Preprocessing", "Resize", "Stage", "StageName", "Task",
    "TensorSpec", "now_iso", "open_bundle", "pack", "read_manifest", "sha256_file", "unpack",
    "update_manifest", "write_bundle",
]
