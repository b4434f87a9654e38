"""What this machine is: CPU, ISA features that matter for inference, memory, runtimes, sensors.

>>> from edgeship.targets import probe_host
>>> info = probe_host()                 # or probe_host("tests/fixtures/sysfs/rpi5") in tests
>>> info.cpu_model, info.physical_cores, info.features
('Cortex-A76', 4, ('neon', 'dotprod'))

Everything is read from /proc and /sys under ``root``, so tests probe a fake tree. Optional
runtimes are looked up with ``importlib.util.find_spec``: found, never imported.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..monitor.energy import power_sensors
from ..monitor.sensors import PathLike, glob, read_int, read_text, thermal_zones
from .catalog import CATALOG, Device, QuantTarget

# Canonical feature -> the /proc/cpuinfo flags that mean it (x86 "flags", ARM "Features").
FEATURES: dict[str, tuple[str, ...]] = {
    "neon": ("asimd", "neon"),
    "dotprod": ("asimddp",),
    "i8mm": ("i8mm",),
    "sve": ("sve",),
    "fma": ("fma",),
    "avx2": ("avx2",),
    "avx512f": ("avx512f",),
    "avx512_vnni": ("avx512_vnni",),
    "avx_vnni": ("avx_vnni",),
    "amx": ("amx_int8",),
    "avx512_bf16": ("avx512_bf16",),
    "amx_bf16": ("amx_bf16",),
}

# First rule whose arch matches and whose feature is present (None: always) picks the INT8 kernel family.
QUANT_RULES: tuple[tuple[str, str | None, QuantTarget], ...] = (
    ("x86_64", "avx512_vnni", QuantTarget.X86_VNNI),
    ("x86_64", "avx_vnni", QuantTarget.X86_VNNI),
    ("x86_64", None, QuantTarget.X86),
    ("aarch64", "dotprod", QuantTarget.ARM64_DOTPROD),
    ("aarch64", None, QuantTarget.ARM64),
)

# ARM "CPU part" numbers (implementer 0x41) for the cores found on edge boards.
ARM_PARTS = {
    0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57",
    0xD08: "Cortex-A72", 0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77", 0xD40: "Neoverse-V1", 0xD41: "Cortex-A78",
    0xD42: "Cortex-A78AE", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510", 0xD47: "Cortex-A710",
    0xD49: "Neoverse-N2", 0xD4B: "Cortex-A78C",
}

# Board model string (device tree / cpuinfo "Model") -> catalog id. Substring match, first wins.
BOARDS: tuple[tuple[str, str], ...] = (
    ("Raspberry Pi 5", "rpi5"),
    ("Raspberry Pi 4", "rpi4"),
    ("Jetson Nano", "jetson-nano"),
    ("Orin NX", "jetson-orin-nx"),
    ("AGX Orin", "jetson-agx-orin"),
    ("Phanbell", "coral-devboard"),  # the Coral Dev Board's device-tree name
    ("RB5", "rb5"),
)

# USB vendor:product ids of the accelerators in the catalog, and the /dev nodes of PCIe ones.
USB_ACCELERATORS = {("1a6e", "089a"): "coral-usb", ("18d1", "9302"): "coral-usb", ("03e7", "2485"): "ncs2"}
DEV_ACCELERATORS = {"dev/hailo0": "hailo", "dev/apex_0": "edgetpu-pcie"}

# Local accelerated ONNX Runtime providers, preferred first (Azure's is a remote endpoint, not local).
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider",
                       "QNNExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")
BINDINGS = {"litert": "ai_edge_litert", "tensorrt": "tensorrt", "llama_cpp": "llama_cpp"}


@dataclass(frozen=True)
class HostInfo:
    cpu_model: str
    arch: str
    physical_cores: int
    logical_cores: int
    big_cores: int
    usable_cpus: int | None  # CPUs this process may run on (cgroup/affinity), probed for root "/" only
    features: tuple[str, ...]
    ram_total_bytes: int | None
    ram_available_bytes: int | None
    board: str | None
    accelerators: tuple[str, ...]
    onnxruntime_version: str | None
    providers: tuple[str, ...]
    bindings: dict[str, bool] = field(default_factory=dict)
    thermal_zones: tuple[str, ...] = ()
    power_sensors: tuple[str, ...] = ()

    @property
    def quant_target(self) -> QuantTarget | None:
        for arch, feature, target in QUANT_RULES:
            if arch == self.arch and (feature is None or feature in self.features):
                return target
        return None

    def preferred_providers(self) -> tuple[str, ...]:
        have = set(self.providers)
        return tuple(p for p in PROVIDER_PREFERENCE if p in have) or ("CPUExecutionProvider",)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["quant_target"] = self.quant_target.value if self.quant_target else None
        data["source"] = "probe of this host"
        return data


def _cpuinfo(root: PathLike) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per processor block (plus trailing board-level blocks on ARM)."""
    blocks: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    for line in (read_text(root, "proc/cpuinfo") or "").splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        key, _, value = line.partition(":")
        cur[key.strip()] = value.strip()
    if cur:
        blocks.append(cur)
    return blocks


