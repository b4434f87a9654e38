"""Which operators to quantize: candidate INT8 layouts, and the nodes the accuracy gate keeps float.

>>> graph = GraphInfo.load("model.pre.onnx")
>>> [plan.name for plan in candidate_plans(graph, [Layout.ALL, Layout.NO_SE])]
['all', 'no-se']

Quantizing every operator is not always fastest: on depthwise/SE-heavy networks each float
island costs a DequantizeLinear and a QuantizeLinear pass over a large tensor, and some ops
(HardSigmoid) have no INT8 kernel at all. So quantize() builds several layouts, times each against
FP32 on the host and keeps the fastest one that passes the accuracy gate. Layouts are registered
here by decorator, keyed by :class:`Layout`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from ..util import Registry
from .qconfig import Layout

# Operators ORT's CPU provider runs in INT8 (directly or through QDQ fusion); Relu/Clip fold into ranges.
INT8_OPS = ["Conv", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "GlobalAveragePool", "AveragePool", "MaxPool",
            "Concat", "Relu", "Clip", "LeakyRelu", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
            "Resize", "Pad", "Split", "Softmax", "Gather", "ArgMax"]
MATMUL_OPS = ["Conv", "Gemm", "MatMul"]
HARD_ACTIVATIONS = {"HardSigmoid", "HardSwish"}
FUSED_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu"}


@dataclass(frozen=True)
class Plan:
    """One layout made concrete for a graph: what quantize_static/quantize_dynamic is told."""

    name: str
    why: str
    op_types: Union[tuple[str, ...], None] = None  # None: every type ORT quantizes
    exclude: tuple[str, ...] = ()  # node names kept float
    quant_format: str = "qdq"  # "qdq" or "qoperator"
    dynamic: bool = False

    def with_excluded(self, nodes: list[str]) -> "Plan":
        merged = tuple(dict.fromkeys([*self.exclude, *nodes]))
        return Plan(f"{self.name}+float{len(merged) - len(self.exclude)}", self.why, self.op_types, merged,
                    self.quant_format, self.dynamic)


@dataclass
class GraphInfo:
    """The node-level facts layouts need, read once from an ONNX graph."""

    model: object  # onnx.ModelProto
    nodes: list = field(default_factory=list)
    producer: dict = field(default_factory=dict)
    consumers: dict = field(default_factory=dict)
    initializers: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path_or_model) -> "GraphInfo":
        import onnx

        model = onnx.load(str(path_or_model)) if not hasattr(path_or_model, "graph") else path_or_model
        info = cls(model, list(model.graph.node))
        info.initializers = {i.name: i for i in model.graph.initializer}
        info.consumers = collections.defaultdict(list)
        for n in info.nodes:
            for t in n.input:
                info.consumers[t].append(n)
            for t in n.output:
                info.producer[t] = n
        return info

    def op_counts(self) -> dict[str, int]:
        return dict(collections.Counter(n.op_type for n in self.nodes))

    def weight_params(self, op_types: tuple[str, ...]) -> int:
        total = 0
        for n in self.nodes:
            if n.op_type in op_types:
                for t in n.input[1:2]:
                    if t in self.initializers:
                        total += int(np.prod(self.initializers[t].dims))
        return total

    def matmul_dominated(self) -> bool:
        """True for Linear/attention-heavy graphs: more MatMul/Gemm weights than Conv weights, or no Conv."""
        conv = self.weight_params(("Conv",))
        dense = self.weight_params(("MatMul", "Gemm"))
        return conv == 0 and dense > 0 or dense > conv

    def is_depthwise(self, node) -> bool:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return node.op_type == "Conv" and group > 1

    def se_nodes(self) -> set[str]:
        """Squeeze-excitation blocks: from a global pool to the Mul that rescales the feature map."""
        found: set[str] = set()
        for start in self.nodes:
            if start.op_type not in ("GlobalAveragePool", "ReduceMean"):
                continue
            path, frontier = [start], [start]
            for _ in range(8):
                nxt = []
                for node in frontier:
                    for c in self.consumers.get(node.output[0], []):
                        path.append(c)
                        if c.op_type != "Mul":
                            nxt.append(c)
                frontier = nxt
                if not frontier:
                    break
            if any(n.op_type == "Mul" for n in path) and not any(n.op_type in ("Gemm", "MatMul", "Flatten") for n in path):
                found.update(n.name for n in path)
        return found

    def hard_activation_nodes(self) -> set[str]:
        """HardSigmoid/HardSwish and the Mul that completes a decomposed HardSwish or SE gate."""
        out = set()
        for n in self.nodes:
            if n.op_type in HARD_ACTIVATIONS:
                out.add(n.name)
                out.update(c.name for c in self.consumers.get(n.output[0], []) if c.op_type == "Mul")
        return out

    def first_and_last(self) -> set[str]:
        inputs = {i.name for i in self.model.graph.input}
        outputs = {o.name for o in self.model.graph.output}
        ends = set()
        first = next((n for n in self.nodes if n.op_type in MATMUL_OPS and any(t in inputs for t in n.input)), None)
        if first is not None:
            ends.add(first.name)
        for n in reversed(self.nodes):
            if n.op_type in MATMUL_OPS:
                ends.add(n.name)
                break
        ends.update(n.name for n in self.nodes if n.op_type in MATMUL_OPS and any(t in outputs for t in n.output))
        return ends

    def unit(self, names) -> list[str]:
        """``names`` plus the activations fused into them (Relu/Clip after a Conv) and the Pads before.

        Keeping a Conv float but quantizing its Clip would quantize the Clip's input with the wide
        pre-activation range: worse than quantizing both. So exclusions always take whole units.
        """
        out = list(dict.fromkeys(names))
        by_name = {n.name: n for n in self.nodes}
        for name in list(out):
            node = by_name.get(name)
            if node is None:
                continue
            for t in node.output:
                users = self.consumers.get(t, [])
                if len(users) == 1 and users[0].op_type in FUSED_ACTIVATIONS:
                    out.append(users[0].name)
            for t in node.input:
                prev = self.producer.get(t)
                if prev is not None and prev.op_type == "Pad" and len(self.consumers.get(t, [])) == 1:
                    out.append(prev.name)
        return list(dict.fromkeys(out))

    def tensor_nodes(self, tensor: str) -> list[str]:
        """The nodes to keep float so that ``tensor`` is never quantized: its producer and consumers."""
        names = [self.producer[tensor].name] if tensor in self.producer else []
        names += [c.name for c in self.consumers.get(tensor, [])]
        return self.unit(names)


LayoutFn = Callable[[GraphInfo], Union[Plan, None]]
LAYOUTS: Registry[Layout, LayoutFn] = Registry("layout")
register = LAYOUTS.register


@register(Layout.ALL)
def _all(g: GraphInfo) -> Plan:
    return Plan("all", "every operator ORT quantizes (plain static QDQ)")


@register(Layout.INT8_CHAIN)
def _int8_chain(g: GraphInfo) -> Plan | None:
    hard = g.hard_activation_nodes()
    return Plan("int8-chain", "only ops with INT8 kernels; HardSigmoid/HardSwish and their Muls float",
                tuple(INT8_OPS), tuple(sorted(hard)))


@register(Layout.NO_SE)
def _no_se(g: GraphInfo) -> Plan | None:
    se = g.se_nodes()
    if not se:
        return None
    return Plan("no-se", f"{len(se)} squeeze-excitation nodes float", exclude=tuple(sorted(se)))


@register(Layout.FLOAT_ENDS)
def _float_ends(g: GraphInfo) -> Plan | None:
    ends = g.first_and_last()
    return Plan("float-ends", "first conv and classifier float", exclude=tuple(sorted(ends))) if ends else None


@register(Layout.FLOAT_STEM)
def _float_stem(g: GraphInfo) -> Plan | None:
    # Quantization noise compounds from the first layers on; on EfficientNet-Lite0 keeping the first
    # eighth of the nodes and the head float lifted top-1 agreement from 0.93 to 0.977 (300 crops),
    # and those high-resolution layers gain least from INT8 on CPUs anyway.
    order = [n.name for n in g.nodes]
    if len(order) < 16:
        return None
    head = [n.name for n in g.nodes if n.op_type in MATMUL_OPS][-2:]
    return Plan("float-stem", "first eighth of the graph and the head float",
                exclude=tuple(g.unit(order[: len(order) // 8] + head)))


@register(Layout.CONV_ONLY)
def _conv_only(g: GraphInfo) -> Plan:
    return Plan("conv-only", "Conv/Gemm/MatMul only", tuple(MATMUL_OPS))


@register(Layout.QOPERATOR)
def _qoperator(g: GraphInfo) -> Plan:
    return Plan("qoperator", "every operator, QOperator format", quant_format="qoperator")


@register(Layout.DYNAMIC)
def _dynamic(g: GraphInfo) -> Plan | None:
    if g.weight_params(("MatMul", "Gemm")) == 0:
        return None
    return Plan("dynamic", "dynamic INT8 weights of MatMul/Gemm; activations quantized at run time",
                ("MatMul", "Gemm"), dynamic=True)


def candidate_plans(g: GraphInfo, layouts: list[Layout]) -> list[Plan]:
    """Plans for ``layouts`` on ``g``, skipping layouts that do not apply or repeat an earlier plan."""
    plans, seen = [], set()
    op_types = set(g.op_counts())
    for layout in layouts:
        plan = LAYOUTS.get(layout)(g)
        if plan is None:
            continue
        effective_types = frozenset(op_types if plan.op_types is None else op_types & set(plan.op_types))
        key = (effective_types, frozenset(plan.exclude), plan.quant_format, plan.dynamic)
        if key in seen:
            continue
        seen.add(key)
        plans.append(plan)
    return plans


# ---------------------------------------------------------------- sensitivity


@dataclass(frozen=True)
class Sensitivity:
    tensor: str
    sqnr_db: float  # median over channels of the signal-to-quantization-noise ratio; low = sensitive
    nodes: tuple[str, ...]


def _activation_qparams(qmodel) -> dict[str, tuple[float, int, int, int]]:
    """tensor -> (scale, zero_point, qmin, qmax) for every per-tensor QuantizeLinear of an activation."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in qmodel.graph.initializer}
    out = {}
    for n in qmodel.graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits or len(n.input) < 3:
            continue
        scale, zp = inits.get(n.input[1]), inits.get(n.input[2])
        if scale is None or zp is None or scale.size != 1:
            continue
        info = np.iinfo(zp.dtype)
        out[n.input[0]] = (float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]), int(info.min), int(info.max))
    return out


