"""Detection decoding and NMS against torchvision's reference implementations."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.bundle import open_bundle
from edgeship.runtime import Model
from edgeship.runtime.decoders.detect import batched_nms, nms
from tests.serve.support import DET_CLASSES, DET_SIZE, encode, picture


def test_nms_matches_torchvision():
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(0)
    for _ in range(5):
        xy = rng.uniform(0, 100, (300, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2))], 1).astype(np.float32)
        scores = rng.uniform(0, 1, 300).astype(np.float32)
        classes = rng.integers(0, 4, 300)
        ref = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
        assert np.array_equal(nms(boxes, scores, 0.5), ref)
        ref = ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.45).numpy()
        assert np.array_equal(batched_nms(boxes, scores, classes, 0.45), ref)
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).size == 0


def _reference_yolo(raw: np.ndarray, post, meta):
    import torch
    from torchvision.ops import batched_nms as tv_batched_nms
    from torchvision.ops import box_convert

    out = torch.from_numpy(raw[0])  # [4 + C, A]
    scores, classes = out[4:].max(0)
    boxes = box_convert(out[:4].T, "cxcywh", "xyxy")
    keep = scores > post.score_threshold
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    order = tv_batched_nms(boxes, scores, classes, post.iou_threshold)[: post.max_detections]
    return meta.to_original(boxes[order].numpy()), scores[order].numpy(), classes[order].numpy()


def test_yolov8_detections_match_torchvision(detector_bundle):
    pytest.importorskip("torchvision")
    model = Model.load(detector_bundle)
    post = model.bundle.manifest.postprocessing
    checked = 0
    for seed, (w, h) in enumerate([(120, 80), (50, 90), (64, 64)]):
        src = encode(picture(w, h, seed + 10), "PNG")
        pred = model.predict(src)
        x, meta, _ = model.prepare(src)
        assert meta.width == w and meta.height == h
        raw = model.run(x[None])[0]
        assert model.finish([raw[0]], meta) == pred.output  # the pipeline, stage by stage, is predict
        boxes, scores, classes = _reference_yolo(raw, post, meta)
        got = pred.output["detections"]
        assert len(got) == len(boxes) > 0
        for d, b, s, c in zip(got, boxes, scores, classes):
            assert d["index"] == int(c) and d["label"] == DET_CLASSES[int(c)]
            assert d["score"] == pytest.approx(float(s), abs=1e-6)
            assert np.allclose(d["box"], b, atol=0.01)
            assert 0 <= d["box"][0] <= d["box"][2] <= w and 0 <= d["box"][1] <= d["box"][3] <= h
        checked += len(got)
    assert checked > 3


def test_yolov8_transposed_layout_gives_the_same_boxes(detector_bundle):
    from edgeship.runtime.decoders.detect import detect_boxes

    bundle = open_bundle(detector_bundle)
    raw = np.random.default_rng(5).uniform(0, 1, (4 + len(DET_CLASSES), 64)).astype(np.float32)
    raw[:2] *= DET_SIZE
    raw[2:4] *= DET_SIZE / 2
    a = detect_boxes([raw], bundle)
    b = detect_boxes([raw.T.copy()], bundle)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)


def test_ssd_detections_match_torchvision_boxcoder(ssd_bundle):
    torch = pytest.importorskip("torch")
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.ops import batched_nms as tv_batched_nms
    from torchvision.ops import box_convert

    model = Model.load(ssd_bundle)
    post = model.bundle.manifest.postprocessing
    src = encode(picture(100, 70, 4), "JPEG")
    pred = model.predict(src)
    x, meta, _ = model.prepare(src)
    deltas, logits = model.run(x[None])
    anchors = torch.from_numpy(np.load(ssd_bundle / "anchors.npy") * DET_SIZE)
    decoded = BoxCoder((10.0, 10.0, 5.0, 5.0)).decode_single(torch.from_numpy(deltas[0]), box_convert(anchors, "cxcywh", "xyxy"))
    probs = torch.softmax(torch.from_numpy(logits[0]), -1)[:, 1:]  # background dropped
    scores, classes = probs.max(1)
    keep = scores > post.score_threshold
    boxes, scores, classes = decoded[keep], scores[keep], classes[keep]
    order = tv_batched_nms(boxes, scores, classes, post.iou_threshold)[: post.max_detections]
    ref = meta.to_original(boxes[order].numpy())
    got = pred.output["detections"]
    assert len(got) == len(order) > 0
    for d, b, s, c in zip(got, ref, scores[order].numpy(), classes[order].numpy()):
        assert d["index"] == int(c) and d["label"] == DET_CLASSES[int(c)]
        assert d["score"] == pytest.approx(float(s), abs=1e-6)
        assert np.allclose(d["box"], b, atol=0.01)


def test_predict_batch_handles_detection(detector_bundle):
    model = Model.load(detector_bundle)
    srcs = [encode(picture(80, 60, s), "PNG") for s in range(3)]
    batch = model.predict_batch(srcs, batch_size=3)
    single = [model.predict(s) for s in srcs]
    for a, b in zip(batch, single):
        assert [d["index"] for d in a.output["detections"]] == [d["index"] for d in b.output["detections"]]
        for da, db in zip(a.output["detections"], b.output["detections"]):
            assert np.allclose(da["box"], db["box"], atol=0.05)
