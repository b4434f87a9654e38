"""Tiny models and image folders for the quantize tests: built here, no downloads.

Imported by test_quantize.py (not a conftest: tests/optimize is shared with other stages' tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.models.tiny_torch import tiny_cnn as shared_tiny_cnn

LABELS = [f"class{i}" for i in range(10)]


def tiny_cnn(sensitive: bool = False, seed: int = 0, near_tied: bool = False):
    """conv-relu-conv-relu-pool-linear, 32x32 RGB in, 10 logits out.

    ``sensitive``: the second conv's channel 0 is scaled by 1000 and the classifier reads it back at
    1/1000, so the float model is unchanged in kind but one channel stretches the activation range:
    per-tensor INT8 rounds every other channel to zero and the predictions collapse.

    ``near_tied``: every class reads the same features, plus differences 10^4 times smaller: the
    logits move together from input to input while the classes stay within a rounding step of each
    other, as a random-weight network's near-uniform outputs do. INT8 keeps the outputs but not
    which class is on top.
    """
    import torch

    model = shared_tiny_cnn(len(LABELS), seed=seed)  # conv-relu-conv-relu-pool-flatten-linear
    if sensitive:
        with torch.no_grad():
            conv, fc = model[2], model[6]
            conv.weight[0].abs_().mul_(1000.0)
            conv.bias[0] = 1000.0
            fc.weight[:, 0] *= 1e-5
            fc.weight[:, 1:] *= 10.0  # the other channels decide the class...
            fc.bias.zero_()  # ...not the bias
    if near_tied:
        with torch.no_grad():
            fc = model[6]
            fc.weight.copy_(fc.weight[:1].abs() + 1e-4 * fc.weight)
            fc.bias.zero_()
    return model


def make_bundle(root: Path, name: str = "tiny", sensitive: bool = False, near_tied: bool = False,
                pretrained: bool | None = None) -> Path:
    """Export tiny_cnn to ONNX (opset 17) and write it as a bundle with 32x32 preprocessing.

    ``pretrained``: None writes no provenance; True/False an export row saying so, as ``edgeship export``
    writes for a torchvision architecture with (or without) weights.
    """
    import torch

    from edgeship.bundle import Manifest, Preprocessing, Stage, StageName, TensorSpec, now_iso, write_bundle

    model = tiny_cnn(sensitive, near_tied=near_tied)
    onnx_path = root / f"{name}.onnx"
    x = torch.randn(1, 3, 32, 32)
    torch.onnx.export(model, x, str(onnx_path), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"])
    manifest = Manifest(
        name=name, model="model.onnx",
        inputs=[TensorSpec("input", [1, 3, 32, 32], "float32", "NCHW")],
        outputs=[TensorSpec("logits", [1, 10])],
        preprocessing=Preprocessing(size=(32, 32), resize_to=36),
        provenance=[] if pretrained is None else [
            Stage(StageName.EXPORT, now_iso(), "test", {"source": name, "weights": None, "pretrained": pretrained})],
    )
    with torch.no_grad():
        y = model(x).numpy()
    out = root / f"{name}-bundle"
    write_bundle(out, manifest, onnx_path, labels=LABELS, golden=(x.numpy(), y))
    return out


def image_folder(root: Path, n: int = 8, seed: int = 0) -> Path:
    """``n`` smooth colour pictures (gradients, blobs, noise) as PNG files in ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:64, 0:80] / 64.0
    for i in range(n):
        a, b, c = rng.uniform(-3, 3, 3)
        base = np.stack([np.sin(a * xx + b * yy + c + k) for k in range(3)], -1)
        cx, cy = rng.uniform(0, 1.2, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 8)[..., None] * rng.uniform(-1, 1, 3)
        img = (base * 0.5 + blob + rng.normal(0, 0.1, base.shape)) * 0.5 + 0.5
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / f"img{i}.png")
    return root


def make_fmnist_bundle(root: Path) -> Path:
    """A tiny random 1x28x28 classifier bundle, for the labelled Fashion-MNIST path."""
    import torch

    from edgeship.bundle import Manifest, TensorSpec, write_bundle

    model = shared_tiny_cnn(len(LABELS), in_channels=1, widths=(8,), strides=(2,))
    path = root / "fmnist.onnx"
    torch.onnx.export(model, torch.randn(1, 1, 28, 28), str(path), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"])
    manifest = Manifest(name="fmnist", model="model.onnx", inputs=[TensorSpec("input", [1, 1, 28, 28], "float32", "NCHW")],
                        outputs=[TensorSpec("logits", [1, 10])])
    out = root / "fmnist-bundle"
    write_bundle(out, manifest, path, labels=LABELS)
    return out


def near_constant_bundle(root: Path, name: str = "near-constant") -> Path:
    """A 32x32 classifier with a sigmoid gate that stays within a few hundred float32 steps of 0.5.

    input -> Conv 3x3 -> Relu ----------------> Mul -> GlobalAveragePool -> Flatten -> Gemm -> logits
    input -> Conv 1x1 (weights 1e-5) -> Sigmoid -^

    The gate's values span fewer float32 steps than ONNX Runtime's Percentile calibrator has bins
    (2048), so numpy cannot bin them: "Too many bins for data range", the failure seen on random-weight
    EfficientNet-B0 and MobileNetV3-Large, whose squeeze-excitation sigmoids sit at 0.5.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeship.bundle import Manifest, Preprocessing, TensorSpec, write_bundle
    from edgeship.runtime.session import create_session

    rng = np.random.default_rng(0)
    init = {
        "w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
        "b": rng.standard_normal(8).astype(np.float32) * 0.1,
        "wg": rng.standard_normal((8, 3, 1, 1)).astype(np.float32) * 1e-5,
        "fc": rng.standard_normal((len(LABELS), 8)).astype(np.float32),
        "fcb": np.zeros(len(LABELS), np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Conv", ["input", "wg"], ["gate_in"], name="gate_conv"),
        helper.make_node("Sigmoid", ["gate_in"], ["gate"], name="gate"),
        helper.make_node("Mul", ["relu", "gate"], ["gated"], name="mul"),
        helper.make_node("GlobalAveragePool", ["gated"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])],
        [numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = root / f"{name}.onnx"
    onnx.save(model, str(path))
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    y = create_session(path).run(None, {"input": x})[0]
    manifest = Manifest(
        name=name, model="model.onnx",
        inputs=[TensorSpec("input", [1, 3, 32, 32], "float32", "NCHW")],
        outputs=[TensorSpec("logits", [1, len(LABELS)])],
        preprocessing=Preprocessing(size=(32, 32), resize_to=36),
    )
    out = root / f"{name}-bundle"
    write_bundle(out, manifest, path, labels=LABELS, golden=(x, y))
    return out