def sensitivities(float_path: str, qdq_path: str, samples: list[np.ndarray], graph: GraphInfo) -> list[Sensitivity]:
    """Rank quantized activations by how much INT8 rounding destroys them, most sensitive first.

    Runs the FP32 model with every quantized activation exposed, fake-quantizes each with the scale
    and zero point the QDQ model chose, and measures the SQNR per channel. The median over channels
    catches the classic failure that a whole-tensor SQNR hides: one outlier channel stretches the range
    and every other channel rounds to zero.
    """
    import onnx
    import onnxruntime as ort

    qparams = _activation_qparams(onnx.load(qdq_path))
    names = [t for t in qparams if t in graph.producer or t in graph.consumers]
    if not names:
        return []
    model = onnx.load(float_path)
    existing = {o.name for o in model.graph.output}
    for t in names:
        if t not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name
    # Per-channel sums of signal and noise energy, accumulated over the samples.
    signal: dict[str, np.ndarray] = {}
    noise: dict[str, np.ndarray] = {}
    for x in samples:
        values = sess.run(names, {input_name: x[None].astype(np.float32)})
        for t, v in zip(names, values):
            scale, zp, qmin, qmax = qparams[t]
            v = v.astype(np.float64)
            err = v - (np.clip(np.round(v / scale) + zp, qmin, qmax) - zp) * scale
            axes = tuple(i for i in range(v.ndim) if i != 1) if v.ndim >= 2 else None
            s2 = np.sum(v * v, axis=axes) if axes is not None else np.atleast_1d(np.sum(v * v))
            n2 = np.sum(err * err, axis=axes) if axes is not None else np.atleast_1d(np.sum(err * err))
            signal[t] = signal.get(t, 0) + np.atleast_1d(s2)
            noise[t] = noise.get(t, 0) + np.atleast_1d(n2)
    scores = {}
    for t in names:
        live = signal[t] > 0
        if not live.any():
            scores[t] = 200.0
            continue
        per_channel = 10.0 * np.log10(signal[t][live] / np.maximum(noise[t][live], 1e-30))
        scores[t] = float(np.clip(np.median(per_channel), -200.0, 200.0))
    ranked = sorted(names, key=lambda t: scores[t])
    return [Sensitivity(t, round(scores[t], 2), tuple(graph.tensor_nodes(t))) for t in ranked]
