"""A simulated Raspberry Pi 5 without a cooler: heats with a real process's CPU use, throttles like its firmware.

>>> plant = ThermalPlant(PI5_BARE, root="/tmp/pi-sys")          # writes a fake sysfs tree there
>>> plant.step(dt_s=1.0, util=1.0)                               # one second at full load
>>> driver = PlantDriver(plant, pid=server.pid).start()          # closed loop on a real server
>>> ... edgeship serve ... --sensors-root /tmp/pi-sys            # its readers see the simulated Pi
>>> driver.stop(); driver.summary()

The thermal model is first order (one RC): the die relaxes toward ``ambient + rise(util, clock)``
with time constant ``tau_s``, where the rise goes from ``idle_rise_c`` (idle) to ``full_rise_c``
(all cores busy at the full clock) in proportion to the CPU use, and the dynamic part scales with
the clock to the power ``heat_exponent``. The firmware model cuts the clock progressively between
``soft_c`` and ``hard_c`` (80 and 85 C: 2.4 GHz down to 1.5 GHz in 100 MHz steps, the Pi 5's
``arm_freq`` and ``arm_freq_min``) and sets the ``vcgencmd get_throttled`` bits.

What it writes is what the readers of :mod:`edgeship.monitor.sensors` accept: thermal_zone0
(``cpu-thermal``, with the Pi 5's trip points), cpufreq ``scaling_cur_freq`` / ``cpuinfo_max_freq``
for 4 CPUs, and the firmware's ``get_throttled`` attribute. Each file is replaced atomically.

The driver slows the served process as the clock falls: it stops the whole process with SIGSTOP
for ``1 - clock/max`` of every ``period_s`` and resumes it with SIGCONT. A clock cut slows every
thread of a device alike, the event loop as much as ONNX Runtime's and llama.cpp's native thread
pools; stopping the process from outside does the same with no hook in the serving code (the server
under test is the production server, unmodified), which a duty cycle inside Python could not do
for native threads. The price: work arriving during a stop waits up to ``(1 - d) * period_s``, as
work on a slower clock is late too; it shows in the p99.

CPU use is measured, not assumed: the process's CPU seconds (psutil) over the time it was allowed
to run, divided by ``load_cores``, the host cores that count as "all four Pi cores busy" (the
bench calibrates it: what the server uses at saturation on this host).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..errors import InputError
from ..util import write_text_atomic

PathLike = Union[str, Path]


@dataclass(frozen=True)
class PlantParams:
    """A board's thermal figures. See ``PI5_BARE`` for where each comes from."""

    ambient_c: float
    idle_rise_c: float
    full_rise_c: float
    tau_s: float
    f_max_khz: int
    f_min_khz: int
    f_step_khz: int
    soft_c: float
    hard_c: float
    heat_exponent: float = 2.0
    cpus: int = 4
    source: str = ""

    def __post_init__(self) -> None:
        if not (0 <= self.idle_rise_c < self.full_rise_c and self.tau_s > 0 and self.soft_c < self.hard_c
                and 0 < self.f_min_khz <= self.f_max_khz and self.f_step_khz > 0 and self.cpus >= 1):
            raise InputError(f"plant parameters are inconsistent: {self}")

    def settle_c(self, util: float, clock_khz: int | None = None) -> float:
        """The temperature the board settles at under ``util`` (0-1) at ``clock_khz``: a prediction of the model."""
        ratio = (clock_khz or self.f_max_khz) / self.f_max_khz
        dynamic = (self.full_rise_c - self.idle_rise_c) * max(0.0, min(1.0, util)) * ratio ** self.heat_exponent
        return self.ambient_c + self.idle_rise_c + dynamic


