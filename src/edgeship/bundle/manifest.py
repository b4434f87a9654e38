"""edgeship.json: the manifest schema, as frozen dataclasses read and written by ``_config``.

>>> m = Manifest.from_json(Path("effnet/edgeship.json").read_text())
>>> m.task, m.preprocessing.size
(<Task.CLASSIFY: 'classify'>, (224, 224))
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .._config import from_dict, to_dict
from ..errors import InputError, NotABundleError, SchemaError
from ..util import json_depth

SCHEMA_VERSION = 1
# Version 2 adds ``variants`` and ``runtimes``. A manifest without them is still written as version
# 1, byte for byte what older edgeship reads; one with them says 2, so an older edgeship says
# "upgrade" instead of tripping over an unknown field.
SCHEMA_VARIANTS = 2
READABLE_SCHEMAS = (1, 2)
MANIFEST = "edgeship.json"
GOLDEN_FILE = "golden.npz"
LABELS_FILE = "labels.txt"
PathLike = Union[str, os.PathLike]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Bounds on the manifest values that drive allocation or end up in URLs, metric labels and logs.
# A manifest is data from outside (an archive, an update): without them one crafted value makes
# every request allocate gigabytes (size 100000x100000) or writes a fake line into the log (a name
# holding a newline). Each is far above what a real model uses.
MAX_SIDE = 8192  # preprocessing.size and resize_to, pixels (the largest segmentation inputs are 2048)
MAX_TOP_K = 1000
MAX_DETECTIONS = 10_000
MAX_NAME = 128
MAX_VERSION = 64
MAX_FILES = 64
MAX_MANIFEST_BYTES = 4 << 20
MAX_JSON_DEPTH = 32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
            raise NotABundleError(
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
            raise InputError(f"layout: expected 'NCHW', 'NHWC' or null, got {self.layout!r}")

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
            raise InputError(f"color: expected 'RGB', 'BGR' or 'L', got {self.color!r}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) != self.channels:
                raise InputError(f"{name}: expected {self.channels} values for color {self.color!r}, "
                                 f"got {len(getattr(self, name))}")
        if self.layout not in ("NCHW", "NHWC"):
            raise InputError(f"layout: expected 'NCHW' or 'NHWC', got {self.layout!r}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest", "lanczos"):
            raise InputError(f"interpolation: unknown {self.interpolation!r}")
        if min(self.size) <= 0 or max(self.size) > MAX_SIDE:
            raise InputError(f"size: each side must be within 1..{MAX_SIDE} pixels, got {list(self.size)}")
        if any(s == 0 for s in self.std):
            raise InputError("std: must not contain 0")
        if not all(math.isfinite(v) for v in (self.scale, *self.mean, *self.std)):
            raise InputError("scale, mean and std: must be finite numbers")
        if self.resize is Resize.SHORT_SIDE_CROP and (self.resize_to is None or self.resize_to < min(self.size)):
            raise InputError(f"resize_to: must be at least the crop size {min(self.size)}, got {self.resize_to}")
        if self.resize_to is not None and not 1 <= self.resize_to <= 2 * MAX_SIDE:
            raise InputError(f"resize_to: must be within 1..{2 * MAX_SIDE} pixels, got {self.resize_to}")
        if not 0 <= self.pad_value <= 255:
            raise InputError(f"pad_value: must be within 0..255, got {self.pad_value}")

    @property
    def channels(self) -> int:
        return 1 if self.color == "L" else 3


class BoxDecoder(str, enum.Enum):
    """``postprocessing.decoder`` of a detection bundle: the layout of the model's box outputs."""

    YOLOV8 = "yolov8"
    SSD = "ssd"
    BLAZEFACE = "blazeface"  # MediaPipe's anchor offsets + sigmoid scores (BlazeFace, palm detection)


