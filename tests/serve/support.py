"""Builders of the serve tests: tiny torch models exported to bundles, images, a real server process."""

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

CLASSES = [f"class{i}" for i in range(10)]


DET_CLASSES = ["cat", "dog", "car"]


DET_SIZE = 64


SSD_ANCHORS = 48


# Runs `edgeship serve` through the verb's own register() in a fresh interpreter.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`edgeship serve` in a subprocess on 127.0.0.1, stopped with SIGTERM (graceful) at the end."""

    def __init__(self, bundles: list[Path], *flags: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                 preexec_fn=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-c", SERVE_MAIN, *map(str, bundles), "--port", str(self.port),
               "--log-level", "warning", *flags]
        import tempfile

        self.log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd, preexec_fn=preexec_fn)

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

    def wait_ready(self, timeout: float = 120.0) -> "ServerProcess":
        """Live, then ready (GET /health/ready answers 200: models checked, an LLM loaded)."""
        import httpx

        self.wait_live(timeout=timeout)
        deadline = time.monotonic() + timeout
        while (r := httpx.get(self.url + "/health/ready", timeout=10)).status_code != 200:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready: {r.text}\n{self.output()[-2000:]}")
            time.sleep(0.2)
        return self

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