# Raspberry Pi 5 (BCM2712, 4x Cortex-A76 at 2.4 GHz), bare board, no heatsink, in open air:
# - ambient 22 C and "reaches 80 C within a few minutes" of stress-ng on 4 cores with no cooling:
#   pidiylab.com, "Raspberry Pi 5 Cooling Guide" (Pi 5 8GB, Bookworm, 22 C ambient);
# - idles around 50 C with no cooling: beamostore.com, "Raspberry Pi 5 overheating";
# - without a heatsink the SoC averaged 81 C and peaked at 89 C over Phoronix's benchmark run, so
#   the unthrottled full-load equilibrium lies well above 85 C (Phoronix, "Raspberry Pi 5
#   Benchmarks", page 2); we take 95 C;
# - the firmware throttles progressively from 80 C and hard at 85 C (Raspberry Pi documentation,
#   "Frequency management and thermal control"); the Pi 5 runs 2.4 GHz (arm_freq) down to 1.5 GHz
#   (arm_freq_min), in 100 MHz steps.
# tau: from 50 C toward 95 C, 80 C is reached after tau * ln(45 / 15) = 1.1 tau; "a few minutes"
# (3 min) gives tau = 164 s; we take 160 s. heat_exponent 2: dynamic power goes as f * V^2 and the
# firmware lowers the voltage with the clock; an assumption of the model, not a Pi measurement.
PI5_BARE = PlantParams(
    ambient_c=22.0, idle_rise_c=28.0, full_rise_c=73.0, tau_s=160.0,
    f_max_khz=2_400_000, f_min_khz=1_500_000, f_step_khz=100_000, soft_c=80.0, hard_c=85.0,
    heat_exponent=2.0, cpus=4,
    source=("Raspberry Pi 5 without a cooler: idle 50 C, 22 C ambient, 80 C within about 3 min at full load "
            "(pidiylab, beamostore), unthrottled equilibrium above 85 C (Phoronix: mean 81 C, peak 89 C while "
            "throttling), firmware 80-85 C, 2.4 -> 1.5 GHz (Raspberry Pi documentation)"),
)

# vcgencmd get_throttled bits (Raspberry Pi documentation); "since boot" is the bit plus 16.
BIT_FREQ_CAPPED, BIT_THROTTLED, BIT_SOFT_TEMP_LIMIT = 1, 2, 3
TRIP_POINTS = (  # the Pi 5's cpu-thermal zone: fan steps (active, 5 C hysteresis) and cpu-crit
    ("active", 50_000, 5_000), ("active", 60_000, 5_000), ("active", 67_500, 5_000), ("active", 75_000, 5_000),
    ("critical", 110_000, 0),
)
THROTTLED_FILE = "sys/devices/platform/soc/soc:firmware/get_throttled"


def firmware_clock(params: PlantParams, celsius: float) -> int:
    """The clock the firmware allows at ``celsius``: full below soft_c, minimum from hard_c, a ramp between."""
    if celsius < params.soft_c:
        return params.f_max_khz
    if celsius >= params.hard_c:
        return params.f_min_khz
    frac = (celsius - params.soft_c) / (params.hard_c - params.soft_c)
    raw = params.f_max_khz - frac * (params.f_max_khz - params.f_min_khz)
    stepped = params.f_min_khz + math.floor((raw - params.f_min_khz) / params.f_step_khz) * params.f_step_khz
    return int(max(params.f_min_khz, min(params.f_max_khz, stepped)))


def _write(path: Path, text: str) -> None:
    # A reader polling the tree must never see half a file; the fsync is not needed for a
    # simulation and would cost a disk flush ten times a second.
    write_text_atomic(path, text, durable=False)


