"""The bundle: the one artifact every stage produces and every other stage consumes.

A bundle is a directory::

    mobilenet/
      edgeship.json   manifest: name, version, task, format, inputs, preprocessing,
                      labels, sha256 of every file, provenance, golden check
      model.onnx      the model (or model.tflite / model.gguf)
      labels.txt      one label per line, where the task has labels
      golden.npz      a golden input and the output the model gave for it

>>> b = open_bundle("mobilenet")            # a directory, a .tar, or a bare .onnx
>>> b.verify()                               # every sha256, or IntegrityError
>>> pack("mobilenet", "mobilenet.tar"); unpack("mobilenet.tar", "/opt/models/m")

A bare model file is accepted everywhere: ``open_bundle("model.onnx")`` builds a
manifest from the graph and fills the rest with defaults listed in
``bundle.assumed``, which commands print so the user sees what was guessed.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ._config import from_dict, to_dict
from .errors import BundleError, IntegrityError, SchemaError, UnsafeArchiveError
from .util import write_text_atomic

SCHEMA_VERSION = 1
MANIFEST = "edgeship.json"
GOLDEN_FILE = "golden.npz"
LABELS_FILE = "labels.txt"
PathLike = Union[str, os.PathLike]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Task(str, enum.Enum):
    CLASSIFY = "classify"
    DETECT = "detect"
    SEGMENT = "segment"
    EMBED = "embed"
    GENERATE = "generate"
    OTHER = "other"


class Format(str, enum.Enum):
    ONNX = "onnx"
    TFLITE = "tflite"
    GGUF = "gguf"

    @classmethod
    def from_suffix(cls, path: PathLike) -> "Format":
        suffix = Path(path).suffix.lower().lstrip(".")
        try:
            return cls(suffix)
        except ValueError:
            raise BundleError(
                f"{path}: unknown model format '.{suffix}' (expected .onnx, .tflite or .gguf)"
            ) from None


class Resize(str, enum.Enum):
    SHORT_SIDE_CROP = "short_side_crop"  # resize the short side to resize_to, centre-crop size
    DIRECT = "direct"  # stretch to size, aspect ratio not kept
    LETTERBOX = "letterbox"  # fit inside size keeping aspect, pad (detectors)
    NONE = "none"  # the input must already have the model's size


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output; dynamic dimensions are strings (``"batch"``) or None."""

    name: str
    shape: list[Union[int, str, None]]
    dtype: str = "float32"
    layout: Union[str, None] = None  # "NCHW" / "NHWC" for image inputs

    def __post_init__(self) -> None:
        if self.layout not in (None, "NCHW", "NHWC"):
            raise ValueError(f"layout: expected 'NCHW', 'NHWC' or null, got {self.layout!r}")

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.shape) and not isinstance(self.shape[0], int)


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes the input tensor; float32 throughout.

    ``x = (pixel * scale - mean) / std`` per channel, after resizing to ``size``.
    """

    size: tuple[int, int] = (224, 224)  # (height, width) of the model input
    resize: Resize = Resize.SHORT_SIDE_CROP
    resize_to: Union[int, None] = 256  # short side before the centre crop
    color: str = "RGB"  # "RGB", "BGR", or "L" for one-channel (grayscale) models
    scale: float = 1 / 255
    mean: tuple[float, ...] = IMAGENET_MEAN  # one value per channel
    std: tuple[float, ...] = IMAGENET_STD
    layout: str = "NCHW"
    interpolation: str = "bilinear"
    pad_value: int = 114  # letterbox fill

    def __post_init__(self) -> None:
        if self.color not in ("RGB", "BGR", "L"):
            raise ValueError(f"color: expected 'RGB', 'BGR' or 'L', got {self.color!r}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) != self.channels:
                raise ValueError(f"{name}: expected {self.channels} values for color {self.color!r}, "
                                 f"got {len(getattr(self, name))}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout: expected 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest", "lanczos"):
            raise ValueError(f"interpolation: unknown {self.interpolation!r}")
        if min(self.size) <= 0:
            raise ValueError(f"size: must be positive, got {list(self.size)}")
        if any(s == 0 for s in self.std):
            raise ValueError("std: must not contain 0")
        if self.resize is Resize.SHORT_SIDE_CROP and (self.resize_to is None or self.resize_to < min(self.size)):
            raise ValueError(f"resize_to: must be at least the crop size {min(self.size)}, got {self.resize_to}")

    @property
    def channels(self) -> int:
        return 1 if self.color == "L" else 3


@dataclass(frozen=True)
class Postprocessing:
    """Task-specific decoding; thresholds live in the bundle, not in code."""

    top_k: int = 5
    softmax: Union[bool, None] = None  # None: apply softmax when the outputs do not already sum to 1
    decoder: Union[str, None] = None  # detection: "yolov8" or "ssd"
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    anchors: Union[str, None] = None  # SSD: file in the bundle with [N, 4] anchors (cx, cy, w, h)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k: must be at least 1, got {self.top_k}")
        if self.decoder not in (None, "yolov8", "ssd"):
            raise ValueError(f"decoder: expected 'yolov8', 'ssd' or null, got {self.decoder!r}")
        for name in ("score_threshold", "iou_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be within [0, 1]")


@dataclass(frozen=True)
class Golden:
    """A stored input and the output the model gave for it, checked after every update."""

    file: str = GOLDEN_FILE
    atol: float = 1e-4
    rtol: float = 1e-3


@dataclass(frozen=True)
class Stage:
    """One provenance row: which stage made the bundle, with what, and what it measured."""

    stage: str
    created: str
    tool: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """edgeship.json, schema version 1."""

    name: str
    model: str
    schema_version: int = SCHEMA_VERSION
    version: str = "1"
    task: Task = Task.CLASSIFY
    format: Format = Format.ONNX
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    preprocessing: Union[Preprocessing, None] = None
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    labels: Union[str, None] = None
    files: dict[str, str] = field(default_factory=dict)
    provenance: list[Stage] = field(default_factory=list)
    golden: Union[Golden, None] = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version: this edgeship reads version {SCHEMA_VERSION}, the bundle has "
                f"{self.schema_version}; upgrade edgeship or re-export the bundle"
            )
        for ref in [self.model, self.labels, self.golden.file if self.golden else None]:
            if ref is not None:
                _check_member_name(ref, "model/labels/golden")

    def to_json(self) -> str:
        return json.dumps(to_dict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST) -> "Manifest":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{source}: not valid JSON ({exc}); re-export the bundle") from exc
        try:
            return from_dict(cls, data)
        except SchemaError as exc:
            raise SchemaError(f"{source}: {exc}") from None

    def with_stage(self, stage: Stage) -> "Manifest":
        return dataclasses.replace(self, provenance=[*self.provenance, stage])


def _check_member_name(name: str, what: str) -> None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or name in ("", ".") or "\\" in name:
        raise ValueError(f"{what}: '{name}' must be a plain file name inside the bundle")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Bundle:
    """An opened bundle: its root folder, manifest and, for bare files, what was assumed."""

    def __init__(self, root: Path, manifest: Manifest, assumed: list[str] | None = None,
                 source: Path | None = None, _tmp: tempfile.TemporaryDirectory | None = None):
        self.root = root
        self.manifest = manifest
        self.assumed = assumed or []
        self.source = source or root
        self._tmp = _tmp  # keeps an unpacked .tar alive as long as the bundle

    def __repr__(self) -> str:
        return f"Bundle({self.manifest.name!r}, version={self.manifest.version!r}, root={str(self.root)!r})"

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def is_bare(self) -> bool:
        return bool(self.assumed)

    @property
    def model_path(self) -> Path:
        return self.root / self.manifest.model

    @property
    def labels(self) -> list[str] | None:
        if self.manifest.labels is None:
            return None
        if not hasattr(self, "_labels"):
            path = self.root / self.manifest.labels
            try:
                self._labels = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise BundleError(f"{path}: labels file named in the manifest cannot be read ({exc})") from exc
        return self._labels

    def golden(self):
        """(input, output) arrays stored with the bundle, or None."""
        if self.manifest.golden is None:
            return None
        import numpy as np

        path = self.root / self.manifest.golden.file
        try:
            with np.load(path) as data:
                return data["input"], data["output"]
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"{path}: golden file unreadable ({exc}); re-export the bundle") from exc

    def verify(self) -> dict[str, str]:
        """Check every file's sha256 against the manifest; raise IntegrityError naming the first bad one."""
        if self.is_bare:
            return {}
        if self.manifest.model not in self.manifest.files:
            raise IntegrityError(f"{self.root}: the manifest lists no sha256 for the model file {self.manifest.model}")
        for name, expected in self.manifest.files.items():
            path = self.root / name
            if not path.is_file():
                raise IntegrityError(f"{path}: listed in the manifest but missing; the bundle is incomplete")
            actual = sha256_file(path)
            if actual != expected:
                raise IntegrityError(
                    f"{path}: sha256 {actual[:16]}... does not match the manifest's {expected[:16]}...; "
                    "the file was changed or damaged in transfer: copy the bundle again"
                )
        return dict(self.manifest.files)


