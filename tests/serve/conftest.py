"""Shared fixtures of the serve tests: tiny torch models exported to bundles, images, a real server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle import Manifest, Postprocessing, Preprocessing, Resize, Task, TensorSpec, write_bundle
from tests.models.tiny_torch import tiny_cnn
from tests.serve.support import (
    CLASSES,
    DET_CLASSES,
    DET_SIZE,
    SSD_ANCHORS,
    ServerProcess,
    TinyYolo,
    _export,
    _ort_run,
    encode,
    picture,
)


@pytest.fixture(scope="session")
def classifier_bundle(tmp_path_factory) -> Path:
    """A two-conv CNN on 32x32 inputs, 10 classes, dynamic batch, with a golden pair."""
    return _classifier(tmp_path_factory, seed=0, version="3")


@pytest.fixture(scope="session")
def classifier_bundle_v4(tmp_path_factory) -> Path:
    """The same model name and shape as ``classifier_bundle``, other weights, version 4 (a model update)."""
    return _classifier(tmp_path_factory, seed=1, version="4")


def _classifier(tmp_path_factory, seed: int, version: str) -> Path:
    torch = pytest.importorskip("torch")
    net = tiny_cnn(len(CLASSES), seed=seed)
    tmp = tmp_path_factory.mktemp("cls")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    _export(net, torch.from_numpy(x), tmp / "model.onnx", ["logits"])
    manifest = Manifest(
        name="tiny", model="model.onnx", version=version, task=Task.CLASSIFY,
        inputs=[TensorSpec("input", ["batch", 3, 32, 32], "float32", "NCHW")],
        outputs=[TensorSpec("logits", ["batch", 10])],
        preprocessing=Preprocessing(size=(32, 32), resize_to=36),
    )
    out = tmp / "bundle"
    write_bundle(out, manifest, tmp / "model.onnx", labels=CLASSES, golden=(x, _ort_run(tmp / "model.onnx", x)[0]))
    return out


@pytest.fixture(scope="session")
def detector_bundle(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("det")
    x = np.random.default_rng(1).standard_normal((1, 3, DET_SIZE, DET_SIZE)).astype(np.float32)
    _export(TinyYolo.module(), torch.from_numpy(x), tmp / "model.onnx", ["output0"])
    manifest = Manifest(
        name="tinydet", model="model.onnx", version="1", task=Task.DETECT,
        inputs=[TensorSpec("input", ["batch", 3, DET_SIZE, DET_SIZE], "float32", "NCHW")],
        outputs=[TensorSpec("output0", ["batch", 4 + len(DET_CLASSES), 64])],
        preprocessing=Preprocessing(size=(DET_SIZE, DET_SIZE), resize=Resize.LETTERBOX, resize_to=None,
                                    mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        postprocessing=Postprocessing(decoder="yolov8", score_threshold=0.3, iou_threshold=0.45, max_detections=50),
    )
    out = tmp / "bundle"
    write_bundle(out, manifest, tmp / "model.onnx", labels=DET_CLASSES, golden=(x, _ort_run(tmp / "model.onnx", x)[0]))
    return out


@pytest.fixture(scope="session")
def ssd_bundle(tmp_path_factory) -> Path:
    """An SSD-style head: deltas [N, A, 4] and logits [N, A, 1 + classes] (background first), anchors file."""
    torch = pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("ssd")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU(),
                                            torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
            self.loc = torch.nn.Linear(128, SSD_ANCHORS * 4)
            self.cls = torch.nn.Linear(128, SSD_ANCHORS * (1 + len(DET_CLASSES)))

        def forward(self, x):
            f = self.body(x)
            return self.loc(f).view(-1, SSD_ANCHORS, 4) * 3, self.cls(f).view(-1, SSD_ANCHORS, 1 + len(DET_CLASSES)) * 4

    torch.manual_seed(2)
    x = np.random.default_rng(2).standard_normal((1, 3, DET_SIZE, DET_SIZE)).astype(np.float32)
    _export(Net().eval(), torch.from_numpy(x), tmp / "model.onnx", ["boxes", "scores"])
    rng = np.random.default_rng(3)
    anchors = np.concatenate([rng.uniform(0.2, 0.8, (SSD_ANCHORS, 2)), rng.uniform(0.1, 0.5, (SSD_ANCHORS, 2))], 1)
    np.save(tmp / "anchors.npy", anchors.astype(np.float32))
    manifest = Manifest(
        name="tinyssd", model="model.onnx", task=Task.DETECT,
        inputs=[TensorSpec("input", ["batch", 3, DET_SIZE, DET_SIZE], "float32", "NCHW")],
        outputs=[TensorSpec("boxes", ["batch", SSD_ANCHORS, 4]), TensorSpec("scores", ["batch", SSD_ANCHORS, 4])],
        preprocessing=Preprocessing(size=(DET_SIZE, DET_SIZE), resize=Resize.LETTERBOX, resize_to=None),
        postprocessing=Postprocessing(decoder="ssd", score_threshold=0.2, iou_threshold=0.5, softmax=True,
                                      anchors="anchors.npy"),
    )
    out = tmp / "bundle"
    write_bundle(out, manifest, tmp / "model.onnx", labels=DET_CLASSES, extra_files={"anchors.npy": tmp / "anchors.npy"})
    return out


@pytest.fixture(scope="session")
def jpeg() -> bytes:
    return encode(picture(), "JPEG", quality=90)


@pytest.fixture(scope="module")
def server(classifier_bundle, detector_bundle):
    srv = ServerProcess([classifier_bundle, detector_bundle], "--max-upload-mb", "1", "--prep-threads", "2").wait_live()
    yield srv
    srv.stop()
