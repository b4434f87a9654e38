"""The hardware catalog: the article's two tables as data (presets.py turns them into settings).

>>> from edgeship.targets import device
>>> device("rpi5").cpu_gflops, device("rpi5").source        # a catalog figure, not a measurement
(13.0, 'article (Calò 2026)')

Every figure here comes from the article, Federico Calò's "Deep Learning on Edge Devices: From
Cloud to Edge" (full reference and what edgeship takes from it: docs/article.md): its overview
table, its full-specification table and its benchmark table, unless the field is named in
``Device.vendor_fields``, which marks the few figures the article leaves out (core counts) and
that were taken from the vendors' datasheets. Printers label both kinds; none is a measurement.
This module imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal, Union

from ..errors import InputError

# Printed as the source of every catalog figure; docs/article.md gives the full reference.
CATALOG_SOURCE = "article (Calò 2026)"
VENDOR_SOURCE = "vendor datasheet"


@dataclass(frozen=True)
class Span:
    """A catalog range such as "5-15W" or "$65-90"; ``low == high`` for a single figure."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise InputError(f"Span: low {self.low} is above high {self.high}")

    def __str__(self) -> str:
        fmt = lambda v: f"{v:g}"  # noqa: E731 - 4.0 -> "4", 1.43 -> "1.43"
        return fmt(self.low) if self.low == self.high else f"{fmt(self.low)}-{fmt(self.high)}"


@dataclass(frozen=True)
class Benchmark:
    """A latency the article reports for a model on a device (batch 1). A catalog figure."""

    model: str
    precision: str
    latency_ms: float
    where: str  # where in the article, so a reader can check it


@dataclass(frozen=True)
class LlmBenchmark:
    """llama.cpp figures the article reports (Raspberry Pi 5). Catalog figures."""

    model: str
    quant: str
    tokens_per_s: float
    ram_mb: int
    ttft_ms: int


class QuantTarget(str, enum.Enum):
    """What runs the INT8 kernels on a device; keys the QUANT_FORMATS registry."""

    X86 = "x86"  # AVX2 / AVX-512 without VNNI
    X86_VNNI = "x86-vnni"  # AVX-512 VNNI or AVX-VNNI
    ARM64_DOTPROD = "arm64-dotprod"  # Cortex-A76/A77/A78: sdot/udot
    ARM64 = "arm64"  # Cortex-A53/A57/A72: no dot-product instructions
    TENSORRT = "tensorrt"
    EDGETPU = "edgetpu"
    QNN_HTP = "qnn-htp"


@dataclass(frozen=True)
class QuantFormat:
    """The INT8 format that is fast on a target: QDQ, per-channel weights, activation/weight types."""

    activation: Literal["u8", "s8"]
    weight: Literal["s8", "u8"]
    per_channel: bool = True
    symmetric_activations: bool = False
    why: str = ""


QUANT_FORMATS: dict[QuantTarget, QuantFormat] = {
    QuantTarget.X86: QuantFormat(
        "u8", "s8",
        why="x86 without VNNI multiplies u8 by s8 in one instruction (VPMADDUBSW); s8 activations "
            "leave part of the graph unfused (measured on 2 AVX2 cores: s8/s8 0.25-1.01x FP32, u8/s8 "
            "0.71-2.03x; docs/benchmarks/before-edgeship.md).",
    ),
    QuantTarget.X86_VNNI: QuantFormat(
        "u8", "s8",
        why="VNNI's VPDPBUSD multiplies u8 activations by s8 weights natively; s8 activations need a shift first.",
    ),
    QuantTarget.ARM64_DOTPROD: QuantFormat(
        "s8", "s8",
        why="Cortex-A76/A77/A78 have the dot-product instructions (asimddp); ORT's s8/s8 kernels use sdot.",
    ),
    QuantTarget.ARM64: QuantFormat(
        "u8", "s8",
        why="Lower-end ARM64 (A53/A57/A72) has no dot-product; u8/s8 is faster than u8/u8 there and "
            "no worse elsewhere (optimum's AutoQuantizationConfig.arm64).",
    ),
    QuantTarget.TENSORRT: QuantFormat(
        "s8", "s8", symmetric_activations=True,
        why="TensorRT's explicit quantization takes only symmetric signed INT8 Q/DQ.",
    ),
    QuantTarget.EDGETPU: QuantFormat(
        "s8", "s8",
        why="The Edge TPU runs full-integer TFLite models (int8 from the TFLite converter, then "
            "edgetpu_compiler); ONNX Runtime runs only on the host CPU.",
    ),
    QuantTarget.QNN_HTP: QuantFormat(
        "u8", "s8",
        why="The Hexagon NPU (QNN execution provider) takes u8 activations; per-channel weights must be "
            "signed and symmetric.",
    ),
}


