"""FLOP counting against analytic counts: a graph built with onnx.helper, a torch export, ResNet-18."""

from __future__ import annotations

import io
import sys

import pytest

onnx = pytest.importorskip("onnx")
import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeship.errors import BundleError, InputError, MissingDependencyError  # noqa: E402
from edgeship.targets.flops import onnx_cost  # noqa: E402


def _init(name, shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def small_graph() -> onnx.ModelProto:
    """x[batch,3,8,8] -> Conv 4x3x3x3 pad 1 -> depthwise 3x3 -> ConvTranspose x2 -> Flatten -> Gemm -> MatMul."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=4),
        helper.make_node("ConvTranspose", ["c2", "w3"], ["t"], strides=[2, 2]),
        helper.make_node("Flatten", ["t"], ["f"]),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["g"]),
        helper.make_node("MatMul", ["g", "wm"], ["y"]),
    ]
    inits = [_init("w1", [4, 3, 3, 3]), _init("b1", [4]), _init("w2", [4, 1, 3, 3]), _init("w3", [4, 2, 2, 2]),
             _init("wg", [512, 10]), _init("bg", [10]), _init("wm", [10, 5])]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# Analytic, batch 1: output elements x MACs per output element.
CONV = 4 * 8 * 8 * (3 * 3 * 3)  # 6912
DEPTHWISE = 4 * 8 * 8 * (1 * 3 * 3)  # 2304: one input channel per group
CONV_T = (4 * 8 * 8) * (2 * 2 * 2)  # 2048: every input pixel scatters C_out x k x k
GEMM = 512 * 10
MATMUL = 10 * 5
PARAMS = 108 + 4 + 36 + 32 + 5120 + 10 + 50


def test_small_graph_matches_analytic_count():
    cost = onnx_cost(small_graph())
    assert cost.by_op == {"Conv": CONV + DEPTHWISE, "ConvTranspose": CONV_T, "Gemm": GEMM, "MatMul": MATMUL}
    assert cost.macs == CONV + DEPTHWISE + CONV_T + GEMM + MATMUL
    assert cost.flops == 2 * cost.macs
    assert cost.params == PARAMS
    assert cost.assumed == ("x:batch=1",) and cost.uncounted == ()


def test_input_shapes_override_and_bytes_and_path(tmp_path):
    model = small_graph()
    one = onnx_cost(model)
    assert onnx_cost(model, input_shapes={"x": [2, 3, 8, 8]}).macs == 2 * one.macs
    path = tmp_path / "small.onnx"
    onnx.save(model, path)
    assert onnx_cost(path).macs == one.macs == onnx_cost(model.SerializeToString()).macs
    with pytest.raises(InputError, match="has 4 dims"):
        onnx_cost(model, input_shapes={"x": [1, 3]})


def test_unreadable_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(BundleError, match="bad.onnx"):
        onnx_cost(bad)


def test_unreadable_model_bytes_not_echoed():
    """A model given as bytes is named by its size: the error must not carry the bytes' repr."""
    data = b"not a protobuf at all" * 1000
    with pytest.raises(BundleError, match=r"ONNX model \(21,000 bytes\)") as info:
        onnx_cost(data)
    assert "not a protobuf" not in str(info.value)


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"edgeship\[optimize\]"):
        onnx_cost(b"")


def _export(module, shape) -> bytes:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.zeros(*shape),), buf, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_conv_net_matches_analytic_count():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),                  # 16x16 out
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),         # depthwise, 8x8 out
        nn.Conv2d(8, 16, 1, groups=2),                             # grouped 1x1
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
    )
    expected = 8 * 16 * 16 * 27 + 8 * 8 * 8 * 9 + 16 * 8 * 8 * 4 + 1024 * 10
    cost = onnx_cost(_export(net, (1, 3, 16, 16)))
    assert cost.macs == expected
    assert cost.params == sum(p.numel() for p in net.parameters())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_resnet18_is_1_82_gmacs():
    tv = pytest.importorskip("torchvision")
    cost = onnx_cost(_export(tv.models.resnet18(weights=None), (1, 3, 224, 224)))
    # Convs + the classifier: 1.814 GMACs; the 1.82 usually quoted adds pooling and additions.
    assert cost.macs == pytest.approx(1.82e9, rel=0.01)
    # BatchNorm folds into the convs on export: params differ from torch's 11.69M by the BN scales.
    assert cost.params == pytest.approx(11.69e6, rel=0.01)
