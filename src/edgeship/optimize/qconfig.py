"""What ``quantize`` is asked to do: the modes, calibration methods and gates, and the stage's config.

>>> QuantizeConfig(calibration="photos", target="x86", gate="similarity").gate
<Gate.SIMILARITY: 'similarity'>
>>> target_format("rpi5").activation
'u8'

A recipe's ``quantize:`` section maps onto :class:`QuantizeConfig` one to one; the devices preset named
by ``target`` gives the INT8 format (:func:`target_format`).
"""

from __future__ import annotations

import argparse
import enum
from dataclasses import dataclass, field
from typing import Union

from .._config import cli, fraction, non_negative_float, positive_float, positive_int
from ..errors import InputError

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class Layout(str, enum.Enum):
    ALL = "all"  # plain static QDQ: every operator ORT can quantize (the baseline the table compares with)
    INT8_CHAIN = "int8-chain"  # only ops with INT8 kernels; HardSigmoid/HardSwish neighbourhoods stay float
    NO_SE = "no-se"  # squeeze-excitation blocks stay float
    FLOAT_ENDS = "float-ends"  # first conv and classifier stay float (the usual sensitive layers)
    FLOAT_STEM = "float-stem"  # the first eighth of the graph (high resolution) and the head stay float
    CONV_ONLY = "conv-only"  # Conv/Gemm/MatMul only
    QOPERATOR = "qoperator"  # all operators, QOperator format (QLinearConv etc. written out)
    DYNAMIC = "dynamic"  # dynamic INT8 of MatMul/Gemm weights (Linear/attention-heavy models)



def layout_list(text: str) -> list[str]:
    """argparse type for ``--layouts all,no-se``."""
    known = [m.value for m in Layout]
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in known]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(known)}; got {text!r}")
    return values


class Mode(str, enum.Enum):
    AUTO = "auto"  # fp16 for GPU targets, dynamic for MatMul/Gemm-dominated graphs, static otherwise
    STATIC = "static"
    DYNAMIC = "dynamic"
    FP16 = "fp16"