@dataclass(init=False)
class ThermalPlant:
    """The board's state, advanced by ``step``; ``write`` puts it into the fake sysfs tree."""

    params: PlantParams
    root: Path
    temp_c: float
    clock_khz: int = 0
    sticky: int = 0  # the since-boot half of get_throttled
    sim_s: float = 0.0
    _written: dict[str, int] = field(default_factory=dict, repr=False)

    # written out rather than generated so that root may be a str and temp_c None (the settled idle
    # temperature) while the attributes themselves are always a Path and a float
    def __init__(self, params: PlantParams, root: PathLike, temp_c: float | None = None, clock_khz: int = 0,
                 sticky: int = 0, sim_s: float = 0.0) -> None:
        self.params = params
        self.root = Path(root)
        self.temp_c = params.settle_c(0.0) if temp_c is None else temp_c
        self.sticky = sticky
        self.sim_s = sim_s
        self._written = {}
        self.clock_khz = firmware_clock(self.params, self.temp_c)
        self.sticky |= self._bits_now() << 16
        self.write()

    def _bits_now(self) -> int:
        now = 0
        if self.temp_c >= self.params.soft_c:
            now |= 1 << BIT_SOFT_TEMP_LIMIT
        if self.clock_khz < self.params.f_max_khz:
            now |= 1 << BIT_FREQ_CAPPED
        if self.temp_c >= self.params.hard_c:
            now |= 1 << BIT_THROTTLED
        return now

    @property
    def throttled_bits(self) -> int:
        """``vcgencmd get_throttled``: bits now in 0-3, since boot in 16-19."""
        return self._bits_now() | self.sticky

    def step(self, dt_s: float, util: float) -> None:
        """Advance ``dt_s`` simulated seconds with the CPU ``util`` busy (0-1) at the present clock."""
        target = self.params.settle_c(util, self.clock_khz)
        self.temp_c = target + (self.temp_c - target) * math.exp(-max(0.0, dt_s) / self.params.tau_s)
        self.clock_khz = firmware_clock(self.params, self.temp_c)
        self.sticky |= self._bits_now() << 16
        self.sim_s += max(0.0, dt_s)
        self.write()

    def write(self) -> None:
        """Put the state into the tree; files whose value did not change are left alone."""
        root = self.root
        zone = root / "sys/class/thermal/thermal_zone0"
        if not self._written:
            zone.mkdir(parents=True, exist_ok=True)
            _write(zone / "type", "cpu-thermal\n")
            for i, (kind, millis, hyst) in enumerate(TRIP_POINTS):
                _write(zone / f"trip_point_{i}_type", f"{kind}\n")
                _write(zone / f"trip_point_{i}_temp", f"{millis}\n")
                _write(zone / f"trip_point_{i}_hyst", f"{hyst}\n")
            for cpu in range(self.params.cpus):
                d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
                d.mkdir(parents=True, exist_ok=True)
                _write(d / "cpuinfo_max_freq", f"{self.params.f_max_khz}\n")
                _write(d / "cpuinfo_min_freq", f"{self.params.f_min_khz}\n")
                _write(d / "scaling_max_freq", f"{self.params.f_max_khz}\n")
            (root / THROTTLED_FILE).parent.mkdir(parents=True, exist_ok=True)
        values = {"temp": round(self.temp_c * 1000), "clock": self.clock_khz, "bits": self.throttled_bits}
        if values["temp"] != self._written.get("temp"):
            _write(zone / "temp", f"{values['temp']}\n")
        if values["clock"] != self._written.get("clock"):
            for cpu in range(self.params.cpus):
                _write(root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", f"{self.clock_khz}\n")
        if values["bits"] != self._written.get("bits"):
            _write(root / THROTTLED_FILE, f"{values['bits']:x}\n")
        self._written = values


@dataclass
class TracePoint:
    wall_s: float
    sim_s: float
    temp_c: float
    clock_khz: int
    util: float
    bits: int


class PlantDriver:
    """Closes the loop: measures the process's CPU use, advances the plant, slows the process.

    ``time_scale`` > 1 runs the thermal model faster than the wall clock (a demo sees minutes of a
    Pi's heating in seconds); CPU use and slowing stay in real time.
    """

    def __init__(self, plant: ThermalPlant, pid: int, load_cores: float | None = None, period_s: float = 0.05,
                 time_scale: float = 1.0, frozen: bool = False):
        import psutil

        if load_cores is not None and load_cores <= 0:
            raise InputError(f"load_cores: expected a positive number, got {load_cores!r}")
        if period_s <= 0 or time_scale <= 0:
            raise InputError(f"period_s and time_scale must be positive (got {period_s}, {time_scale})")
        self.plant = plant
        self.pid = pid
        self.process = psutil.Process(pid)
        self.load_cores = load_cores or float(len(os.sched_getaffinity(pid)) if hasattr(os, "sched_getaffinity")
                                              else os.cpu_count() or 1)
        self.period_s = period_s
        self.time_scale = time_scale
        self.frozen = frozen  # measure CPU use but keep the temperature where it is (calibration)
        self.trace: list[TracePoint] = []
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped_process = False
        self.error: BaseException | None = None

    def _cpu(self) -> float:
        t = self.process.cpu_times()
        return t.user + t.system

    def _signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
            self._stopped_process = sig == signal.SIGSTOP
        except ProcessLookupError:
            self._stop.set()

    def _run(self) -> None:
        t0 = time.monotonic()
        last_cpu = self._cpu()
        try:
            while not self._stop.is_set():
                duty = self.plant.clock_khz / self.plant.params.f_max_khz
                run_s = self.period_s * duty
                started = time.monotonic()
                self._stop.wait(run_s)
                if duty < 1.0 and not self._stop.is_set():
                    self._signal(signal.SIGSTOP)
                    ran = time.monotonic() - started
                    self._stop.wait(self.period_s - run_s)
                    self._signal(signal.SIGCONT)
                else:
                    ran = time.monotonic() - started
                elapsed = time.monotonic() - started
                cpu = self._cpu()
                used, last_cpu = cpu - last_cpu, cpu
                self.cpu_s += used
                util = max(0.0, min(1.0, used / max(ran, 1e-6) / self.load_cores))
                if not self.frozen:
                    self.plant.step(elapsed * self.time_scale, util)
                self.trace.append(TracePoint(time.monotonic() - t0, self.plant.sim_s, self.plant.temp_c,
                                             self.plant.clock_khz, util, self.plant.throttled_bits))
        except Exception as exc:  # noqa: BLE001  the process ended (psutil.NoSuchProcess) or a bug
            self.error = exc
        finally:
            if self._stopped_process:
                self._signal(signal.SIGCONT)

    def start(self) -> "PlantDriver":
        self._thread = threading.Thread(target=self._run, name="edgeship-plant", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._stopped_process:
            self._signal(signal.SIGCONT)

    def summary(self, since_s: float = 0.0) -> dict[str, Any]:
        """Time above the firmware's limit, time throttled, peak temperature, mean CPU use (measured in the run)."""
        pts = [p for p in self.trace if p.wall_s >= since_s]
        if len(pts) < 2:
            return {"samples": len(pts)}
        above = throttled = 0.0
        for a, b in zip(pts, pts[1:]):
            dt = b.wall_s - a.wall_s
            above += dt if a.temp_c >= self.plant.params.soft_c else 0.0
            throttled += dt if a.clock_khz < self.plant.params.f_max_khz else 0.0
        span = pts[-1].wall_s - pts[0].wall_s
        return {
            "samples": len(pts),
            "wall_s": span,
            "sim_s": pts[-1].sim_s - pts[0].sim_s,
            "time_above_limit_s": above,
            "time_throttled_s": throttled,
            "peak_temp_c": max(p.temp_c for p in pts),
            "final_temp_c": pts[-1].temp_c,
            "min_clock_khz": min(p.clock_khz for p in pts),
            "mean_util": sum(p.util for p in pts) / len(pts),
            "throttled_bits_since_boot": pts[-1].bits >> 16,
        }


__all__ = ["PI5_BARE", "PlantDriver", "PlantParams", "ThermalPlant", "TracePoint", "firmware_clock"]
