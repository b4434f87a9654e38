"""Temperature, actual clock and throttle flags sampled in the background while a benchmark runs.

>>> with HeatSampler("/", interval_s=0.5) as heat:
...     run_the_benchmark()
>>> heat.summary()["thermally_unstable"], heat.summary()["reasons"]
(True, ['the CPU clock fell 12% (2400 -> 2100 MHz)'])

A run is "thermally unstable" when the clock falls by more than ``CLOCK_DROP`` from the highest
clock seen before it in the run, or when the firmware reports throttling (vcgencmd bits
freq_capped, throttled, soft_temp_limit, now or newly set since boot) during it: its latencies
then measure the heat as much as the model. trtexec only warns on variance and LiteRT's
benchmark_model says nothing. Where the machine exposes none of these sensors the verdict is
"not available" (None), never "stable".
"""

from __future__ import annotations

import threading
import time
from typing import Any, Union

from ..monitor.thermal import THROTTLE_FLAGS, Sample, read_sample

CLOCK_DROP = 0.05  # a fall of more than 5% from the run's peak
_THERMAL_BITS = 0b1110  # freq_capped, throttled, soft_temp_limit (bit 0, under-voltage, is not heat)


class HeatSampler:
    """Reads :func:`edgeship.monitor.thermal.read_sample` every ``interval_s`` in a daemon thread."""

    def __init__(self, sensors_root: Union[str, Any] = "/", interval_s: float = 0.5):
        self.root = sensors_root
        self.interval_s = interval_s
        self.samples: list[tuple[float, Sample]] = []
        self.started_at = 0.0  # time.perf_counter() at start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _take(self) -> None:
        self.samples.append((time.perf_counter() - self.started_at, read_sample(self.root)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def start(self) -> "HeatSampler":
        self.started_at = time.perf_counter()
        self._take()
        self._thread = threading.Thread(target=self._run, name="edgeship-heat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> "HeatSampler":
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()
        return self

    def __enter__(self) -> "HeatSampler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def at(self, t: float) -> Sample | None:
        """The last sample taken at or before ``t`` seconds into the run."""
        found = None
        for ts, s in self.samples:
            if ts > t:
                break
            found = s
        return found

    def summary(self) -> dict[str, Any]:
        """What the sensors said during the run, and the verdict; every figure measured in this run."""
        temps = [s.temp_c for _, s in self.samples if s.temp_c is not None]
        clocks = [(t, s.clock_khz) for t, s in self.samples if s.clock_khz is not None]
        flagged = sorted({f for _, s in self.samples if s.flags for f in s.flags.intersection(THROTTLE_FLAGS)})
        raws = [s.throttled_raw for _, s in self.samples if s.throttled_raw is not None]
        reasons: list[str] = []
        drop = 0.0
        peak = worst = 0  # kHz, set with drop
        if clocks:
            peak_so_far = clocks[0][1]
            for _, c in clocks:
                peak_so_far = max(peak_so_far, c)
                d = 1.0 - c / peak_so_far if peak_so_far else 0.0
                if d > drop:
                    drop, peak, worst = d, peak_so_far, c
            if drop > CLOCK_DROP:
                reasons.append(f"the CPU clock fell {drop:.0%} ({peak / 1000:.0f} -> {worst / 1000:.0f} MHz)")
        if flagged:
            reasons.append(f"the firmware reported throttling ({', '.join(flagged)})")
        elif len(raws) >= 2 and (raws[-1] >> 16 & ~raws[0] >> 16) & _THERMAL_BITS:
            reasons.append("the firmware throttled between two samples (its since-boot bits changed)")
        sensed = bool(clocks or raws)
        return {
            "samples": len(self.samples),
            "interval_s": self.interval_s,
            "source": next((s.source for _, s in self.samples if s.source), None),
            "temp_c": {"start": temps[0], "end": temps[-1], "max": max(temps)} if temps else None,
            "clock_khz": {"start": clocks[0][1], "min": min(c for _, c in clocks), "max": max(c for _, c in clocks),
                          "end": clocks[-1][1]} if clocks else None,
            "clock_drop": drop if clocks else None,
            "throttle_flags_seen": flagged if raws else None,
            "thermally_unstable": bool(reasons) if sensed or reasons else None,
            "reasons": reasons,
        }

    def series(self, t0: float, t1: float) -> dict[str, Any]:
        """Mean temperature and clock over the samples in [t0, t1) (for the FPS-over-time record)."""
        inside = [s for t, s in self.samples if t0 <= t < t1] or [s for s in [self.at(t1)] if s is not None]
        temps = [s.temp_c for s in inside if s.temp_c is not None]
        clocks = [s.clock_khz for s in inside if s.clock_khz is not None]
        return {"temp_c": sum(temps) / len(temps) if temps else None,
                "clock_khz": min(clocks) if clocks else None,
                "throttled": any(s.firmware_throttling for s in inside) if any(s.flags is not None for s in inside)
                else None}


__all__ = ["CLOCK_DROP", "HeatSampler"]