class Method(str, enum.Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Gate(str, enum.Enum):
    """How a quantized model is judged against FP32 (``auto`` picks one of the other three per run)."""

    AUTO = "auto"  # accuracy with labels; else similarity if the provenance says random weights; else agreement
    ACCURACY = "accuracy"  # labelled data: keep min_accuracy of FP32's accuracy
    AGREEMENT = "agreement"  # unlabelled data: top-1 agreement with FP32 of at least min_agreement
    SIMILARITY = "similarity"  # outputs close to FP32's: relative error of at most max_output_error


STATIC_LAYOUTS = [Layout.ALL, Layout.INT8_CHAIN, Layout.NO_SE, Layout.FLOAT_ENDS, Layout.FLOAT_STEM,
                  Layout.CONV_ONLY, Layout.QOPERATOR]


@dataclass(frozen=True)
class QuantizeConfig:
    """The quantize stage's settings; a recipe's ``quantize:`` section maps onto it one to one."""

    mode: Mode = field(default=Mode.AUTO, metadata=cli(
        "auto: fp16 for GPU targets, dynamic for MatMul-heavy graphs, else static"))
    target: str = field(default="host", metadata=cli(  # a devices preset: its INT8 format (u8/s8) and where it runs
        "device preset giving the INT8 format (u8/s8) and where it runs (see `edgeship devices`)"))
    calibration: str = field(default="photos", metadata=cli(
        "calibration images: a folder, 'photos' (the photos installed packages ship) or 'fashion-mnist'",
        metavar="DIR|photos|fashion-mnist"))
    # measured on EfficientNet-Lite0: agreement 0.93 vs MinMax 0.90 (plain QDQ)
    method: Method = field(default=Method.PERCENTILE, metadata=cli("calibration method"))
    calibration_samples: int = field(default=64, metadata=cli("calibration inputs", type=positive_int))
    eval: Union[str, None] = field(default=None, metadata=cli(  # default: the held-out half of `calibration`
        "evaluation images (class subfolders named like the labels give accuracy); default: the held-out half "
        "of --calibration", metavar="DIR"))
    eval_samples: int = field(default=500, metadata=cli("augmented evaluation crops", type=positive_int))
    gate: Gate = field(default=Gate.AUTO, metadata=cli(
        "how INT8 is judged against FP32. auto: accuracy with labelled data; else similarity when the bundle's "
        "provenance says random weights (top-1 of near-uniform outputs is noise); else agreement"))
    # labelled data: the fraction of FP32 accuracy INT8 must keep (MLPerf's 99%)
    min_accuracy: float = field(default=0.99, metadata=cli(
        "with labelled data: the fraction of FP32 accuracy to keep", type=fraction))
    # Unlabelled data: top-1 agreement with FP32. Stricter than kept accuracy (flips on ambiguous crops count
    # against INT8 whichever way they go), hence its own threshold.
    min_agreement: float = field(default=0.98, metadata=cli(
        "without labels: top-1 agreement with FP32 on held-out crops", type=fraction))
    # The similarity gate (random weights, where top-1 of near-uniform outputs is noise): the error of the
    # outputs, ||INT8 - FP32||, over how much FP32's outputs vary from input to input (qgate.output_error);
    # 0.15 is a signal-to-noise ratio of 16.5 dB. Measured (docs/benchmarks/quantize_gates.md, 300 photo
    # crops): random-weight ResNet-18 plain INT8 0.108 (agreement 0.79) passes, MobileNetV3-Large's
    # layouts 0.16-0.24 fail; pretrained Lite0 plain INT8 0.51 (agreement 0.70).
    max_output_error: float = field(default=0.15, metadata=cli(
        "similarity gate: ||INT8 - FP32|| over how much FP32's outputs vary by input", type=non_negative_float))
    # INT8 must beat FP32 by this much on the host; below it timing noise decides
    min_speedup: float = field(default=1.05, metadata=cli(
        "how much faster than FP32 a quantized model must be to be chosen", type=positive_float))
    layouts: Union[list[Layout], None] = field(default=None, metadata=cli(  # None: every registered layout
        "operator layouts to try (default: all that apply to the mode): " + ", ".join(m.value for m in Layout),
        type=layout_list, metavar="L1,L2"))
    per_channel: bool = field(default=True, metadata=cli("per-channel weight scales"))
    # 7-bit weights: avoids u8*s8 saturation on pre-VNNI x86, costs accuracy
    reduce_range: bool = field(default=False, metadata=cli(
        "7-bit weights: avoids u8*s8 saturation on x86 without VNNI, costs accuracy"))
    # the accuracy fallback keeps at most this fraction of the nodes float
    max_float_fraction: float = field(default=0.5, metadata=cli(
        "the accuracy fallback keeps at most this fraction of the nodes float", type=fraction))
    timing_runs: int = field(default=60, metadata=cli("timed runs per model", type=positive_int))
    threads: int = field(default=2, metadata=cli("intra-op threads for timing", type=positive_int))
    seed: int = field(default=0, metadata=cli("random seed for calibration sampling and crops", type=int))

    def __post_init__(self) -> None:
        for name, enum_type in (("mode", Mode), ("method", Method), ("gate", Gate)):
            value = getattr(self, name)
            if not isinstance(value, enum_type):
                try:
                    object.__setattr__(self, name, enum_type(value))
                except ValueError:
                    choices = ", ".join(m.value for m in enum_type)
                    raise InputError(f"{name}: expected one of {choices}, got {value!r}") from None
        if self.layouts is not None:
            if isinstance(self.layouts, str):
                raise InputError(f"layouts: expected a list of layout names, got {self.layouts!r}")
            try:
                object.__setattr__(self, "layouts", [Layout(v) for v in self.layouts])
            except ValueError as exc:
                raise InputError(f"layouts: {exc}; known: {', '.join(m.value for m in Layout)}") from None
        for name in ("min_accuracy", "min_agreement"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name}: must be within [0, 1], got {value!r}")
        value = self.max_output_error
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0.0:
            raise InputError(f"max_output_error: must be a number >= 0, got {value!r}")
        if self.min_speedup <= 0:
            raise InputError(f"min_speedup: must be positive, got {self.min_speedup!r}")
        for name in ("calibration_samples", "eval_samples", "timing_runs", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name}: must be a positive integer, got {value!r}")
        if not 0.0 <= self.max_float_fraction <= 1.0:
            raise InputError(f"max_float_fraction: must be within [0, 1], got {self.max_float_fraction!r}")
        if not self.calibration:
            raise InputError("calibration: give a folder, 'photos' or 'fashion-mnist'")


@dataclass(frozen=True)
class TargetFormat:
    """A target's INT8 format and where its models run."""

    activation: str  # "u8" or "s8"
    weight: str
    symmetric_activations: bool
    on_cpu: bool
    gpu: bool
    why: str


def target_format(name: str) -> TargetFormat:
    """The INT8 format and execution place of the devices preset ``name``."""
    from ..targets import preset

    p = preset(name)
    providers = tuple(p.runtime.providers)
    gpu = bool(providers) and providers[0] in GPU_PROVIDERS
    on_cpu = not providers or providers[0] == "CPUExecutionProvider"
    q = p.quant
    if q is None:
        return TargetFormat("u8", "s8", False, on_cpu, gpu, p.why or "no INT8 format for this target")
    return TargetFormat(q.activation, q.weight, q.symmetric_activations, on_cpu, gpu, q.why)
