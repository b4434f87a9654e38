"""Shared fixtures of the serve tests: tiny torch models exported to bundles, images, a real server."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle import Manifest, Postprocessing, Preprocessing, Resize, Task, TensorSpec, write_bundle

CLASSES = [f"class{i}" for i in range(10)]
DET_CLASSES = ["cat", "dog", "car"]
DET_SIZE = 64
SSD_ANCHORS = 48

# Runs `edgeship serve` through the verb's own register(), whether or not cli.VERB_MODULES lists it yet.
# EDGESHIP_NO_TORCH=1 makes torch unimportable first, as on a device that never installed it.
SERVE_MAIN = """
import os, sys
if os.environ.get("EDGESHIP_NO_TORCH") == "1":
    for name in ("torch", "torchvision"):
        sys.modules[name] = None
import argparse
from edgeship.commands import serve
parser = argparse.ArgumentParser(prog="edgeship")
serve.register(parser.add_subparsers())
args = parser.parse_args(["serve", *sys.argv[1:]])
if os.environ.get("EDGESHIP_NO_TORCH") == "1":
    assert sys.modules["torch"] is None
sys.exit(args.run(args))
"""


def _export(module, x, path: Path, outputs: list[str]) -> None:
    import warnings

    import torch

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            module, x, str(path), opset_version=17, input_names=["input"], output_names=outputs,
            dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}, dynamo=False,
        )


def _ort_run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})


@pytest.fixture(scope="session")
def classifier_bundle(tmp_path_factory) -> Path:
    """A two-conv CNN on 32x32 inputs, 10 classes, dynamic batch, with a golden pair."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    ).eval()
    tmp = tmp_path_factory.mktemp("cls")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    _export(net, torch.from_numpy(x), tmp / "model.onnx", ["logits"])
    manifest = Manifest(
        name="tiny", model="model.onnx", version="3", task=Task.CLASSIFY,
        inputs=[TensorSpec("input", ["batch", 3, 32, 32], "float32", "NCHW")],
        outputs=[TensorSpec("logits", ["batch", 10])],
        preprocessing=Preprocessing(size=(32, 32), resize_to=36),
    )
    out = tmp / "bundle"
    write_bundle(out, manifest, tmp / "model.onnx", labels=CLASSES, golden=(x, _ort_run(tmp / "model.onnx", x)[0]))
    return out


class TinyYolo:
    """Builds a torch module giving a YOLOv8-shaped output [N, 4 + classes, anchors] on 64x64 inputs."""

    @staticmethod
    def module():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = torch.nn.Sequential(
                    torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                    torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                    torch.nn.Conv2d(16, 4 + len(DET_CLASSES), 3, stride=2, padding=1),
                )
                scale = torch.tensor([DET_SIZE, DET_SIZE, DET_SIZE / 2, DET_SIZE / 2]).view(1, 4, 1)
                self.register_buffer("scale", scale)

            def forward(self, x):
                y = self.body(x).flatten(2)  # [N, 4 + C, 64]
                box = torch.sigmoid(y[:, :4]) * self.scale
                return torch.cat([box, torch.sigmoid(y[:, 4:] * 4)], dim=1)

        torch.manual_seed(1)
        return Net().eval()


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


def picture(width: int = 96, height: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth random picture (encoders compress it well; classes vary with the seed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def jpeg() -> bytes:
    return encode(picture(), "JPEG", quality=90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`edgeship serve` in a subprocess on 127.0.0.1, stopped with SIGTERM (graceful) at the end."""

    def __init__(self, bundles: list[Path], *flags: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-c", SERVE_MAIN, *map(str, bundles), "--port", str(self.port),
               "--log-level", "warning", *flags]
        import tempfile

        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd)

    def wait_live(self, timeout: float = 60.0) -> "ServerProcess":
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health/live", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(classifier_bundle, detector_bundle):
    srv = ServerProcess([classifier_bundle, detector_bundle], "--max-upload-mb", "1", "--prep-threads", "2").wait_live()
    yield srv
    srv.stop()