@dataclass(frozen=True)
class Postprocessing:
    """Task-specific decoding; thresholds live in the bundle, not in code."""

    top_k: int = 5
    softmax: Union[bool, None] = None  # None: apply softmax when the outputs do not already sum to 1
    decoder: Union[BoxDecoder, None] = None  # detection: how the box outputs are laid out
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    anchors: Union[str, None] = None  # SSD, BlazeFace: file in the bundle with [N, 4] anchors (cx, cy, w, h)

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise InputError(f"top_k: must be within 1..{MAX_TOP_K}, got {self.top_k}")
        if not 1 <= self.max_detections <= MAX_DETECTIONS:
            raise InputError(f"max_detections: must be within 1..{MAX_DETECTIONS}, got {self.max_detections}")
        if self.anchors is not None:
            check_member_name(self.anchors, "anchors")
        if self.decoder is not None:
            try:
                object.__setattr__(self, "decoder", BoxDecoder(self.decoder))
            except ValueError:
                choices = ", ".join(repr(d.value) for d in BoxDecoder)
                raise InputError(f"decoder: expected {choices} or null, got {self.decoder!r}") from None
        for name in ("score_threshold", "iou_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name}: must be within [0, 1]")


@dataclass(frozen=True)
class Golden:
    """A stored input and the output the model gave for it, checked after every update."""

    file: str = GOLDEN_FILE
    atol: float = 1e-4
    rtol: float = 1e-3


class StageName(str, enum.Enum):
    """``provenance[].stage``: the step of edgeship that made (or changed) the bundle."""

    TRAIN = "train"  # optimize pipeline: a model trained from scratch
    DISTILL = "distill"  # optimize pipeline: a student trained on a teacher's soft targets
    PRUNE = "prune"
    EXPORT = "export"
    QUANTIZE = "quantize"


@dataclass(frozen=True)
class Variant:
    """Another form of the model for one engine, admitted by the same accuracy gate as INT8.

    A reduced precision (OpenVINO bf16 or its NNCF INT8, a uint8 .tflite) is never a silent
    default: it runs only when asked for by name (``RuntimeConfig(variant=...)``) or recorded as
    this host's choice by ``edgeship tune``. ``golden`` is its own tolerance against the bundle's
    golden output; ``gate`` what the accuracy gate measured when it was admitted.
    """

    name: str
    backend: str  # a runtime BackendKind value ("openvino", "litert", ...)
    model: str  # the file it runs (bf16 is a hint on the main model.onnx)
    precision: str = "fp32"
    options: dict[str, str] = field(default_factory=dict)  # engine options it needs
    preprocessing: Union[Preprocessing, None] = None  # when the file wants other input than the main model
    postprocessing: Union[Postprocessing, None] = None  # when its outputs differ (a .tflite ending in softmax)
    golden: Union[Golden, None] = None
    gate: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def __post_init__(self) -> None:
        check_member_name(self.model, f"variant {self.name!r} model")
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise InputError(f"variant name {self.name!r}: letters, digits, '-', '_' and '.' only")


@dataclass(frozen=True)
class RuntimeChoice:
    """The fastest way found to run the bundle on one class of host (``edgeship tune``).

    ``host`` is the class it was measured on (CPU model and ISA, or GPU name); a choice for
    another class is not applied silently.
    """

    host: str
    backend: str
    variant: Union[str, None] = None
    provider: Union[str, None] = None
    threads: Union[int, None] = None
    spinning: Union[str, None] = None  # the server's --spinning setting for CPU engines
    options: dict[str, str] = field(default_factory=dict)
    p50_ms: Union[float, None] = None
    measured: dict[str, Any] = field(default_factory=dict)  # every candidate's figures, same run
    created: str = ""


