"""Energy and power: RAPL counters, hwmon power/energy, INA219/INA3221 monitors, Jetson power rails.

>>> meter = EnergyMeter()                  # finds the best sensor under root "/"
>>> meter.start(); run_the_model(); reading = meter.stop()
>>> reading                                # None when this machine has no power sensor
EnergyReading(joules=12.4, seconds=1.02, mean_watts=12.2, source='rapl package-0', method='counter', samples=2)

Counters (RAPL ``energy_uj``, hwmon ``energy*_input``) give joules directly, with RAPL's
wrap-around at ``max_energy_range_uj`` handled. Where only power is exposed (INA monitors on a
Pi HAT or a Jetson) it is sampled every ``interval_s`` in a background thread and integrated.
Readers take ``root`` so tests use a fake tree; a missing sensor is None, never a guess.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

from .sensors import PathLike, glob, read_int, read_text

# A rail that measures the whole board's input: use it alone, the others are parts of it.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0", "VIN")
INA_NAMES = ("ina219", "ina226", "ina230", "ina260", "ina3221")


class Source(str, enum.Enum):
    """Kinds of sensor, best first: counters are exact, sampled power is integrated."""

    RAPL = "rapl"
    HWMON_ENERGY = "hwmon-energy"
    JETSON_RAIL = "jetson-rail"
    INA = "ina"
    HWMON_POWER = "hwmon-power"


COUNTER_SOURCES = (Source.RAPL, Source.HWMON_ENERGY)


@dataclass(frozen=True)
class EnergyCounter:
    """A monotonically rising energy counter in µJ that wraps at ``max_range_uj`` (None: never)."""

    name: str
    source: Source
    path: Path
    max_range_uj: int | None = None

    def read_uj(self) -> int | None:
        return read_int(self.path.parent, self.path.name)

    def delta_uj(self, before: int, after: int) -> int:
        if after >= before:
            return after - before
        # RAPL counts from 0 to max_energy_range_uj and starts again: one wrap between two reads.
        return (self.max_range_uj - before) + after if self.max_range_uj else 0


@dataclass(frozen=True)
class PowerGauge:
    """One channel's instantaneous power, in watts, from whatever files that channel exposes."""

    name: str
    source: Source
    device: str  # the hwmon/iio folder: channels of one chip are chosen together
    read_w: Callable[[], Union[float, None]] = field(compare=False, repr=False)


@dataclass(frozen=True)
class EnergyReading:
    joules: float
    seconds: float
    mean_watts: float
    source: str
    method: str  # "counter" or "sampled"
    samples: int


# --- discovery ---------------------------------------------------------------------------


def _rapl(root: PathLike) -> tuple[list[EnergyCounter], list[str]]:
    readable: list[EnergyCounter] = []
    unreadable: list[EnergyCounter] = []
    domains = [p for p in glob(root, "sys/class/powercap/intel-rapl:*") if p.name.count(":") == 1]
    for d in domains:  # top-level domains only: subzones (core, uncore, dram) are inside package
        rel = d.relative_to(root)
        name = read_text(root, f"{rel}/name") or d.name
        counter = EnergyCounter(f"rapl {name}", Source.RAPL, d / "energy_uj",
                                read_int(root, f"{rel}/max_energy_range_uj"))
        (readable if counter.read_uj() is not None else unreadable).append(counter)
    packages = [c for c in readable if "package" in c.name]
    # psys covers the whole platform and overlaps the packages: count one or the other.
    chosen = packages or [c for c in readable if "psys" in c.name]
    return chosen, [f"{c.name} (present, not readable: needs root)" for c in unreadable]


def _hwmon_dirs(root: PathLike) -> list[tuple[Path, str]]:
    return [(h, read_text(root, f"{h.relative_to(root)}/name") or h.name) for h in glob(root, "sys/class/hwmon/hwmon*")]


def energy_counters(root: PathLike = "/") -> list[EnergyCounter]:
    """Readable energy counters: RAPL package domains, else hwmon ``energy*_input``."""
    rapl, _ = _rapl(root)
    if rapl:
        return rapl
    out = []
    for hw, name in _hwmon_dirs(root):
        for f in glob(hw, "energy*_input"):
            counter = EnergyCounter(f"hwmon {name} {f.name}", Source.HWMON_ENERGY, f)
            if counter.read_uj() is not None:
                out.append(counter)
    return out


def _file_reader(path: Path, scale: float) -> Callable[[], float | None]:
    def read() -> float | None:
        v = read_int(path.parent, path.name)
        return v * scale if v is not None else None

    return read


def _vi_reader(volt: Path, curr: Path) -> Callable[[], float | None]:
    def read() -> float | None:
        mv, ma = read_int(volt.parent, volt.name), read_int(curr.parent, curr.name)
        return mv * ma / 1e6 if mv is not None and ma is not None else None

    return read


def _hwmon_gauges(root: PathLike) -> list[PowerGauge]:
    out: list[PowerGauge] = []
    for hw, name in _hwmon_dirs(root):
        source = Source.INA if name in INA_NAMES else Source.HWMON_POWER
        channels: dict[str, PowerGauge] = {}
        for f in glob(hw, "power*_input") + glob(hw, "power*_average"):
            n = f.name[len("power"):].split("_")[0]
            label = read_text(hw, f"power{n}_label") or read_text(hw, f"in{n}_label") or f"power{n}"
            channels.setdefault(n, PowerGauge(f"{name} {label}", source, str(hw), _file_reader(f, 1e-6)))
        for curr in glob(hw, "curr*_input"):  # INA: bus voltage in{n} mV x current curr{n} mA
            n = curr.name[len("curr"):].split("_")[0]
            volt = hw / f"in{n}_input"
            if n in channels or not volt.exists():
                continue
            label = read_text(hw, f"in{n}_label") or read_text(hw, f"curr{n}_label") or f"channel {n}"
            channels[n] = PowerGauge(f"{name} {label}", source, str(hw), _vi_reader(volt, curr))
        out.extend(channels.values())
    return out


