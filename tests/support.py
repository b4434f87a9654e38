"""Builders shared by tests: tiny real models (no downloads) and image bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle import Manifest, Preprocessing, TensorSpec, write_bundle


def tree(root: Path, files: dict[str, str | int]) -> Path:
    """Write ``files`` (relative path -> content, one line each) under ``root``: a fake sysfs or /proc."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{content}\n")
    return root


def build_tiny_classifier(path: Path, classes: int = 4, size: int = 16, dynamic_batch: bool = True) -> Path:
    """A real ONNX graph, Conv -> ReLU -> GlobalAveragePool -> Flatten -> Gemm, built with onnx.helper."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    batch = "batch" if dynamic_batch else 1
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    fc = numpy_helper.from_array(rng.standard_normal((classes, 8)).astype(np.float32), "fc")
    fcb = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "fcb")
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, classes])],
        [w, b, fc, fcb],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path

def make_tiny_bundle(out: Path, onnx_path: Path, size: int = 16, classes: int = 4, golden: bool = True):
    from edgeship.runtime.session import create_session

    pre = Preprocessing(size=(size, size), resize_to=size + 2)
    manifest = Manifest(
        name="tiny", model="model.onnx", version="3",
        inputs=[TensorSpec("input", ["batch", 3, size, size], "float32", "NCHW")],
        outputs=[TensorSpec("output", ["batch", classes])],
        preprocessing=pre,
    )
    pair = None
    if golden:
        x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
        y = create_session(onnx_path).run(None, {"input": x})[0]
        pair = (x, y)
    labels = [f"class-{i}" for i in range(classes)]
    return write_bundle(out, manifest, onnx_path, labels=labels, golden=pair)

def jpeg_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()