def read_manifest(root: PathLike) -> Manifest:
    root = Path(root)
    path = root / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(
            f"{root}: not a bundle (no {MANIFEST}); give a bundle folder, a .tar, or a .onnx/.tflite/.gguf file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot be read ({exc})") from exc
    return Manifest.from_json(text, source=str(path))


def open_bundle(path: PathLike, verify: bool = True) -> Bundle:
    """Open a bundle folder, a bundle ``.tar`` or a bare model file."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such file or folder")
    if path.is_dir():
        bundle = Bundle(path, read_manifest(path))
        if not (path / bundle.manifest.model).is_file():
            raise BundleError(f"{path}: the model file {bundle.manifest.model} named in {MANIFEST} is missing")
    elif path.suffix.lower() not in (".onnx", ".tflite", ".gguf") and tarfile.is_tarfile(path):
        tmp = tempfile.TemporaryDirectory(prefix="edgeship-")
        unpack(path, Path(tmp.name) / "bundle")
        root = Path(tmp.name) / "bundle"
        bundle = Bundle(root, read_manifest(root), source=path, _tmp=tmp)
    else:
        from .inspect import bare_manifest

        manifest, assumed = bare_manifest(path)
        return Bundle(path.parent, manifest, assumed=assumed, source=path)
    if verify:
        bundle.verify()
    return bundle


def write_bundle(
    out: PathLike,
    manifest: Manifest,
    model_file: PathLike,
    labels: list[str] | None = None,
    golden: tuple[Any, Any] | None = None,
    extra_files: dict[str, PathLike] | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Write a complete bundle to ``out`` atomically: built in a sibling temp folder, then renamed.

    The manifest's ``files``, ``labels`` and ``golden`` fields are filled in here. If anything fails,
    ``out`` is left as it was (absent, or the previous bundle).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists; choose another folder or pass overwrite (--force)")
    if out.exists() and not (out / MANIFEST).is_file():
        raise BundleError(f"{out}: exists and is not a bundle; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model_name = manifest.model
        shutil.copyfile(model_file, staging / model_name)
        label_name = None
        if labels is not None:
            label_name = LABELS_FILE
            (staging / label_name).write_text("\n".join(labels) + "\n", encoding="utf-8")
        golden_spec = manifest.golden
        if golden is not None:
            import numpy as np

            golden_spec = golden_spec or Golden()
            np.savez(staging / golden_spec.file, input=np.asarray(golden[0]), output=np.asarray(golden[1]))
        for name, src in (extra_files or {}).items():
            _check_member_name(name, "extra file")
            shutil.copyfile(src, staging / name)
        files = {}
        for p in sorted(staging.iterdir()):
            if p.is_file() and p.name != MANIFEST:
                files[p.name] = sha256_file(p)
        final = dataclasses.replace(manifest, labels=label_name or manifest.labels, golden=golden_spec, files=files)
        for p in staging.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        write_text_atomic(staging / MANIFEST, final.to_json())
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(out, final)


def update_manifest(bundle_dir: PathLike, manifest: Manifest) -> None:
    """Rewrite edgeship.json in place (atomically), e.g. to add a provenance row."""
    write_text_atomic(Path(bundle_dir) / MANIFEST, manifest.to_json())


def pack(bundle_dir: PathLike, tar_path: PathLike) -> Path:
    """Pack a verified bundle folder into one uncompressed ``.tar`` (models compress poorly)."""
    bundle = open_bundle(bundle_dir)
    if bundle.is_bare or bundle.source != bundle.root:
        raise BundleError(f"{bundle_dir}: pack takes a bundle folder")
    tar_path = Path(tar_path)
    tmp = tar_path.with_name(f".{tar_path.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in [MANIFEST, *sorted(bundle.manifest.files)]:
                tar.add(bundle.root / name, arcname=name, recursive=False)
        os.replace(tmp, tar_path)
    finally:
        tmp.unlink(missing_ok=True)
    return tar_path


def _check_tar_member(member: tarfile.TarInfo, tar_path: Path) -> None:
    name = member.name
    p = Path(name)
    if name.startswith(("/", "\\")) or p.is_absolute():
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' has an absolute path; refusing to unpack")
    if ".." in p.parts:
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' contains '..'; refusing to unpack")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is a link; refusing to unpack")
    if member.isdev() or member.isfifo():
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is a device or fifo; refusing to unpack")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is not a regular file; refusing to unpack")


def unpack(tar_path: PathLike, dest: PathLike) -> Path:
    """Unpack a bundle ``.tar`` into ``dest`` (which must not exist), then verify it.

    Every entry is checked before anything is written; on any failure ``dest`` is not created.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    if dest.exists():
        raise BundleError(f"{dest}: already exists; unpack into a new folder")
    try:
        tar = tarfile.open(tar_path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{tar_path}: not a readable tar archive ({exc})") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with tar:
            members = tar.getmembers()
            for m in members:
                _check_tar_member(m, tar_path)
            for m in members:
                target = staging / m.name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with src, open(target, "wb") as f:
                    shutil.copyfileobj(src, f)
                os.chmod(target, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        bundle = Bundle(staging, read_manifest(staging))
        bundle.verify()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest
