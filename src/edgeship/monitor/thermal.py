"""Thermal status in Android's levels, headroom, and a short forecast from the recent slope.

>>> limits = limits_for("rpi5")                      # the firmware throttles from 80 C
>>> tracker = ThermalTracker(limits)
>>> for t, c in [(0, 70.0), (1, 70.5), (2, 71.0)]:
...     tracker.add(t, c)
>>> tracker.status(), round(tracker.headroom(), 2), round(tracker.headroom(forecast_s=10), 2)
(<ThermalStatus.LIGHT: 1>, 0.7, 0.87)

The shape is Android's (``PowerManager.getCurrentThermalStatus`` and ``getThermalHeadroom``):
seven status levels; headroom 1.0 at the point where the platform throttles severely (here: where
the firmware starts cutting the clock), 0.0 thirty degrees below it, as Android's
ThermalManagerService normalises it; the forecast extrapolates a least-squares slope over the last
30 samples, as its TemperatureWatcher does.

Limits per target: a Raspberry Pi's firmware throttles progressively from 80 C and hard at 85 C
(Raspberry Pi documentation, "Frequency management and thermal control"); a Jetson's kernel
throttles at the passive trip point of its CPU zone, read from sysfs; anything else uses its
passive trip point when it has one, else generic figures. Every preset can be overridden.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import InputError
from . import sensors

log = logging.getLogger("edgeship.thermal")
PathLike = Union[str, Path]

# Android's ThermalManagerService: 1.0 is pinned at SEVERE, 0.0 thirty degrees below.
HEADROOM_SPAN_C = 30.0
# Android's TemperatureWatcher keeps 30 samples and needs 3 for a forecast.
WINDOW = 30
MIN_FORECAST_SAMPLES = 3
# Readings outside this range are a broken sensor, not a temperature (some drivers report -274 C
# or 0 on error).
PLAUSIBLE_C = (-40.0, 150.0)


class ThermalStatus(enum.IntEnum):
    """Android's thermal status levels (``PowerManager.THERMAL_STATUS_*``), same names and values."""

    NONE = 0  # not under throttling
    LIGHT = 1  # light throttling, the user does not notice
    MODERATE = 2  # moderate throttling, the user barely notices
    SEVERE = 3  # the firmware throttles: performance largely affected
    CRITICAL = 4  # the platform has done everything it can to reduce power
    EMERGENCY = 5  # key components are shutting down
    SHUTDOWN = 6  # shut down now


@dataclass(frozen=True)
class ThermalLimits:
    """The temperature (C) at which each status begins; ``severe_c`` is where throttling starts.

    >>> ThermalLimits(light_c=60, moderate_c=70, severe_c=80, critical_c=85, emergency_c=90, shutdown_c=110)
    """

    light_c: float
    moderate_c: float
    severe_c: float
    critical_c: float
    emergency_c: float
    shutdown_c: float
    source: str = "given"

    def __post_init__(self) -> None:
        names = ("light_c", "moderate_c", "severe_c", "critical_c", "emergency_c", "shutdown_c")
        values = [getattr(self, n) for n in names]
        for n, v in zip(names, values):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise InputError(f"thermal limits: {n} expected a number, got {v!r}")
        for (a, va), (b, vb) in zip(zip(names, values), zip(names[1:], values[1:])):
            if not va < vb:
                raise InputError(f"thermal limits: expected {a} < {b}, got {va} and {vb}")

    def levels(self) -> list[tuple[ThermalStatus, float]]:
        return [(ThermalStatus.LIGHT, self.light_c), (ThermalStatus.MODERATE, self.moderate_c),
                (ThermalStatus.SEVERE, self.severe_c), (ThermalStatus.CRITICAL, self.critical_c),
                (ThermalStatus.EMERGENCY, self.emergency_c), (ThermalStatus.SHUTDOWN, self.shutdown_c)]

    def status_for(self, celsius: float) -> ThermalStatus:
        status = ThermalStatus.NONE
        for level, threshold in self.levels():
            if celsius >= threshold:
                status = level
        return status

    def headroom(self, celsius: float) -> float:
        """Android's normalisation: 1.0 at ``severe_c``, 0.0 thirty degrees below, never negative."""
        return max(0.0, (celsius - (self.severe_c - HEADROOM_SPAN_C)) / HEADROOM_SPAN_C)

    def replace(self, **changes: Any) -> "ThermalLimits":
        return dataclasses.replace(self, **changes)


def _around(severe: float, critical: float, shutdown: float, source: str) -> ThermalLimits:
    # Below the throttling point: LIGHT 15 C and MODERATE 8 C before it, our choice, so that a
    # governor stepping in at MODERATE has a few minutes of a Pi's heating curve left.
    return ThermalLimits(severe - 15.0, severe - 8.0, severe, critical, (critical + shutdown) / 2, shutdown, source)


# Raspberry Pi firmware: progressive throttling from 80 C, hard at 85 C (Raspberry Pi documentation);
# the Pi 5's device tree has a critical trip at 110 C (bcm2712 "cpu-crit"), where Linux powers off.
RPI_LIMITS = _around(80.0, 85.0, 110.0, "Raspberry Pi firmware: throttles from 80 C, hard at 85 C")
# Without trip points: throttling assumed at 85 C, an x86 mobile part's usual passive point (our choice).
GENERIC_LIMITS = _around(85.0, 95.0, 105.0, "generic default (no passive trip point found)")

PRESETS: dict[str, ThermalLimits] = {"rpi5": RPI_LIMITS, "rpi5-hailo": RPI_LIMITS, "rpi4": RPI_LIMITS}


def limits_from_trips(root: PathLike = "/") -> ThermalLimits | None:
    """Limits from the CPU zone's kernel trip points (a Jetson's): passive = SEVERE, hot = CRITICAL,
    critical = SHUTDOWN. None when the zone has no passive or critical trip."""
    trips = sensors.trip_points(root)
    passive = [t.celsius for t in trips if t.type == "passive"]
    hot = [t.celsius for t in trips if t.type == "hot"]
    critical = [t.celsius for t in trips if t.type == "critical"]
    if not passive and not critical:
        return None
    shutdown = min(critical) if critical else max(passive) + 20.0
    severe = min(passive) if passive else shutdown - 20.0
    crit = min(hot) if hot and severe < min(hot) < shutdown else min(severe + 5.0, (severe + shutdown) / 2)
    if not severe < crit < shutdown:
        return None
    zone = trips[0].zone
    return _around(severe, crit, shutdown, f"kernel trip points of {zone}")


def limits_for(target: str | None = None, root: PathLike = "/", **overrides: float) -> ThermalLimits:
    """The limits of a target preset (``rpi5``, ``jetson-orin-nx``, ...) or, for others, of this host's
    trip points; ``overrides`` replace single figures (``severe_c=78``)."""
    if target in PRESETS:
        limits = PRESETS[target]
    else:
        limits = limits_from_trips(root) or GENERIC_LIMITS
    if overrides:
        try:
            limits = limits.replace(**overrides, source=f"{limits.source}, overridden: "
                                    + ", ".join(f"{k}={v}" for k, v in overrides.items()))
        except TypeError as exc:
            raise InputError(f"thermal limits: {exc}") from None
    return limits


# --- readings ------------------------------------------------------------------------------

# vcgencmd bits that mean the firmware is cutting the clock now (under-voltage is not thermal).
THROTTLE_FLAGS = ("freq_capped", "throttled", "soft_temp_limit")


@dataclass(frozen=True)
class Sample:
    """One poll of the sensors; ``None`` where the machine did not say."""

    temp_c: float | None
    source: str = ""
    flags: frozenset[str] | None = None  # throttle bits set now (THROTTLE_FLAGS and under_voltage)
    clock_ratio: float | None = None  # lowest CPU clock over its maximum
    clock_khz: int | None = None
    throttled_raw: int | None = None  # the whole get_throttled field, since-boot bits included

    @property
    def firmware_throttling(self) -> bool:
        return bool(self.flags and self.flags.intersection(THROTTLE_FLAGS))


def read_sample(root: PathLike = "/", runner: sensors.Runner | None = None) -> Sample:
    """Temperature, throttle bits and clock through :mod:`edgeship.monitor.sensors` (never raises)."""
    try:
        temp = sensors.cpu_temperature(root, runner)
        status = sensors.throttle_status(root, runner)
    except Exception as exc:  # noqa: BLE001  a reader bug is no sample, not a crash
        log.warning("thermal sensors failed: %s", exc)
        return Sample(None)
    flags = None
    if status.pi is not None:
        flags = frozenset(n for n in (*THROTTLE_FLAGS, "under_voltage") if getattr(status.pi, f"{n}_now"))
    clock = min(status.cpus, key=lambda f: f.ratio, default=None)
    return Sample(temp.celsius if temp else None, temp.source if temp else "", flags,
                  clock.ratio if clock else None, clock.current if clock else None,
                  status.pi.raw if status.pi is not None else None)