@dataclass(frozen=True)
class Device:
    """One catalog entry. ``None`` means the article gives no figure; nothing is filled in by guess."""

    id: str
    name: str
    cpu: Union[str, None]
    cores: Union[int, None]
    big_cores: Union[int, None]  # the cores inference threads should use
    clock_ghz: Union[float, None]
    ram_gb: Union[Span, None]
    ram_note: str
    accelerator: Union[str, None]
    cpu_gflops: Union[float, None]  # whole-CPU figure, the article's "AI Performance"
    accel_gflops: Union[float, None]  # GPU figure given in GFLOP/s (Jetson Nano)
    accel_tops: Union[Span, None]  # INT8 TOPS of the accelerator
    power_w: Union[Span, None]
    price_usd: Union[Span, None]
    use_case: str
    quant_target: Union[QuantTarget, None]
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    benchmarks: tuple[Benchmark, ...] = ()
    llm: tuple[LlmBenchmark, ...] = ()
    vendor_fields: tuple[str, ...] = ()  # fields not from the article, taken from vendor datasheets
    notes: tuple[str, ...] = ()
    source: str = CATALOG_SOURCE

    def figure_source(self, field_name: str) -> str:
        """Where a field's figure comes from: ``CATALOG_SOURCE`` or ``VENDOR_SOURCE``."""
        return VENDOR_SOURCE if field_name in self.vendor_fields else self.source


def _bench(rows: dict[str, tuple[str, float]], where: str) -> tuple[Benchmark, ...]:
    return tuple(Benchmark(model, precision, ms, where) for model, (precision, ms) in rows.items())


# Where in the article, named by its headings so that a reader of the web page can find them.
_TABLE = "article, table 'Real Benchmarks: Vision Models on Edge (2025)'"
_PI_CODE = "article, comments closing the code of 'Raspberry Pi 5: Setup and Optimized Inference', 4 threads"

_RPI5_BENCH = _bench({
    "MobileNetV3-S": ("INT8", 45), "EfficientNet-B0": ("INT8", 68), "ResNet-18": ("INT8", 95),
    "YOLOv8-nano": ("INT8", 120), "ViT-Ti/16": ("FP32", 380), "DeiT-Tiny": ("INT8", 210),
}, _TABLE) + _bench({
    "MobileNetV3-S": ("FP32", 95), "ResNet-18": ("FP32", 180),
}, _PI_CODE)
_NANO_BENCH = _bench({
    "MobileNetV3-S": ("INT8", 8), "EfficientNet-B0": ("INT8", 12), "ResNet-18": ("INT8", 15),
    "YOLOv8-nano": ("INT8", 18), "ViT-Ti/16": ("FP32", 55), "DeiT-Tiny": ("INT8", 32),
}, _TABLE)
_ORIN_NX_BENCH = _bench({
    "MobileNetV3-S": ("INT8", 1.5), "EfficientNet-B0": ("INT8", 2.1), "ResNet-18": ("INT8", 2.8),
    "YOLOv8-nano": ("INT8", 3.2), "ViT-Ti/16": ("FP32", 8.1), "DeiT-Tiny": ("INT8", 5.1),
}, _TABLE)
_RPI5_LLM = tuple(LlmBenchmark(m, "Q4_K_M", tps, ram, ttft) for m, tps, ram, ttft in [
    ("Qwen2.5-1.5B", 4.2, 1800, 1200), ("Llama-3.2-1B", 5.1, 1400, 950), ("Phi-3.5-mini", 2.8, 2400, 1800),
    ("Qwen2.5-3B", 2.1, 3200, 2500), ("Gemma2-2B", 3.2, 2000, 1600),
])

