"""Detection post-processing: box decoding (YOLOv8, SSD) and class-aware NMS, numpy only.

>>> model = Model.load("yolo-bundle/")
>>> model.predict("street.jpg").output["detections"][0]
{'label': 'car', 'index': 2, 'score': 0.91, 'box': [12.0, 40.5, 210.2, 180.0]}

Boxes come back as ``[x1, y1, x2, y2]`` in the pixels of the original picture (the letterbox
is undone with ``ImageMeta.to_original``). Thresholds and the decoder live in the bundle's
``postprocessing``; nothing here is tuned in code.

Decoders (``postprocessing.decoder``):

- ``yolov8``: one output ``[4 + classes, anchors]`` per sample (the Ultralytics export); rows
  0..3 are centre x, centre y, width, height in model-input pixels, the rest class scores.
  The transposed ``[anchors, 4 + classes]`` layout is accepted too.
- ``ssd``: two outputs, box deltas ``[anchors, 4]`` as ``(dx, dy, dw, dh)`` with variances
  (0.1, 0.2) (the Caffe / torchvision ``BoxCoder(10, 10, 5, 5)`` convention) and class scores
  ``[anchors, classes]``; anchors ``[anchors, 4]`` as ``(cx, cy, w, h)`` normalised to the model
  input, in a ``.npy`` or text file named by ``postprocessing.anchors``. A first score column for
  the background (more columns than labels, or a label called "background") is dropped.
- ``blazeface``: MediaPipe's detection layout (BlazeFace, palm detection): raw boxes
  ``[anchors, 4 + 2 * keypoints]`` as centre x, centre y, width, height offsets in model-input
  pixels relative to fixed-size anchors, and score logits ``[anchors, classes]`` (a sigmoid each,
  clipped at +-100 as MediaPipe does). Anchors as for ``ssd`` (``bundle create`` writes them).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...bundle import BoxDecoder, Bundle, Task
from ...errors import BundleError, InputError
from ...util import Registry
from .registry import register, softmax

# torchvision's BoxCoder clamps dw/dh so exp() cannot overflow on garbage deltas.
_BBOX_XFORM_CLIP = math.log(1000.0 / 16)
_SSD_VARIANCES = (0.1, 0.2)
# Candidates kept before NMS: bounds the O(n^2) worst case on a model that scores everything high.
MAX_NMS_CANDIDATES = 4096
_BACKGROUND = {"background", "__background__", "bg", "???"}



Decoder = Callable[[list[np.ndarray], Bundle], tuple[np.ndarray, np.ndarray, np.ndarray]]
_BOX_DECODERS: Registry[BoxDecoder, Decoder] = Registry("box decoder", BundleError)


def register_box_decoder(kind: BoxDecoder) -> Callable[[Decoder], Decoder]:
    """Register a function ``(outputs, bundle) -> (boxes_xyxy, scores, classes)`` for ``kind``."""
    return _BOX_DECODERS.register(kind)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[4]`` xyxy box with ``[N, 4]`` boxes."""
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS (same rule as ``torchvision.ops.nms``: drop IoU > threshold); kept indices by score."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    boxes = boxes.astype(np.float64, copy=False)
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[iou_one_to_many(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other (torchvision's offset trick)."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    span = float(boxes.max() - min(0.0, float(boxes.min()))) + 1.0
    shifted = boxes.astype(np.float64) + (classes.astype(np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold)


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half_w, half_h = b[:, 2] / 2, b[:, 3] / 2
    return np.stack([b[:, 0] - half_w, b[:, 1] - half_h, b[:, 0] + half_w, b[:, 1] + half_h], axis=1)


def _n_labels(bundle: Bundle) -> int | None:
    labels = bundle.labels
    return len(labels) if labels else None


@register_box_decoder(BoxDecoder.YOLOV8)
def decode_yolov8(outputs: list[np.ndarray], bundle: Bundle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = np.asarray(outputs[0], dtype=np.float32)
    if out.ndim == 3 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 2:
        raise BundleError(f"{bundle.name}: yolov8 decoder expects an output [4 + classes, anchors], got {list(out.shape)}")
    n = _n_labels(bundle)
    # [4 + C, A] is the export's layout; accept [A, 4 + C] when the shape says so unambiguously.
    if (n is not None and out.shape[1] == 4 + n and out.shape[0] != 4 + n) or (n is None and out.shape[0] > out.shape[1]):
        out = out.T
    if out.shape[0] < 5:
        raise BundleError(f"{bundle.name}: yolov8 output has {out.shape[0]} rows; expected 4 box rows plus class scores")
    cls_scores = out[4:]
    classes = cls_scores.argmax(axis=0)
    scores = cls_scores[classes, np.arange(cls_scores.shape[1])]
    return cxcywh_to_xyxy(out[:4].T), scores, classes


_ANCHOR_CACHE: dict[tuple[str, float], np.ndarray] = {}
_ANCHOR_LOCK = threading.Lock()


MAX_ANCHORS = 1_000_000  # SSD300 has 8,732; a 1280-pixel YOLO grid about 100,000
_MAX_ANCHOR_FILE = 64 << 20  # text anchors take about 40 bytes a row


def _check_anchor_size(path: Path) -> None:
    """BundleError when the anchors file, or the array a .npy header declares, is over MAX_ANCHORS rows.

    Checked before loading: numpy allocates what a .npy header declares before reading the data,
    so a 100-byte file declaring 10^9 rows would cost 16 GB.
    """
    size = path.stat().st_size
    if size > _MAX_ANCHOR_FILE:
        raise BundleError(f"{path}: anchors file is {size:,} bytes, over {_MAX_ANCHOR_FILE:,} "
                          f"(postprocessing.anchors: at most {MAX_ANCHORS:,} rows)")
    if path.suffix != ".npy":
        return
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: anchors unreadable ({exc})") from exc
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if dtype.hasobject or count > 4 * MAX_ANCHORS:
        raise BundleError(f"{path}: anchors declare shape {list(shape)} {dtype}; postprocessing.anchors must be "
                          f"at most [{MAX_ANCHORS:,}, 4] numbers")


def load_anchors(bundle: Bundle) -> np.ndarray:
    """The bundle's SSD anchors ``[N, 4]`` (cx, cy, w, h, normalised), read once per file."""
    name = bundle.manifest.postprocessing.anchors
    if not name:
        raise BundleError(f"{bundle.name}: the ssd decoder needs postprocessing.anchors (a .npy or text file)")
    path = Path(bundle.root) / name
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError as exc:
        raise BundleError(f"{path}: anchors file named in the manifest cannot be read ({exc})") from exc
    with _ANCHOR_LOCK:
        if key not in _ANCHOR_CACHE:
            _check_anchor_size(path)
            try:
                arr = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None)
            except (OSError, ValueError) as exc:
                raise BundleError(f"{path}: anchors unreadable ({exc})") from exc
            arr = np.asarray(arr, dtype=np.float32).reshape(-1, 4) if np.size(arr) % 4 == 0 else None
            if arr is None:
                raise BundleError(f"{path}: anchors must be [N, 4] (cx, cy, w, h)")
            _ANCHOR_CACHE[key] = arr
        return _ANCHOR_CACHE[key]


def _input_hw(bundle: Bundle) -> tuple[int, int]:
    pre = bundle.manifest.preprocessing
    if pre is not None:
        return int(pre.size[0]), int(pre.size[1])
    for spec in bundle.manifest.inputs[:1]:
        dims = spec.shape[2:4] if spec.layout != "NHWC" else spec.shape[1:3]
        if len(dims) == 2 and isinstance(dims[0], int) and isinstance(dims[1], int):
            return dims[0], dims[1]
    raise BundleError(f"{bundle.name}: cannot tell the model input size to scale SSD anchors; add preprocessing.size")


@register_box_decoder(BoxDecoder.SSD)
def decode_ssd(outputs: list[np.ndarray], bundle: Bundle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = [np.asarray(o, dtype=np.float32) for o in outputs[:2]]
    arrays = [a[0] if a.ndim == 3 and a.shape[0] == 1 else a for a in arrays]
    if len(arrays) != 2 or any(a.ndim != 2 for a in arrays):
        raise BundleError(f"{bundle.name}: ssd decoder expects two outputs, deltas [anchors, 4] and scores [anchors, classes]")
    names = [o.name.lower() for o in bundle.manifest.outputs[:2]] if len(bundle.manifest.outputs) >= 2 else ["", ""]
    if arrays[0].shape[1] != 4 or (arrays[1].shape[1] == 4 and any(k in names[1] for k in ("box", "loc", "delta"))):
        arrays.reverse()
    deltas, logits = arrays
    anchors = load_anchors(bundle)
    if anchors.shape[0] != deltas.shape[0] or logits.shape[0] != deltas.shape[0]:
        raise BundleError(
            f"{bundle.name}: {anchors.shape[0]} anchors, {deltas.shape[0]} box deltas and {logits.shape[0]} score rows must match"
        )
    post = bundle.manifest.postprocessing
    apply = post.softmax if post.softmax is not None else bool(logits.min() < 0 or logits.max() > 1)
    probs = softmax(logits) if apply else logits
    labels = bundle.labels
    if probs.shape[1] > 1 and (
        (labels and probs.shape[1] == len(labels) + 1) or (labels and labels[0].strip().lower() in _BACKGROUND)
    ):
        probs = probs[:, 1:]
        class_offset = 0 if probs.shape[1] == len(labels) else 1  # keep label indices aligned with labels.txt
    else:
        class_offset = 0
    h, w = _input_hw(bundle)
    a = anchors * np.asarray([w, h, w, h], dtype=np.float32)
    vc, vs = _SSD_VARIANCES
    cx = deltas[:, 0] * vc * a[:, 2] + a[:, 0]
    cy = deltas[:, 1] * vc * a[:, 3] + a[:, 1]
    bw = np.exp(np.minimum(deltas[:, 2] * vs, _BBOX_XFORM_CLIP)) * a[:, 2]
    bh = np.exp(np.minimum(deltas[:, 3] * vs, _BBOX_XFORM_CLIP)) * a[:, 3]
    boxes = cxcywh_to_xyxy(np.stack([cx, cy, bw, bh], axis=1))
    classes = probs.argmax(axis=1)
    scores = probs[np.arange(probs.shape[0]), classes]
    return boxes, scores, classes + class_offset


_SCORE_CLIP = 100.0  # MediaPipe's score_clipping_thresh


@register_box_decoder(BoxDecoder.BLAZEFACE)
def decode_blazeface(outputs: list[np.ndarray], bundle: Bundle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = [np.asarray(o, dtype=np.float32) for o in outputs[:2]]
    arrays = [a[0] if a.ndim == 3 and a.shape[0] == 1 else a for a in arrays]
    if len(arrays) != 2 or any(a.ndim != 2 for a in arrays):
        raise BundleError(f"{bundle.name}: blazeface decoder expects two outputs, boxes [anchors, 4+] and scores [anchors, classes]")
    if arrays[0].shape[1] < arrays[1].shape[1]:
        arrays.reverse()
    raw, logits = arrays
    anchors = load_anchors(bundle)
    if not anchors.shape[0] == raw.shape[0] == logits.shape[0] or raw.shape[1] < 4:
        raise BundleError(f"{bundle.name}: {anchors.shape[0]} anchors, {raw.shape[0]} boxes of {raw.shape[1]} values "
                          f"and {logits.shape[0]} score rows must match (4 box values at least)")
    h, w = _input_hw(bundle)
    # offsets are in input pixels; anchors are normalised, so scale by the input size and back
    cx = raw[:, 0] / w * anchors[:, 2] + anchors[:, 0]
    cy = raw[:, 1] / h * anchors[:, 3] + anchors[:, 1]
    bw = raw[:, 2] / w * anchors[:, 2]
    bh = raw[:, 3] / h * anchors[:, 3]
    boxes = cxcywh_to_xyxy(np.stack([cx * w, cy * h, bw * w, bh * h], axis=1))
    probs = (1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -_SCORE_CLIP, _SCORE_CLIP)))).astype(np.float32)
    classes = probs.argmax(axis=1)
    return boxes, probs[np.arange(probs.shape[0]), classes], classes


def detect_boxes(outputs: list[np.ndarray], bundle: Bundle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoded, thresholded, NMS-ed boxes in model-input pixels: (boxes [K, 4], scores [K], classes [K])."""
    post = bundle.manifest.postprocessing
    kind = post.decoder or BoxDecoder.YOLOV8  # the manifest only admits BoxDecoder members
    decoder = _BOX_DECODERS.get(kind)
    boxes, scores, classes = decoder(outputs, bundle)
    mask = scores > post.score_threshold
    boxes, scores, classes = boxes[mask], scores[mask], classes[mask]
    if scores.size > MAX_NMS_CANDIDATES:
        top = np.argpartition(-scores, MAX_NMS_CANDIDATES - 1)[:MAX_NMS_CANDIDATES]
        boxes, scores, classes = boxes[top], scores[top], classes[top]
    keep = batched_nms(boxes, scores, classes, post.iou_threshold)[: post.max_detections]
    return boxes[keep], scores[keep], classes[keep]


@register(Task.DETECT)
def detect(outputs: list[np.ndarray], bundle: Bundle, meta, top_k: int | None = None, **_: Any) -> dict[str, Any]:
    """One sample's outputs → ``{"detections": [{label, index, score, box}]}``, boxes in original pixels.

    ``top_k``, when given, caps the number of detections below the bundle's ``max_detections``.
    """
    if not outputs:
        raise InputError(f"{bundle.name}: the model returned no outputs")
    boxes, scores, classes = detect_boxes(outputs, bundle)
    if top_k is not None:
        boxes, scores, classes = boxes[:top_k], scores[:top_k], classes[:top_k]
    if meta is not None:
        boxes = meta.to_original(boxes)
    labels = bundle.labels
    return {
        "detections": [
            {
                "label": labels[c] if labels is not None and c < len(labels) else str(int(c)),
                "index": int(c),
                "score": float(s),
                "box": [round(float(v), 2) for v in b],
            }
            for b, s, c in zip(boxes, scores, classes)
        ]
    }
