"""A manifest for someone else's model file: read what its exporter embedded, assume the rest, say which.

>>> found = infer_manifest(Path("yolov8n.onnx"))                 # Ultralytics metadata inside
>>> found.manifest.task, found.inferred[:2]
(<Task.DETECT: 'detect'>, ['task: detect (Ultralytics metadata)', '80 labels (Ultralytics metadata: names)'])
>>> infer_manifest(Path("efficientnet_lite0.tflite")).labels[:2]  # labels zipped onto the file
['tench', 'goldfish']

Sources, most specific first: ``preset`` (imagenet, yolov8, blazeface), a ``--labels`` file, the
file's own metadata (Ultralytics ``metadata_props``: names, imgsz, stride, task; TFLite metadata
and its appended label zip), Optimum's ``config.json`` / ``preprocessor_config.json`` beside the
file, and last the graph itself (input shape and type, output shapes). Everything not read from one
of these is listed in ``assumed``.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import BundleError, InputError
from .manifest import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BoxDecoder,
    Format,
    Manifest,
    Postprocessing,
    Preprocessing,
    Resize,
    Task,
    TensorSpec,
    safe_name,
)

PRESETS = ("imagenet", "yolov8", "blazeface")
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}  # PIL codes in preprocessor_config.json


@dataclass
class Inferred:
    """What ``infer_manifest`` found: the manifest, labels, extra files to write beside the model, and why."""

    manifest: Manifest
    labels: Union[list[str], None] = None
    extra_files: dict[str, np.ndarray] = field(default_factory=dict)  # name -> array saved as .npy
    inferred: list[str] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ reading the graph


def _onnx_graph(path: Path) -> tuple[list[TensorSpec], list[TensorSpec], dict[str, str]]:
    from .graph import load_onnx_session_for_inspection, ort_specs

    session = load_onnx_session_for_inspection(path)
    inputs, outputs = ort_specs(session)
    return inputs, outputs, dict(session.get_modelmeta().custom_metadata_map)


def _tflite_graph(path: Path) -> tuple[list[TensorSpec], list[TensorSpec], tuple[float, int] | None]:
    from .._deps import require

    require("ai_edge_litert", "litert", "reading .tflite models")
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: LiteRT cannot read this model ({str(exc).splitlines()[0][:200]})") from exc

    def spec(d, is_input):
        shape = [int(v) for v in d["shape"]]
        dtype = np.dtype(d["dtype"])
        quantized = bool(d["quantization"][0]) and dtype.kind in "iu"
        layout = "NHWC" if is_input and len(shape) == 4 and shape[3] in (1, 3) else None
        return TensorSpec(d["name"], shape, "float32" if quantized else dtype.name, layout)

    ins, outs = interp.get_input_details(), interp.get_output_details()
    q = ins[0]["quantization"] if ins else (0.0, 0)
    quant = (float(q[0]), int(q[1])) if q[0] and np.dtype(ins[0]["dtype"]).kind in "iu" else None
    return [spec(d, True) for d in ins], [spec(d, False) for d in outs], quant


def _hw(spec: TensorSpec) -> tuple[Union[int, str, None], Union[int, str, None]]:
    i = 2 if spec.layout == "NCHW" else 1  # a spec with a layout is 4-d
    return spec.shape[i], spec.shape[i + 1]


# ------------------------------------------------------------------ exporters' metadata


def _ultralytics(meta: dict[str, str], found: list[str]) -> dict[str, Any]:
    """Ultralytics' ONNX metadata_props: names (a dict literal), imgsz, stride, task."""
    if "names" not in meta and "imgsz" not in meta:
        return {}
    out: dict[str, Any] = {}
    try:
        names = ast.literal_eval(meta["names"]) if "names" in meta else None
        if isinstance(names, dict):
            out["labels"] = [str(names[k]) for k in sorted(names, key=int)]
        elif isinstance(names, list):
            out["labels"] = [str(n) for n in names]
        if "imgsz" in meta:
            size = ast.literal_eval(meta["imgsz"])
            out["size"] = (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise BundleError(f"Ultralytics metadata present but unreadable ({exc}): names={meta.get('names', '')[:80]!r}") from None
    if "task" in meta:
        out["task"] = meta["task"]
    if "stride" in meta:
        out["stride"] = int(meta["stride"])
    found.append("Ultralytics metadata: " + ", ".join(k for k in ("names", "imgsz", "stride", "task") if k in meta))
    return out


def _optimum(folder: Path, found: list[str]) -> dict[str, Any]:
    """Optimum/transformers' config.json (id2label, architectures) and preprocessor_config.json beside the file."""
    out: dict[str, Any] = {}
    for name in ("config.json", "preprocessor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: unreadable ({exc})") from exc
        if name == "config.json":
            id2label = data.get("id2label")
            if isinstance(id2label, dict) and id2label:
                out["labels"] = [str(id2label[k]) for k in sorted(id2label, key=int)]
            archs = " ".join(data.get("architectures") or [])
            if "ForImageClassification" in archs:
                out["task"] = "classify"
            elif "ForObjectDetection" in archs:
                out["task"] = "detect"
        else:
            out["mean"], out["std"] = data.get("image_mean"), data.get("image_std")
            out["scale"] = data.get("rescale_factor") if data.get("do_rescale", True) else 1.0
            size, crop = data.get("size"), data.get("crop_size")
            if isinstance(size, dict):
                out["short_side"] = size.get("shortest_edge")
                if "height" in size:
                    out["size"] = (int(size["height"]), int(size["width"]))
            elif isinstance(size, int):
                out["short_side"] = size
            if data.get("do_center_crop") and crop:
                out["crop"] = (int(crop["height"]), int(crop["width"])) if isinstance(crop, dict) else (int(crop),) * 2
            out["interpolation"] = _RESAMPLE.get(data.get("resample", 2), "bilinear")
        found.append(f"Optimum/transformers {name} beside the model")
    return out


# ------------------------------------------------------------------ BlazeFace anchors


def ssd_anchors(input_size: int, strides=(8, 16, 16, 16), min_scale=0.1484375, max_scale=0.75) -> np.ndarray:
    """MediaPipe's SsdAnchorsCalculator for BlazeFace/palm detection: [N, 4] (cx, cy, 1, 1), normalised.

    Fixed anchor size, aspect ratio 1 plus the interpolated one: two anchors per cell and layer.
    """
    anchors = []
    layer, n = 0, len(strides)
    while layer < n:
        count, last = 0, layer
        while last < n and strides[last] == strides[layer]:
            count += 2  # aspect ratio 1.0, and the interpolated scale (aspect ratio 1.0 as well)
            last += 1
        side = math.ceil(input_size / strides[layer])
        for y in range(side):
            for x in range(side):
                anchors.extend([((x + 0.5) / side, (y + 0.5) / side, 1.0, 1.0)] * count)
        layer = last
    return np.asarray(anchors, dtype=np.float32)


# ------------------------------------------------------------------ the manifest


def infer_manifest(path: Path, labels: Union[list[str], None] = None, preset: Union[str, None] = None,
                   name: Union[str, None] = None) -> Inferred:
    """A manifest for the model file ``path``, what was read from where, and what was assumed."""
    path = Path(path)
    if preset is not None and preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    fmt = Format.from_suffix(path)
    if fmt is Format.GGUF:
        return Inferred(Manifest(name=name or safe_name(path.stem), model=path.name, task=Task.GENERATE, format=fmt),
                        assumed=["a GGUF model: run it with `edgeship llm`"])
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    found: list[str] = []
    assumed: list[str] = []
    hints: dict[str, Any] = {}
    labels_given = labels is not None
    quant = None
    if fmt is Format.ONNX:
        inputs, outputs, meta = _onnx_graph(path)
        hints.update(_ultralytics(meta, found))
        hints.update({k: v for k, v in _optimum(path.parent, found).items() if v is not None})
    else:
        inputs, outputs, quant = _tflite_graph(path)
        from .tflite_meta import read_tflite_metadata

        tfl = read_tflite_metadata(path)
        if tfl.labels:
            hints["labels"] = tfl.labels
            found.append(f"{len(tfl.labels)} labels from {tfl.label_file} zipped onto the file")
        if tfl.mean and tfl.std:
            hints["tflite_norm"] = (tfl.mean, tfl.std)
        if tfl.name:
            found.append(f"TFLite metadata: {tfl.name!r}")
    names = [o.name.lower() for o in outputs]
    if preset is None and "regressors" in names and "classificators" in names:
        preset = "blazeface"
        found.append("BlazeFace layout: outputs 'regressors' and 'classificators' (MediaPipe)")
    if preset is None and hints.get("task") == "detect":
        preset = "yolov8"
    image = inputs[0] if len(inputs) == 1 and inputs[0].layout else None
    manifest = Manifest(name=name or safe_name(path.stem), model=path.name, format=fmt, inputs=inputs, outputs=outputs,
                        task=Task.OTHER)
    extra: dict[str, np.ndarray] = {}
    if image is None:
        assumed.append("no image input recognised: inputs must be given as arrays; outputs are returned raw")
        return Inferred(manifest, labels, extra, found, assumed)
    h, w = _hw(image)
    size = hints.get("size")
    if size is None and isinstance(h, int) and isinstance(w, int):
        size = (h, w)
        found.append(f"input size {size[0]}x{size[1]} from the graph")
    elif size is None:
        size = (224, 224) if preset != "yolov8" else (640, 640)
        assumed.append(f"input size {size[0]}x{size[1]} (the graph's spatial dimensions are dynamic)")
    pre, post, task = _preprocessing(preset, hints, size, image.layout, found, assumed), Postprocessing(), Task.OTHER
    if preset == "yolov8" or hints.get("task") == "detect":
        task, post = Task.DETECT, Postprocessing(decoder=BoxDecoder.YOLOV8)
        found.append("task: detect, YOLOv8 box layout" + (" (Ultralytics metadata)" if "task" in hints else " (preset)"))
    elif preset == "blazeface":
        anchors = ssd_anchors(size[0])
        rows = next((o.shape[1] for o in outputs if o.name.lower() == "regressors"), None)
        if rows is not None and isinstance(rows, int) and rows != len(anchors):
            raise BundleError(f"{path}: BlazeFace anchors for a {size[0]} px input are {len(anchors)}, the model has {rows} rows")
        extra["anchors.npy"] = anchors
        task = Task.DETECT
        post = Postprocessing(decoder=BoxDecoder.BLAZEFACE, anchors="anchors.npy", score_threshold=0.5,
                              iou_threshold=0.3, max_detections=20)
        if labels is None:
            labels = ["face"]
            found.append("label 'face' (BlazeFace detects one class)")
        found.append(f"{len(anchors)} anchors from MediaPipe's SSD anchor rule for a {size[0]} px input")
    elif hints.get("task") in ("classify", None) and len(outputs) == 1 and len(outputs[0].shape) == 2:
        task = Task.CLASSIFY
        (found if "task" in hints else assumed).append(
            "task: classify" + (" (exporter metadata)" if "task" in hints else " (one [N, classes] output)"))
        if any(k in outputs[0].name.lower() for k in ("softmax", "prob")):
            # a quantized softmax does not sum to 1 closely enough to be recognised from its values
            post = Postprocessing(softmax=False)
            found.append(f"output {outputs[0].name!r} is already probabilities (no softmax applied)")
    elif "task" in hints:
        assumed.append(f"task {hints['task']!r} has no decoder in edgeship: outputs are returned raw")
    if labels_given and labels is not None:
        found.append(f"{len(labels)} labels from the labels file given")
    elif labels is not None:
        pass
    elif hints.get("labels"):
        labels = hints["labels"]
        if not any("labels" in f for f in found):
            found.append(f"{len(labels)} labels from the exporter's metadata")
    elif task in (Task.CLASSIFY, Task.DETECT):
        assumed.append("labels: class indices (give --labels FILE)")
    manifest = replace(manifest, task=task, preprocessing=pre, postprocessing=post)
    if quant is not None and "tflite_norm" in hints:
        found.append(f"quantized input (scale {quant[0]:.6g}, zero point {quant[1]}): the normalised values are "
                     "quantized with the file's parameters")
    elif quant is not None:
        assumed.append(f"uint8 input (scale {quant[0]:.6g}, zero point {quant[1]}): raw 0-255 pixels go in, "
                       "as TFLite's image tasks feed quantized models")
        manifest = replace(manifest, preprocessing=replace(
            pre, scale=quant[0], mean=(quant[0] * quant[1],) * pre.channels, std=(1.0,) * pre.channels))
    return Inferred(manifest, labels, extra, found, assumed)


def _preprocessing(preset, hints, size, layout, found, assumed) -> Preprocessing:
    """The preprocessing from the preset, then the exporter's hints, then ImageNet defaults (assumed)."""
    if preset == "yolov8" or hints.get("task") == "detect":
        found.append(f"preprocessing: letterbox to {size[0]}x{size[1]}, scale 1/255 (Ultralytics convention)")
        return Preprocessing(size=size, resize=Resize.LETTERBOX, resize_to=None, mean=(0.0,) * 3, std=(1.0,) * 3,
                             layout=layout)
    if preset == "blazeface":
        found.append("preprocessing: letterbox to the input, RGB to [-1, 1] (MediaPipe's face detection graph)")
        return Preprocessing(size=size, resize=Resize.LETTERBOX, resize_to=None, mean=(0.5,) * 3, std=(0.5,) * 3,
                             layout=layout, pad_value=0)
    if hints.get("task") == "classify" and "stride" in hints:  # Ultralytics classifier: crop, 1/255, no mean/std
        found.append("preprocessing: short side then centre crop, scale 1/255 (Ultralytics classify)")
        return Preprocessing(size=size, resize_to=size[0], mean=(0.0,) * 3, std=(1.0,) * 3, layout=layout)
    if "mean" in hints and "std" in hints:
        scale = float(hints.get("scale") or 1 / 255)
        crop = hints.get("crop") or size
        short = int(hints.get("short_side") or max(crop))
        found.append("preprocessing: mean/std, resize and crop from preprocessor_config.json")
        return Preprocessing(size=tuple(crop), resize_to=max(short, min(crop)), scale=scale,
                             mean=tuple(hints["mean"]), std=tuple(hints["std"]), layout=layout,
                             interpolation=hints.get("interpolation", "bilinear"))
    resize_to = int(round(min(size) / 0.875))
    if "tflite_norm" in hints:
        mean, std = hints["tflite_norm"]
        mean, std = (tuple(mean) * 3)[:3], (tuple(std) * 3)[:3]
        found.append(f"normalization (x - {mean[0]:g}) / {std[0]:g} from the TFLite metadata")
        assumed.append(f"resize: short side {resize_to}, centre crop {size[0]}x{size[1]}, RGB")
        return Preprocessing(size=size, resize_to=resize_to, scale=1.0, mean=mean, std=std, layout=layout)
    assumed.append(f"preprocessing: RGB, short side {resize_to} then centre crop {size[0]}x{size[1]}, scale 1/255, "
                   f"ImageNet mean/std, {layout}" + (" (preset imagenet)" if preset == "imagenet" else ""))
    return Preprocessing(size=size, resize_to=resize_to, mean=IMAGENET_MEAN, std=IMAGENET_STD, layout=layout)