_JETSON_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_RPI5_CPU: dict[str, Any] = dict(cpu="Cortex-A76", cores=4, big_cores=4, clock_ghz=2.4, cpu_gflops=13.0,
                 quant_target=QuantTarget.ARM64_DOTPROD, benchmarks=_RPI5_BENCH, llm=_RPI5_LLM)

CATALOG: dict[str, Device] = {d.id: d for d in [
    Device(id="rpi5", name="Raspberry Pi 5", ram_gb=Span(4, 8), ram_note="LPDDR4X", accelerator=None,
           accel_gflops=None, accel_tops=None, power_w=Span(5, 15), price_usd=Span(65, 90),
           use_case="Small LLMs, lightweight vision, IoT AI; prototyping, CPU inference", **_RPI5_CPU),
    Device(id="rpi5-hailo", name="Raspberry Pi 5 + AI HAT+", ram_gb=Span(8, 8), ram_note="LPDDR4X",
           accelerator="Hailo-8L (AI HAT+)", accel_gflops=None, accel_tops=Span(26, 26),
           power_w=Span(8, 18), price_usd=Span(120, 120), use_case="Real-time vision, 30+ FPS",
           notes=("The article pairs 26 TOPS with the Hailo-8L; Raspberry Pi sells the 26 TOPS AI HAT+ "
                  "with a Hailo-8 and the 13 TOPS one with a Hailo-8L.",
                  "The Hailo accelerator runs HEF files from Hailo's own compiler, not ONNX Runtime; "
                  "the runtime preset covers the CPU path."),
           **{**_RPI5_CPU, "benchmarks": (), "llm": ()}),
    Device(id="rpi4", name="Raspberry Pi 4", cpu="Cortex-A72", cores=4, big_cores=4, clock_ghz=1.8,
           ram_gb=Span(2, 8), ram_note="", accelerator=None, cpu_gflops=8.0, accel_gflops=None,
           accel_tops=None, power_w=None, price_usd=Span(35, 80),
           use_case="Basic inference, classification", quant_target=QuantTarget.ARM64),
    Device(id="jetson-nano", name="NVIDIA Jetson Nano", cpu="Cortex-A57", cores=4, big_cores=4,
           clock_ghz=1.43, ram_gb=Span(4, 4), ram_note="shared CPU/GPU",
           accelerator="Maxwell GPU, 128 CUDA cores", cpu_gflops=None, accel_gflops=472.0, accel_tops=None,
           power_w=Span(5, 10), price_usd=Span(99, 100),
           use_case="Vision, real-time detection (legacy); entry GPU inference",
           quant_target=None, providers=_JETSON_PROVIDERS, benchmarks=_NANO_BENCH,
           vendor_fields=("cores", "big_cores"),
           notes=("Maxwell (compute capability 5.3) has no INT8 path in TensorRT: build FP16 engines; "
                  "on the A57 CPU alone use u8/s8.",)),
    Device(id="jetson-orin-nx", name="NVIDIA Jetson Orin NX", cpu="Cortex-A78AE", cores=8, big_cores=8,
           clock_ghz=2.0, ram_gb=Span(8, 16), ram_note="shared CPU/GPU",
           accelerator="Ampere GPU, 1024 CUDA + 32 Tensor cores", cpu_gflops=None, accel_gflops=None,
           accel_tops=Span(70, 100), power_w=Span(10, 25), price_usd=Span(499, 750),
           use_case="7B LLMs, advanced vision, robotics; complex CV, small LLMs",
           quant_target=QuantTarget.TENSORRT, providers=_JETSON_PROVIDERS, benchmarks=_ORIN_NX_BENCH,
           vendor_fields=("cores", "big_cores"), notes=("8 cores on the 16 GB module, 6 on the 8 GB one.",)),
    Device(id="jetson-agx-orin", name="NVIDIA Jetson AGX Orin", cpu="Cortex-A78AE", cores=12, big_cores=12,
           clock_ghz=2.2, ram_gb=Span(32, 64), ram_note="shared CPU/GPU",
           accelerator="Ampere GPU, 2048 CUDA + 64 Tensor cores", cpu_gflops=None, accel_gflops=None,
           accel_tops=Span(275, 275), power_w=Span(15, 60), price_usd=Span(999, 2000),
           use_case="13B LLMs, multi-model inference; 7B LLMs",
           quant_target=QuantTarget.TENSORRT, providers=_JETSON_PROVIDERS),
    Device(id="coral-usb", name="Google Coral USB", cpu=None, cores=None, big_cores=None, clock_ghz=None,
           ram_gb=None, ram_note="N/A (host RAM)", accelerator="Edge TPU", cpu_gflops=None,
           accel_gflops=None, accel_tops=Span(4, 4), power_w=None, price_usd=Span(65, 65),
           use_case="Optimized INT8 inference (small models)", quant_target=QuantTarget.EDGETPU,
           notes=("A USB accelerator: the model runs through LiteRT with the Edge TPU delegate on the host.",)),
    Device(id="coral-devboard", name="Google Coral Dev Board", cpu="Cortex-A53", cores=4, big_cores=4,
           clock_ghz=1.5, ram_gb=Span(1, 1), ram_note="", accelerator="Edge TPU", cpu_gflops=None,
           accel_gflops=None, accel_tops=Span(4, 4), power_w=Span(2, 4), price_usd=Span(150, 150),
           use_case="TFLite INT8, ultra-low power", quant_target=QuantTarget.EDGETPU,
           vendor_fields=("cores", "big_cores")),
    Device(id="ncs2", name="Intel Neural Compute Stick 2", cpu=None, cores=None, big_cores=None,
           clock_ghz=None, ram_gb=Span(4, 4), ram_note="LPDDR4 on the stick", accelerator="Myriad X VPU",
           cpu_gflops=None, accel_gflops=None, accel_tops=Span(4, 4), power_w=None, price_usd=Span(90, 90),
           use_case="Vision, object detection, OpenVINO", quant_target=None,
           providers=("OpenVINOExecutionProvider", "CPUExecutionProvider"),
           notes=("OpenVINO's MYRIAD plugin runs FP16 only, and OpenVINO dropped it after 2022.3.",)),
    Device(id="rb5", name="Qualcomm RB5 / AI Kit", cpu="Kryo", cores=8, big_cores=4, clock_ghz=None,
           ram_gb=Span(8, 8), ram_note="", accelerator="Adreno GPU + Hexagon DSP", cpu_gflops=None,
           accel_gflops=None, accel_tops=Span(15, 15), power_w=None, price_usd=Span(300, 300),
           use_case="Mobile AI, optimized NPU inference", quant_target=QuantTarget.QNN_HTP,
           providers=("QNNExecutionProvider", "CPUExecutionProvider"), vendor_fields=("cores", "big_cores"),
           notes=("QRB5165: 1 + 3 Kryo 585 Gold (Cortex-A77 class) and 4 Kryo 585 Silver cores.",)),
    Device(id="x86", name="Generic x86-64 mini-PC", cpu="x86-64", cores=None, big_cores=None,
           clock_ghz=None, ram_gb=None, ram_note="", accelerator=None, cpu_gflops=None, accel_gflops=None,
           accel_tops=None, power_w=None, price_usd=None, use_case="Any x86-64 box; threads left to ONNX Runtime",
           quant_target=QuantTarget.X86, source="edgeship preset"),
]}


def device_ids() -> list[str]:
    """The catalog's ids in table order."""
    return list(CATALOG)


def device(device_id: str) -> Device:
    """The catalog entry for ``device_id``; InputError listing the valid ids otherwise.

    >>> device("jetson-agx-orin").accel_tops.high
    275
    """
    try:
        return CATALOG[device_id]
    except KeyError:
        raise InputError(f"unknown device {device_id!r}; valid devices: {', '.join(device_ids())}") from None
