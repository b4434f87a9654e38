"""Parameters, multiply-accumulates and FLOPs of an ONNX graph, from its shapes alone.

>>> from edgeship.targets.flops import onnx_cost
>>> cost = onnx_cost("resnet18.onnx")          # a path, bytes or an onnx.ModelProto
>>> round(cost.macs / 1e9, 2), cost.params
(1.82, 11689512)

Counted: Conv (grouped and depthwise too), ConvTranspose, Gemm, MatMul and their quantized
forms (QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger). Element-wise ops, pooling and
normalisation cost a few percent at most of a convnet and are left out. ``flops = 2 * macs``.
Dynamic dimensions are set to 1 (batch 1) unless ``input_shapes`` says otherwise; the ones set
are listed in ``Cost.assumed``. Needs ``onnx`` (the ``optimize`` extra), imported when called.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

from .._deps import require
from ..errors import BundleError, InputError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int
    flops: int
    by_op: dict[str, int] = field(default_factory=dict)  # MACs per op type
    assumed: tuple[str, ...] = ()  # "input:dim=1" for every dynamic dimension fixed here
    uncounted: tuple[str, ...] = ()  # heavy ops whose shapes shape inference could not resolve


def _conv(shapes: Callable[[str], Shape | None], node: Any, weight_index: int) -> int | None:
    # out elements x (C_in / group) x kernel: the weight's shape is [C_out, C_in/group, *k].
    out, w = shapes(node.output[0]), shapes(node.input[weight_index])
    if out is None or w is None:
        return None
    return math.prod(out) * math.prod(w[1:])


def _conv_transpose(shapes: Callable[[str], Shape | None], node: Any, weight_index: int) -> int | None:
    # Every input pixel scatters a (C_out/group x k) patch: weight is [C_in, C_out/group, *k].
    x, w = shapes(node.input[0]), shapes(node.input[weight_index])
    if x is None or w is None:
        return None
    return math.prod(x) * math.prod(w[1:])


def _gemm(shapes: Callable[[str], Shape | None], node: Any) -> int | None:
    a, out = shapes(node.input[0]), shapes(node.output[0])
    if a is None or out is None or len(a) != 2:
        return None
    trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
    return math.prod(out) * (a[0] if trans_a else a[1])


def _matmul(shapes: Callable[[str], Shape | None], node: Any, a_index: int = 0) -> int | None:
    a, out = shapes(node.input[a_index]), shapes(node.output[0])
    if a is None or out is None or not a:
        return None
    return math.prod(out) * a[-1]  # out [..., M, N], each element a K-long dot product


# op type -> MAC counter. Input positions follow the ONNX operator specs.
COUNTERS: dict[str, Callable[[Callable[[str], Shape | None], Any], int | None]] = {
    "Conv": lambda s, n: _conv(s, n, 1),
    "ConvInteger": lambda s, n: _conv(s, n, 1),
    "QLinearConv": lambda s, n: _conv(s, n, 3),
    "ConvTranspose": lambda s, n: _conv_transpose(s, n, 1),
    "Gemm": _gemm,
    "MatMul": _matmul,
    "MatMulInteger": _matmul,
    "QLinearMatMul": lambda s, n: _matmul(s, n, 0),
}


def _what(model: Union[str, os.PathLike, bytes, Any]) -> str:
    """The model as an error message names it: a path, never the repr of its bytes or protobuf."""
    if isinstance(model, bytes):
        return f"ONNX model ({len(model):,} bytes)"
    return os.fsdecode(model) if isinstance(model, (str, os.PathLike)) else "ONNX model"


def _load(model: Union[str, os.PathLike, bytes, Any]):
    onnx = require("onnx", "optimize", "counting FLOPs of an ONNX model")
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return onnx, copy
    try:
        if isinstance(model, bytes):
            return onnx, onnx.load_from_string(model)
        # Weights stored outside the file are not needed: shapes are in the initializer headers.
        return onnx, onnx.load(os.fspath(model), load_external_data=False)
    except (OSError, ValueError, RuntimeError, Exception) as exc:  # DecodeError has no common base
        raise BundleError(f"{_what(model)}: not a readable ONNX model ({exc})") from exc


def _fix_inputs(model: Any, input_shapes: Mapping[str, Sequence[int]]) -> list[str]:
    init_names = {i.name for i in model.graph.initializer}
    assumed = []
    for inp in model.graph.input:
        if inp.name in init_names or not inp.type.HasField("tensor_type"):
            continue
        dims = inp.type.tensor_type.shape.dim
        given = input_shapes.get(inp.name)
        if given is not None:
            if len(given) != len(dims):
                raise InputError(f"input_shapes[{inp.name!r}]: the graph input has {len(dims)} dims, got {list(given)}")
            for d, v in zip(dims, given):
                d.dim_value = int(v)
            continue
        for i, d in enumerate(dims):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                assumed.append(f"{inp.name}:{d.dim_param or i}=1")
                d.dim_value = 1
    return assumed


def onnx_cost(model: Union[str, os.PathLike, bytes, Any],
              input_shapes: Mapping[str, Sequence[int]] | None = None) -> Cost:
    """Params, MACs and FLOPs of ``model`` at batch 1 (or at ``input_shapes``).

    >>> onnx_cost("mobilenet.onnx", input_shapes={"input": [1, 3, 320, 320]}).flops  # doctest: +SKIP
    """
    onnx, proto = _load(model)
    assumed = _fix_inputs(proto, input_shapes or {})
    # Symbolic shapes left by the exporter would mask the concrete ones inferred from the fixed inputs.
    del proto.graph.value_info[:]
    for out in proto.graph.output:
        out.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError / ValidationError
        raise BundleError(f"{_what(model)}: ONNX shape inference failed ({str(exc).splitlines()[0][:200]})") from exc

    known: dict[str, Shape] = {}
    for init in inferred.graph.initializer:
        known[init.name] = tuple(init.dims)
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.HasField("shape"):
            dims = [d.dim_value for d in t.shape.dim if d.HasField("dim_value")]
            if len(dims) == len(t.shape.dim):  # every dimension known
                known[vi.name] = tuple(dims)
    for node in inferred.graph.node:  # Constant nodes that hold weights (some exporters use them)
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    known[node.output[0]] = tuple(attr.t.dims)

    by_op: dict[str, int] = {}
    uncounted = []
    for node in inferred.graph.node:
        counter = COUNTERS.get(node.op_type)
        if counter is None:
            continue
        macs = counter(known.get, node)
        if macs is None:
            uncounted.append(f"{node.op_type} {node.name or node.output[0]}")
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
    params = sum(math.prod(init.dims) for init in inferred.graph.initializer)
    macs = sum(by_op.values())
    return Cost(params=int(params), macs=int(macs), flops=int(2 * macs), by_op=by_op,
                assumed=tuple(assumed), uncounted=tuple(uncounted))
