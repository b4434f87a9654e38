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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .._config import from_dict, to_dict
from ..errors import NotABundleError, SchemaError

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


class BoxDecoder(str, enum.Enum):
    """``postprocessing.decoder`` of a detection bundle: the layout of the model's box outputs."""

    YOLOV8 = "yolov8"
    SSD = "ssd"


@dataclass(frozen=True)
class Postprocessing:
    """Task-specific decoding; thresholds live in the bundle, not in code."""

    top_k: int = 5
    softmax: Union[bool, None] = None  # None: apply softmax when the outputs do not already sum to 1
    decoder: Union[BoxDecoder, None] = None  # detection: how the box outputs are laid out
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    anchors: Union[str, None] = None  # SSD: file in the bundle with [N, 4] anchors (cx, cy, w, h)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k: must be at least 1, got {self.top_k}")
        if self.decoder is not None:
            try:
                object.__setattr__(self, "decoder", BoxDecoder(self.decoder))
            except ValueError:
                choices = ", ".join(repr(d.value) for d in BoxDecoder)
                raise ValueError(f"decoder: expected {choices} or null, got {self.decoder!r}") from None
        for name in ("score_threshold", "iou_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be within [0, 1]")


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
                raise ValueError(f"stage: expected one of {known}, got {self.stage!r}") from None


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
                check_member_name(ref, "model/labels/golden")

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


def check_member_name(name: str, what: str) -> None:
    p = Path(name)
    if p.is_absolute() or ".." in p.parts or name in ("", ".") or "\\" in name:
        raise ValueError(f"{what}: '{name}' must be a plain file name inside the bundle")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
