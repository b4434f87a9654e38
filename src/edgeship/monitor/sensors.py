"""Temperature, throttling and system gauges, read from /sys, /proc and vcgencmd.

>>> from edgeship.monitor.sensors import cpu_temperature, throttle_status
>>> cpu_temperature()                       # None where the machine exposes no CPU sensor
TempReading(celsius=48.3, source='thermal_zone0 (cpu-thermal)')
>>> throttle_status().throttled_now         # None when nothing says either way
False

Every reader takes ``root`` (default ``/``) so tests point it at a fake tree. A missing or
unreadable file is "no sample" (``None``), never an exception and never a made-up number.
Energy and power live in :mod:`edgeship.monitor.energy`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

PathLike = Union[str, Path]
# Runs a command, returns its stdout or None (missing tool, error, timeout). Injected in tests.
Runner = Callable[[Sequence[str]], Union[str, None]]

# Thermal-zone types that measure the CPU die: Raspberry Pi, Jetson, Intel, generic SoCs.
CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "CPU-therm", "x86_pkg_temp", "soc_thermal",
                  "soc-thermal", "cpu", "k10temp", "coretemp", "acpitz")
# hwmon drivers whose temp*_input is the CPU: AMD, Intel, and the Pi's cpu_thermal hwmon alias.
CPU_HWMON_NAMES = ("k10temp", "coretemp", "zenpower", "cpu_thermal")


def read_text(root: PathLike, rel: str) -> str | None:
    """The stripped content of ``root/rel``, or None when it is missing or unreadable."""
    try:
        return (Path(root) / rel.lstrip("/")).read_text(encoding="utf-8", errors="replace").strip("\x00 \n\t")
    except (OSError, ValueError):
        return None


def read_int(root: PathLike, rel: str) -> int | None:
    text = read_text(root, rel)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def glob(root: PathLike, pattern: str) -> list[Path]:
    """Sorted matches of ``pattern`` under ``root``, numerically (hwmon10 after hwmon2)."""
    key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]  # noqa: E731
    try:
        return sorted(Path(root).glob(pattern.lstrip("/")), key=key)
    except OSError:
        return []


def default_runner(argv: Sequence[str]) -> str | None:
    """Run a short command (vcgencmd); None when it is missing, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=2.0, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _runner_for(root: PathLike, runner: Runner | None) -> Runner | None:
    # A fake root must never reach the real machine's tools: only "/" gets the default runner.
    if runner is not None:
        return runner
    return default_runner if Path(root) == Path("/") else None


# --- temperature -------------------------------------------------------------------------


@dataclass(frozen=True)
class TempReading:
    celsius: float
    source: str


@dataclass(frozen=True)
class ThermalZone:
    name: str  # thermal_zone0
    type: str  # cpu-thermal
    celsius: float | None


def thermal_zones(root: PathLike = "/") -> list[ThermalZone]:
    """Every /sys/class/thermal zone with its type and temperature (None when unreadable)."""
    zones = []
    for zone in glob(root, "sys/class/thermal/thermal_zone*"):
        rel = zone.relative_to(root)
        millis = read_int(root, f"{rel}/temp")
        zones.append(ThermalZone(zone.name, read_text(root, f"{rel}/type") or "?",
                                 millis / 1000.0 if millis is not None else None))
    return zones


@dataclass(frozen=True)
class TripPoint:
    """A kernel trip point of a thermal zone: where the kernel throttles (passive), powers a fan
    (active), warns (hot) or shuts down (critical)."""

    zone: str
    type: str  # passive, active, hot, critical
    celsius: float
    hysteresis_c: float | None = None


def trip_points(root: PathLike = "/", zone_types: Sequence[str] = CPU_ZONE_TYPES) -> list[TripPoint]:
    """Trip points of the CPU thermal zones (Jetson ``CPU-therm``, Pi ``cpu-thermal``), coolest first."""
    out = []
    for zone in glob(root, "sys/class/thermal/thermal_zone*"):
        rel = zone.relative_to(root)
        if read_text(root, f"{rel}/type") not in zone_types:
            continue
        for temp in glob(root, f"{rel}/trip_point_*_temp"):
            base = str(temp.relative_to(root))[: -len("_temp")]
            millis, kind = read_int(root, f"{base}_temp"), read_text(root, f"{base}_type")
            if millis is None or kind is None or millis <= 0:
                continue
            hyst = read_int(root, f"{base}_hyst")
            out.append(TripPoint(zone.name, kind, millis / 1000.0, hyst / 1000.0 if hyst is not None else None))
    return sorted(out, key=lambda t: t.celsius)


def _hwmon_cpu_temperature(root: PathLike) -> TempReading | None:
    for hw in glob(root, "sys/class/hwmon/hwmon*"):
        rel = hw.relative_to(root)
        name = read_text(root, f"{rel}/name")
        if name not in CPU_HWMON_NAMES:
            continue
        inputs = glob(root, f"{rel}/temp*_input")
        # Prefer the package / Tctl sensor: it is the one the firmware throttles on.
        labelled = {read_text(root, str(p.relative_to(root)).replace("_input", "_label")): p for p in inputs}
        chosen = next((labelled[k] for k in ("Package id 0", "Tctl", "Tdie") if k in labelled), None)
        for path in [chosen, *inputs] if chosen else inputs:
            millis = read_int(root, str(path.relative_to(root)))
            if millis is not None:
                return TempReading(millis / 1000.0, f"hwmon {name} {path.name}")
    return None


_VCGEN_TEMP = re.compile(r"temp=([-\d.]+)")


def vcgencmd_temperature(runner: Runner | None) -> TempReading | None:
    """``vcgencmd measure_temp`` (Raspberry Pi firmware): ``temp=48.3'C``."""
    out = runner(["vcgencmd", "measure_temp"]) if runner else None
    match = _VCGEN_TEMP.search(out or "")
    return TempReading(float(match.group(1)), "vcgencmd measure_temp") if match else None


def cpu_temperature(root: PathLike = "/", runner: Runner | None = None) -> TempReading | None:
    """The CPU temperature: a CPU thermal zone, else a CPU hwmon sensor, else vcgencmd; or None."""
    by_type = {z.type: z for z in thermal_zones(root) if z.celsius is not None}
    for kind in CPU_ZONE_TYPES:
        zone = by_type.get(kind)
        if zone is not None and zone.celsius is not None:
            return TempReading(zone.celsius, f"{zone.name} ({zone.type})")
    return _hwmon_cpu_temperature(root) or vcgencmd_temperature(_runner_for(root, runner))


# --- throttling --------------------------------------------------------------------------

# Bits of ``vcgencmd get_throttled`` (Raspberry Pi firmware documentation).
_PI_BITS = {
    "under_voltage": 0, "freq_capped": 1, "throttled": 2, "soft_temp_limit": 3,
}
_PI_SINCE_BOOT_SHIFT = 16


@dataclass(frozen=True)
class PiThrottle:
    """``vcgencmd get_throttled`` decoded; ``*_now`` is the present state, ``*_since_boot`` sticky."""

    raw: int
    under_voltage_now: bool
    freq_capped_now: bool
    throttled_now: bool
    soft_temp_limit_now: bool
    under_voltage_since_boot: bool
    freq_capped_since_boot: bool
    throttled_since_boot: bool
    soft_temp_limit_since_boot: bool

    @property
    def any_now(self) -> bool:
        return bool(self.raw & 0xF)


def decode_throttled(value: int) -> PiThrottle:
    """Decode the ``throttled=0x50005`` bit field.

    >>> decode_throttled(0x50005).under_voltage_now, decode_throttled(0x50005).freq_capped_since_boot
    (True, False)
    """
    flags = {}
    for name, bit in _PI_BITS.items():
        flags[f"{name}_now"] = bool(value >> bit & 1)
        flags[f"{name}_since_boot"] = bool(value >> (bit + _PI_SINCE_BOOT_SHIFT) & 1)
    return PiThrottle(raw=value, **flags)


# The Raspberry Pi firmware driver shows the same bit field as vcgencmd, in hex, without a
# subprocess: /sys/devices/platform/soc/soc:firmware/get_throttled on a Pi 4; the Pi 5's device
# tree names the node differently, hence the patterns.
GET_THROTTLED_GLOBS = ("sys/devices/platform/soc/soc:firmware/get_throttled",
                       "sys/devices/platform/*firmware/get_throttled",
                       "sys/devices/platform/*/*firmware/get_throttled")


def sysfs_throttled(root: PathLike) -> PiThrottle | None:
    """The firmware's ``get_throttled`` attribute (hex, e.g. ``50005``), or None when absent or garbled."""
    for pattern in GET_THROTTLED_GLOBS:
        for path in glob(root, pattern):
            text = read_text(root, str(path.relative_to(root)))
            try:
                return decode_throttled(int(text, 16)) if text else None
            except ValueError:
                return None
    return None


def pi_throttle(runner: Runner | None, root: PathLike | None = None) -> PiThrottle | None:
    """The firmware's throttle bits: sysfs ``get_throttled`` under ``root`` when there, else vcgencmd."""
    if root is not None:
        found = sysfs_throttled(root)
        if found is not None:
            return found
    out = runner(["vcgencmd", "get_throttled"]) if runner else None
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", out or "")
    return decode_throttled(int(match.group(1), 0)) if match else None