class ThermalTracker:
    """Filters the temperature, keeps a window of it, and answers status, headroom and forecast.

    A sample outside the plausible range is dropped. A jump of more than ``max_jump_c`` from the
    last accepted sample is held back for one sample: if the next one confirms it (lies within
    ``max_jump_c`` of it) both count, else it was a glitch and is dropped. A real jump is thus
    seen one poll late; a one-sample spike never moves the governor.
    """

    def __init__(self, limits: ThermalLimits, window: int = WINDOW, max_jump_c: float = 20.0):
        if max_jump_c <= 0:
            raise InputError(f"max_jump_c: expected a positive number, got {max_jump_c!r}")
        self.limits = limits
        self.max_jump_c = max_jump_c
        self.samples: deque[tuple[float, float]] = deque(maxlen=window)
        self._suspect: tuple[float, float] | None = None
        self.rejected = 0
        self.last_rejection = ""

    def add(self, t: float, celsius: float | None) -> float | None:
        """Offer a sample taken at ``t`` seconds; returns the temperature accepted now, if any."""
        if celsius is None:
            return None
        if not (isinstance(celsius, (int, float)) and math.isfinite(celsius)
                and PLAUSIBLE_C[0] <= celsius <= PLAUSIBLE_C[1]):
            self._reject(f"implausible reading {celsius!r} C")
            return None
        if self.samples and abs(celsius - self.samples[-1][1]) > self.max_jump_c:
            suspect, self._suspect = self._suspect, (t, float(celsius))
            if suspect is not None and abs(celsius - suspect[1]) <= self.max_jump_c:
                self.samples.append(suspect)  # two samples agree: the change is real
                self.samples.append((t, float(celsius)))
                self._suspect = None
                return float(celsius)
            self._reject(f"jump of {celsius - self.samples[-1][1]:+.1f} C in one sample held back")
            return None
        self._suspect = None
        self.samples.append((t, float(celsius)))
        return float(celsius)

    def _reject(self, why: str) -> None:
        self.rejected += 1
        self.last_rejection = why
        log.warning("thermal sample dropped: %s", why)

    @property
    def latest(self) -> float | None:
        return self.samples[-1][1] if self.samples else None

    @property
    def latest_t(self) -> float | None:
        return self.samples[-1][0] if self.samples else None

    def slope(self) -> float | None:
        """Least-squares slope of the window, C per second (None with fewer than 3 samples)."""
        if len(self.samples) < MIN_FORECAST_SAMPLES:
            return None
        ts = [t for t, _ in self.samples]
        cs = [c for _, c in self.samples]
        mt, mc = sum(ts) / len(ts), sum(cs) / len(cs)
        var = sum((t - mt) ** 2 for t in ts)
        if var == 0:
            return None
        return sum((t - mt) * (c - mc) for t, c in zip(ts, cs)) / var

    def forecast(self, seconds: float) -> float | None:
        """The temperature ``seconds`` from the last sample, on the recent slope (a prediction)."""
        if self.latest is None:
            return None
        slope = self.slope()
        return self.latest if slope is None or seconds == 0 else self.latest + slope * seconds

    def headroom(self, forecast_s: float = 0.0) -> float | None:
        """Android's headroom now (``forecast_s=0``) or predicted ``forecast_s`` ahead; None without samples."""
        value = self.forecast(forecast_s)
        return None if value is None else self.limits.headroom(value)

    def status(self, sample: Sample | None = None) -> ThermalStatus:
        """Status from the temperature, raised to SEVERE when the firmware says it throttles now."""
        status = self.limits.status_for(self.latest) if self.latest is not None else ThermalStatus.NONE
        if sample is not None and sample.firmware_throttling:
            status = max(status, ThermalStatus.SEVERE)
        return status

    def to_dict(self, sample: Sample | None = None, forecast_s: float = 10.0) -> dict[str, Any]:
        slope = self.slope()
        return {
            "temp_c": self.latest,
            "status": self.status(sample).name.lower(),
            "headroom": self.headroom(),
            "forecast_s": forecast_s,
            "headroom_forecast": self.headroom(forecast_s),
            "slope_c_per_min": None if slope is None else slope * 60.0,
            "limits": dataclasses.asdict(self.limits),
            "rejected_samples": self.rejected,
        }