@dataclass(frozen=True)
class Stage:
    """One provenance row: which stage made the bundle, with what, and what it measured."""

    stage: StageName
    created: str
    tool: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.stage, StageName):  # a plain string from code: the same check as from JSON
            try:
                object.__setattr__(self, "stage", StageName(self.stage))
            except ValueError:
                known = ", ".join(repr(s.value) for s in StageName)
                raise InputError(f"stage: expected one of {known}, got {self.stage!r}") from None


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
    variants: list[Variant] = field(default_factory=list)
    runtimes: dict[str, RuntimeChoice] = field(default_factory=dict)  # host class -> choice

    def __post_init__(self) -> None:
        if self.schema_version not in READABLE_SCHEMAS:
            raise InputError(
                f"schema_version: this edgeship reads version {' or '.join(map(str, READABLE_SCHEMAS))}, "
                f"the bundle has {self.schema_version}; upgrade edgeship or re-export the bundle"
            )
        if not (len(self.name) <= MAX_NAME and _NAME.fullmatch(self.name)):
            raise InputError(f"name: expected 1-{MAX_NAME} letters, digits, '.', '_' or '-' (starting with a letter "
                             f"or digit; it names the model in URLs and logs), got {_shown(self.name)}")
        if not (len(self.version) <= MAX_VERSION and _VERSION.fullmatch(self.version)):
            raise InputError(f"version: expected 1-{MAX_VERSION} letters, digits, '.', '_', '+' or '-', "
                             f"got {_shown(self.version)}")
        for what, ref in self.references().items():
            check_member_name(ref, what)
        if len(self.files) > MAX_FILES:
            raise InputError(f"files: at most {MAX_FILES} entries, got {len(self.files)}")
        for name, digest in self.files.items():
            check_member_name(name, "files")
            if name == MANIFEST:
                raise InputError(f"files: {MANIFEST} cannot list itself")
            if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
                raise InputError(f"files.{name}: expected a sha256 (64 lowercase hex digits), got {_shown(digest)}")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise InputError(f"variants: two variants share a name ({', '.join(names)})")
        wanted = SCHEMA_VARIANTS if (self.variants or self.runtimes) else SCHEMA_VERSION
        object.__setattr__(self, "schema_version", max(self.schema_version, wanted))

    def variant(self, name: str) -> Variant:
        """The declared variant ``name``; a SchemaError naming the ones there are otherwise."""
        for v in self.variants:
            if v.name == name:
                return v
        have = ", ".join(v.name for v in self.variants) or "none"
        raise SchemaError(f"{self.name}: no variant {name!r} (declared: {have}); add one with `edgeship variant add`")

    def references(self) -> dict[str, str]:
        """Every bundle file this manifest makes edgeship read, by the field that names it.

        ``Bundle.verify`` requires each of them to be listed in ``files`` with its sha256.
        """
        refs = {"model": self.model}
        if self.labels is not None:
            refs["labels"] = self.labels
        if self.golden is not None:
            refs["golden.file"] = self.golden.file
        if self.postprocessing.anchors is not None:
            refs["postprocessing.anchors"] = self.postprocessing.anchors
        for v in self.variants:
            where = f"variants[{v.name}]"
            refs[f"{where}.model"] = v.model
            if v.golden is not None:
                refs[f"{where}.golden.file"] = v.golden.file
            if v.postprocessing is not None and v.postprocessing.anchors is not None:
                refs[f"{where}.postprocessing.anchors"] = v.postprocessing.anchors
        return refs

    def to_json(self) -> str:
        data = to_dict(self)
        for key in ("variants", "runtimes"):  # absent when empty: a version-1 reader reads the rest
            if not data[key]:
                del data[key]
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST) -> "Manifest":
        if len(text) > MAX_MANIFEST_BYTES:
            raise SchemaError(f"{source}: {len(text):,} characters, over the limit of {MAX_MANIFEST_BYTES:,}")
        if json_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise SchemaError(f"{source}: JSON nested more than {MAX_JSON_DEPTH} levels deep; re-export the bundle")
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


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_member_name(name: str, what: str) -> None:
    """InputError unless ``name`` is a plain file name: no folder, no '..', no control character.

    Bundles are flat; a name with a separator could reach outside the bundle (``../../etc/passwd``,
    an absolute path) for verify to read and pack to ship.
    """
    if (not isinstance(name, str) or name in ("", ".", "..") or len(name) > 255 or "/" in name or "\\" in name
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise InputError(f"{what}: {_shown(name)} must be a plain file name inside the bundle (no folders)")


def safe_name(text: str) -> str:
    """``text`` made into a valid manifest name: other characters become '-' (for names taken from file names).

    >>> safe_name("my model (v2)")
    'my-model-v2'
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:MAX_NAME]
    return name or "model"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