@dataclass(frozen=True)
class Frequency:
    """A clock now against its maximum (kHz for CPUs, Hz for devfreq devices such as a Jetson GPU)."""

    name: str
    current: int
    maximum: int

    @property
    def ratio(self) -> float:
        return self.current / self.maximum if self.maximum else 1.0


def cpu_frequencies(root: PathLike = "/") -> list[Frequency]:
    """cpufreq ``scaling_cur_freq`` vs ``cpuinfo_max_freq`` per CPU (those that expose both)."""
    out = []
    for cpu in glob(root, "sys/devices/system/cpu/cpu[0-9]*"):
        rel = cpu.relative_to(root)
        cur = read_int(root, f"{rel}/cpufreq/scaling_cur_freq")
        top = read_int(root, f"{rel}/cpufreq/cpuinfo_max_freq")
        if cur is not None and top:
            out.append(Frequency(cpu.name, cur, top))
    return out


def devfreq_frequencies(root: PathLike = "/") -> list[Frequency]:
    """devfreq devices (a Jetson's GPU: ``17000000.ga10b``, ``57000000.gpu``) now vs max."""
    out = []
    for dev in glob(root, "sys/class/devfreq/*"):
        rel = dev.relative_to(root)
        cur, top = read_int(root, f"{rel}/cur_freq"), read_int(root, f"{rel}/max_freq")
        if cur is not None and top:
            out.append(Frequency(dev.name, cur, top))
    return out


@dataclass(frozen=True)
class ThrottleStatus:
    pi: PiThrottle | None
    cpus: list[Frequency] = field(default_factory=list)
    devfreq: list[Frequency] = field(default_factory=list)

    @property
    def min_cpu_ratio(self) -> float | None:
        return min((f.ratio for f in self.cpus), default=None)

    @property
    def throttled_now(self) -> bool | None:
        """True when the firmware says so; None when only clocks are known (a low clock may be idle)."""
        if self.pi is not None:
            return self.pi.any_now
        return None


def throttle_status(root: PathLike = "/", runner: Runner | None = None) -> ThrottleStatus:
    """Pi firmware flags (vcgencmd), CPU clocks vs their maximum, and devfreq (Jetson GPU) clocks."""
    return ThrottleStatus(pi_throttle(_runner_for(root, runner), root), cpu_frequencies(root), devfreq_frequencies(root))


@dataclass(frozen=True)
class CoolingDevice:
    """A /sys/class/thermal cooling device: a fan's speed step or a CPU's clock cap, ``cur`` of ``max``."""

    name: str  # cooling_device0
    type: str  # pwm-fan, cpufreq-cpu0
    cur_state: int
    max_state: int | None


def cooling_devices(root: PathLike = "/") -> list[CoolingDevice]:
    """Every cooling device whose ``cur_state`` is readable (the Pi 5's fan is ``pwm-fan``, 0-4)."""
    out = []
    for dev in glob(root, "sys/class/thermal/cooling_device*"):
        rel = dev.relative_to(root)
        cur = read_int(root, f"{rel}/cur_state")
        if cur is not None:
            out.append(CoolingDevice(dev.name, read_text(root, f"{rel}/type") or "?", cur,
                                     read_int(root, f"{rel}/max_state")))
    return out


# --- system gauges -----------------------------------------------------------------------


@dataclass(frozen=True)
class SystemGauges:
    """psutil gauges; ``cpu_percent`` is None on the first call (psutil has no interval yet)."""

    cpu_percent: float | None
    rss_bytes: int | None
    available_memory_bytes: int | None
    disk_free_bytes: int | None


_cpu_primed = False


def system_gauges(disk_path: PathLike = "/") -> SystemGauges:
    """CPU % since the previous call, this process's RSS, available memory and free disk."""
    global _cpu_primed
    try:
        import psutil
    except ImportError:
        return SystemGauges(None, None, None, None)
    cpu = psutil.cpu_percent(interval=None)
    # psutil's first non-blocking call returns a meaningless 0.0; report no sample instead.
    cpu_value = cpu if _cpu_primed else None
    _cpu_primed = True

    def attempt(fn):
        try:
            return fn()
        except (OSError, psutil.Error):
            return None

    return SystemGauges(
        cpu_value,
        attempt(lambda: psutil.Process().memory_info().rss),
        attempt(lambda: psutil.virtual_memory().available),
        attempt(lambda: psutil.disk_usage(str(disk_path)).free),
    )
