"""Alert thresholds on system readings: what turns a server's readiness to "degraded", and why.

>>> thresholds = AlertThresholds(max_cpu_temp_c=80.0, min_available_memory_mb=64)
>>> [a.reason for a in evaluate(read_snapshot(), thresholds)]
[]
>>> evaluate(Snapshot(cpu_temp_c=85.5), thresholds)[0].reason
'CPU temperature 85.5 C is above 80.0 C'

Readings come from :mod:`edgeship.monitor.sensors` (each reader takes an injectable ``root``).
A reading that is not available never raises an alert: no sample is not a bad sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..errors import InputError

PathLike = Union[str, Path]
_MB = 1024 * 1024


@dataclass(frozen=True)
class AlertThresholds:
    """Limits past which the device is degraded; ``None`` turns a check off.

    Defaults: a Raspberry Pi 5 starts soft-throttling at 80 C and hard-throttles at 85 C, so 80 C
    warns while there is still headroom; 64 MB of available memory is about one more decoded
    8-megapixel photo plus a model's working set; 100 MB of free disk keeps logs and an OTA
    download from failing half-way.
    """

    max_cpu_temp_c: Union[float, None] = 80.0
    min_available_memory_mb: Union[float, None] = 64.0
    min_disk_free_mb: Union[float, None] = 100.0
    throttling: bool = True  # firmware-reported throttling (Pi's vcgencmd) is an alert

    def __post_init__(self) -> None:
        for name in ("max_cpu_temp_c", "min_available_memory_mb", "min_disk_free_mb"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise InputError(f"{name}: expected a non-negative number or null, got {v!r}")


@dataclass(frozen=True)
class Snapshot:
    """One set of readings; ``None`` means the machine did not say."""

    cpu_temp_c: Union[float, None] = None
    cpu_temp_source: str = ""
    throttled_now: Union[bool, None] = None
    available_memory_bytes: Union[int, None] = None
    disk_free_bytes: Union[int, None] = None


@dataclass(frozen=True)
class Alert:
    name: str  # cpu_temperature, memory, disk, throttling
    reason: str
    value: Union[float, None] = None
    threshold: Union[float, None] = None


def read_snapshot(root: PathLike = "/", disk_path: PathLike = "/") -> Snapshot:
    """Read temperature, throttling, memory and disk through the sensors module."""
    from . import sensors

    temp = sensors.cpu_temperature(root)
    throttle = sensors.throttle_status(root)
    gauges = sensors.system_gauges(disk_path)
    return Snapshot(
        cpu_temp_c=temp.celsius if temp is not None else None,
        cpu_temp_source=temp.source if temp is not None else "",
        throttled_now=throttle.throttled_now,
        available_memory_bytes=gauges.available_memory_bytes,
        disk_free_bytes=gauges.disk_free_bytes,
    )


def evaluate(snapshot: Snapshot, thresholds: AlertThresholds) -> list[Alert]:
    """Every threshold the snapshot crosses, each with a sentence saying what and by how much."""
    alerts: list[Alert] = []
    t = thresholds
    if t.max_cpu_temp_c is not None and snapshot.cpu_temp_c is not None and snapshot.cpu_temp_c > t.max_cpu_temp_c:
        alerts.append(Alert(
            "cpu_temperature",
            f"CPU temperature {snapshot.cpu_temp_c:.1f} C is above {t.max_cpu_temp_c:.1f} C",
            snapshot.cpu_temp_c, t.max_cpu_temp_c,
        ))
    if t.throttling and snapshot.throttled_now:
        alerts.append(Alert("throttling", "the firmware reports the CPU is throttled now (vcgencmd get_throttled)"))
    mem = snapshot.available_memory_bytes
    if t.min_available_memory_mb is not None and mem is not None and mem < t.min_available_memory_mb * _MB:
        alerts.append(Alert(
            "memory",
            f"available memory {mem / _MB:.0f} MB is below {t.min_available_memory_mb:.0f} MB",
            mem / _MB, t.min_available_memory_mb,
        ))
    disk = snapshot.disk_free_bytes
    if t.min_disk_free_mb is not None and disk is not None and disk < t.min_disk_free_mb * _MB:
        alerts.append(Alert(
            "disk",
            f"free disk {disk / _MB:.0f} MB is below {t.min_disk_free_mb:.0f} MB",
            disk / _MB, t.min_disk_free_mb,
        ))
    return alerts