def _arm_name(blocks: list[dict[str, str]]) -> str | None:
    names = []
    for b in blocks:
        part = b.get("CPU part")
        if part:
            try:
                names.append(ARM_PARTS.get(int(part, 16), f"ARM part {part}"))
            except ValueError:
                continue
    return " + ".join(dict.fromkeys(names)) or None


def _arch(blocks: list[dict[str, str]], root: PathLike) -> str:
    if any("flags" in b for b in blocks):
        return "x86_64"
    if any("asimd" in b.get("Features", "").split() or "CPU part" in b for b in blocks):
        return "aarch64"
    if Path(root) == Path("/"):
        machine = platform.machine().lower()
        return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return "unknown"


def _cores(root: PathLike, procs: list[dict[str, str]]) -> tuple[int, int, int]:
    """(physical, logical, big) cores; big = cores at more than half the top cpu_capacity."""
    cpus = glob(root, "sys/devices/system/cpu/cpu[0-9]*")
    logical = len(procs) or len(cpus) or 1
    pairs: set[tuple[object, object]] = set()  # (package, core): ints from sysfs, strings from cpuinfo
    for cpu in cpus:
        rel = cpu.relative_to(root)
        core = read_int(root, f"{rel}/topology/core_id")
        if core is not None:
            pairs.add((read_int(root, f"{rel}/topology/physical_package_id"), core))
    if not pairs:
        pairs = {(b.get("physical id"), b["core id"]) for b in procs if "core id" in b}
    physical = len(pairs) or logical
    capacity = [c for c in (read_int(root, f"{cpu.relative_to(root)}/cpu_capacity") for cpu in cpus) if c]
    # big.LITTLE (RB5, phones): inference threads belong on the big cores only.
    big = sum(1 for c in capacity if c > max(capacity) / 2) if capacity else physical
    return physical, logical, min(big, physical)


def _meminfo(root: PathLike) -> dict[str, int]:
    out = {}
    for line in (read_text(root, "proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024  # the kernel writes kB
    return out


def _board(root: PathLike, blocks: list[dict[str, str]]) -> str | None:
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = read_text(root, rel)
        if text:
            return text
    return next((b["Model"] for b in blocks if "Model" in b), None)


def _accelerators(root: PathLike) -> tuple[str, ...]:
    found = [name for rel, name in DEV_ACCELERATORS.items() if (Path(root) / rel).exists()]
    for dev in glob(root, "sys/bus/usb/devices/*"):
        ids = (read_text(dev, "idVendor"), read_text(dev, "idProduct"))
        if ids in USB_ACCELERATORS:
            found.append(USB_ACCELERATORS[ids])
    return tuple(dict.fromkeys(found))


def _onnxruntime() -> tuple[str | None, tuple[str, ...]]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None, ()
    return ort.__version__, tuple(ort.get_available_providers())


def probe_host(root: PathLike = "/") -> HostInfo:
    """Probe the machine under ``root`` (``/`` for this one). Never raises for a missing file."""
    blocks = _cpuinfo(root)
    procs = [b for b in blocks if "processor" in b]
    first = procs[0] if procs else {}
    flags = set((first.get("flags") or first.get("Features") or "").split())
    features = tuple(name for name, spellings in FEATURES.items() if flags & set(spellings))
    physical, logical, big = _cores(root, procs)
    mem = _meminfo(root)
    live = Path(root) == Path("/")
    version, providers = _onnxruntime()
    return HostInfo(
        cpu_model=first.get("model name") or _arm_name(procs) or first.get("Processor") or "unknown CPU",
        arch=_arch(blocks, root),
        physical_cores=physical,
        logical_cores=logical,
        big_cores=big,
        usable_cpus=len(os.sched_getaffinity(0)) if live and hasattr(os, "sched_getaffinity") else None,
        features=features,
        ram_total_bytes=mem.get("MemTotal"),
        ram_available_bytes=mem.get("MemAvailable"),
        board=_board(root, blocks),
        accelerators=_accelerators(root),
        onnxruntime_version=version,
        providers=providers,
        bindings={name: importlib.util.find_spec(mod) is not None for name, mod in BINDINGS.items()},
        thermal_zones=tuple(f"{z.name} {z.type}" + (f" {z.celsius:.1f} C" if z.celsius is not None else "")
                            for z in thermal_zones(root)),
        power_sensors=tuple(power_sensors(root)),
    )


def host_device(info: HostInfo) -> Device | None:
    """The catalog device this host is, recognised from its board name (and a Hailo on a Pi 5)."""
    board = info.board or ""
    dev_id = next((d for needle, d in BOARDS if needle in board), None)
    if dev_id == "rpi5" and "hailo" in info.accelerators:
        dev_id = "rpi5-hailo"
    return CATALOG.get(dev_id) if dev_id else None
