"""This CPU's peak operations per second for a precision: cores x clock x operations per cycle.

>>> p = cpu_peak("int8", cores=2)
>>> round(p.ops_per_s / 1e9), p.how
(448, '2 cores x 3.50 GHz (cpu MHz in /proc/cpuinfo) x 64 ops/cycle (AVX2: vpmaddubsw + vpmaddwd ...)')

Operations per cycle per core come from the ISA the probe reads (the best kernel family an engine
can use for that precision), with the instruction counts behind each figure. They are a ceiling
for dense multiply-accumulate work (convolutions, GEMM); an achieved figure far below it means
memory, depthwise layers or framework overhead, not arithmetic, is the limit. One operation is a
multiply or an add (a MAC is two), as in the FLOP counts of targets/flops.py.

The per-cycle figures assume one 512-bit or two 256-bit vector pipes, as on Zen 4 and most client
and edge x86 cores; a server core with two 512-bit FMA units reaches twice the fp32 figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..monitor.sensors import read_int, read_text
from .probe import HostInfo, probe_host

# precision -> [(feature, ops/cycle/core, why)], best first; the first feature the CPU has applies.
OPS_PER_CYCLE: dict[str, list[tuple[str, int, str]]] = {
    "fp32": [
        ("avx512f", 32, "AVX-512 FMA: 16 fp32 MACs per cycle (one 512-bit pipe, or two 256-bit)"),
        ("avx2", 32, "AVX2 FMA: 2 pipes x 8 fp32 lanes = 16 MACs per cycle"),
        ("neon", 16, "NEON FMA: 2 pipes x 4 fp32 lanes = 8 MACs per cycle"),
    ],
    "bf16": [
        ("amx_bf16", 2048, "AMX: 1024 bf16 MACs per cycle (TMUL)"),
        ("avx512_bf16", 64, "AVX512_BF16 vdpbf16ps: 32 bf16 MACs per cycle"),
        ("avx512f", 32, "no bf16 instructions: bf16 runs at the fp32 rate (AVX-512 FMA)"),
        ("avx2", 32, "no bf16 instructions: bf16 runs at the fp32 rate (AVX2 FMA)"),
        ("neon", 16, "no bf16 instructions read: the fp32 rate"),
    ],
    "fp16": [
        ("neon", 32, "NEON fp16 FMA: 2 pipes x 8 fp16 lanes (ARMv8.2 FP16)"),
        ("avx2", 32, "no fp16 arithmetic on this x86 CPU: the fp32 rate"),
    ],
    "int8": [
        ("amx", 4096, "AMX: 2048 int8 MACs per cycle (TMUL)"),
        ("avx512_vnni", 128, "AVX-512 VNNI vpdpbusd: 64 u8 x s8 MACs per cycle"),
        ("avx_vnni", 128, "AVX-VNNI vpdpbusd: 2 pipes x 32 u8 x s8 MACs per cycle"),
        ("avx2", 64, "AVX2 without VNNI: vpmaddubsw + vpmaddwd + vpaddd, about 32 u8 x s8 MACs per cycle"),
        ("dotprod", 64, "ARM sdot/udot: 2 pipes x 16 int8 MACs per cycle"),
        ("neon", 32, "NEON without dot product: smull + sadalp, about 16 int8 MACs per cycle"),
    ],
}
OPS_PER_CYCLE["uint8"] = OPS_PER_CYCLE["int8"]


@dataclass(frozen=True)
class Peak:
    precision: str
    ops_per_s: float
    cores: int
    ghz: float
    ops_per_cycle: int
    how: str


def clock_ghz(root: Union[str, Path] = "/") -> tuple[float | None, str]:
    """The CPU's clock in GHz and where it was read: cpufreq's maximum, else ``cpu MHz`` in /proc/cpuinfo."""
    khz = read_int(root, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz:
        return khz / 1e6, "cpufreq cpuinfo_max_freq"
    for line in (read_text(root, "proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz":
            try:
                return float(value) / 1e3, "cpu MHz in /proc/cpuinfo"
            except ValueError:
                continue
    return None, "no clock readable"


def cpu_peak(precision: str, cores: int, root: Union[str, Path] = "/", info: HostInfo | None = None) -> Peak | None:
    """The peak for ``precision`` on ``cores`` cores; None when the clock or the ISA cannot be read."""
    info = info or probe_host(root)
    ghz, where = clock_ghz(root)
    if ghz is None:
        return None
    for feature, per_cycle, why in OPS_PER_CYCLE.get(precision, []):
        if feature in info.features:
            ops = cores * ghz * 1e9 * per_cycle
            return Peak(precision, ops, cores, ghz, per_cycle,
                        f"{cores} cores x {ghz:.2f} GHz ({where}) x {per_cycle} ops/cycle ({why})")
    return None