def _jetson_rails(root: PathLike) -> list[PowerGauge]:
    # JetPack 4 (Nano, TX2, Xavier): the ina3221x driver exposes rails through IIO, in mW.
    out = []
    for f in glob(root, "sys/bus/i2c/drivers/ina3221*/*/iio:device*/in_power*_input"):
        n = f.name[len("in_power"):].split("_")[0]
        label = read_text(f.parent, f"rail_name_{n}") or f"rail {n}"
        out.append(PowerGauge(f"jetson {label}", Source.JETSON_RAIL, str(f.parent), _file_reader(f, 1e-3)))
    return out


def power_gauges(root: PathLike = "/") -> list[PowerGauge]:
    """Every readable power channel: Jetson IIO rails, INA chips and other hwmon power sensors."""
    return [g for g in _jetson_rails(root) + _hwmon_gauges(root) if g.read_w() is not None]


def total_power_gauges(gauges: list[PowerGauge]) -> list[PowerGauge]:
    """The channels whose sum is the machine's power: the best kind present; per chip, its
    board-input rail alone when it has one (the other rails are parts of it), else all channels."""
    for kind in (Source.JETSON_RAIL, Source.INA, Source.HWMON_POWER):
        of_kind = [g for g in gauges if g.source is kind]
        if not of_kind:
            continue
        chosen = []
        for dev in dict.fromkeys(g.device for g in of_kind):
            chip = [g for g in of_kind if g.device == dev]
            total = [g for g in chip if g.name.split(" ", 1)[-1] in TOTAL_RAILS]
            chosen.extend(total[:1] or chip)
        return chosen
    return []


def power_sensors(root: PathLike = "/") -> list[str]:
    """Names of the energy and power sensors found, for the host report."""
    rapl, unreadable = _rapl(root)
    counters = rapl or energy_counters(root)
    return [c.name for c in counters] + unreadable + [g.name for g in power_gauges(root)]


# --- the meter ---------------------------------------------------------------------------


class MeterState(str, enum.Enum):
    IDLE = "idle"
    RUNNING = "running"


class EnergyMeter:
    """Joules used between ``start()`` and ``stop()``, from counters or integrated power samples.

    >>> with EnergyMeter() as meter:
    ...     run_the_model()
    >>> meter.reading.joules if meter.reading else "no power sensor on this machine"
    """

    def __init__(self, root: PathLike = "/", interval_s: float = 0.02, counter_poll_s: float = 1.0):
        self.root = root
        self.interval_s = interval_s
        self.counter_poll_s = counter_poll_s
        self.counters = energy_counters(root)
        self.gauges = [] if self.counters else total_power_gauges(power_gauges(root))
        self.method = "counter" if self.counters else "sampled" if self.gauges else None
        names = [c.name for c in self.counters] or [g.name for g in self.gauges]
        self.source = " + ".join(names) if names else None
        self.reading: EnergyReading | None = None
        self._state = MeterState.IDLE
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.method is not None

    def _expect(self, state: MeterState) -> None:
        if self._state is not state:
            raise RuntimeError(f"EnergyMeter: expected state {state.value}, got {self._state.value}")

    def start(self) -> "EnergyMeter":
        self._expect(MeterState.IDLE)
        self._state = MeterState.RUNNING
        self._stop.clear()
        self._t0 = time.perf_counter()
        self._uj = 0
        self._last = [c.read_uj() for c in self.counters]
        self._samples: list[tuple[float, float]] = []
        if self.method is not None:
            self._poll()
            self._thread = threading.Thread(target=self._loop, name="edgeship-energy", daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        with self._lock:
            if self.method == "counter":
                # Polled often enough that a counter cannot wrap twice between two reads.
                for i, c in enumerate(self.counters):
                    now, last = c.read_uj(), self._last[i]
                    if now is not None and last is not None:
                        self._uj += c.delta_uj(last, now)
                    self._last[i] = now if now is not None else self._last[i]
            else:
                watts = [g.read_w() for g in self.gauges]
                read = [w for w in watts if w is not None]
                if len(read) == len(watts):
                    self._samples.append((time.perf_counter(), float(sum(read))))

    def _loop(self) -> None:
        wait = self.counter_poll_s if self.method == "counter" else self.interval_s
        while not self._stop.wait(wait):
            self._poll()

    def stop(self) -> EnergyReading | None:
        """Stop measuring; the reading, or None when no sensor exists or gave no sample."""
        self._expect(MeterState.RUNNING)
        self._state = MeterState.IDLE
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        seconds = time.perf_counter() - self._t0
        if self.method is None:
            self.reading = None
            return None
        self._poll()
        if self.method == "counter":
            joules, samples = self._uj / 1e6, 2
        else:
            integrated = _integrate(self._samples)
            if integrated is None:
                self.reading = None
                return None
            joules, samples = integrated, len(self._samples)
        mean = joules / seconds if seconds > 0 else 0.0
        self.reading = EnergyReading(joules, seconds, mean, self.source or "", self.method, samples)
        return self.reading

    def __enter__(self) -> "EnergyMeter":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._state is MeterState.RUNNING:
            self.stop()


def _integrate(samples: list[tuple[float, float]]) -> float | None:
    """Trapezoidal integral of (time s, power W) samples; None with fewer than two."""
    if len(samples) < 2:
        return None
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))
