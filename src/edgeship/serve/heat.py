"""Whether the device is too hot to start an LLM generation: a small seam, read at most once a second.

>>> gate = HeatGate(ThermalHeat("/", limits_for("rpi5")))
>>> await gate.reason()          # None, or why: "thermal status severe: 81.2 C (thermal_zone0 ...)"

``POST /v1/pipelines/describe`` asks before it hands a request to the LLM: when the device is hot
the answer is the vision result with ``"description": null`` and the reason, and the LLM is left
idle. Any callable returning None or a reason can stand in (``create_app(..., hot=...)``). The
default, ThermalHeat, is the device-health work's thermal status (monitor/thermal.py, Android's
levels against the target's limits, ``serve --target``): hot from SEVERE up, where the firmware
cuts the clock (a Pi from 80 C) or says it throttles now. A description is optional work that
heats the board; vision answers go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

HotCheck = Callable[[], Optional[str]]
CACHE_S = 1.0  # sensors are read at most this often (vcgencmd on a Pi takes milliseconds)

log = logging.getLogger("edgeship.serve")


class ThermalHeat:
    """Hot when the thermal status (monitor/thermal.py) is ``level`` or above (default SEVERE)."""

    def __init__(self, root: str = "/", limits=None, level=None):
        from ..monitor.thermal import ThermalStatus, ThermalTracker, limits_for

        self.root = root
        self.tracker = ThermalTracker(limits if limits is not None else limits_for(None, root))
        self.level = level if level is not None else ThermalStatus.SEVERE

    def __call__(self) -> str | None:
        from ..monitor.thermal import read_sample

        sample = read_sample(self.root)
        self.tracker.add(time.monotonic(), sample.temp_c)
        status = self.tracker.status(sample)
        if status < self.level:
            return None
        temp = self.tracker.latest
        where = f"{temp:.1f} C ({sample.source})" if temp is not None else "no temperature"
        why = ", the firmware throttles now" if sample.firmware_throttling else ""
        return (f"thermal status {status.name.lower()}: {where}{why}; descriptions resume below "
                f"{self.tracker.limits.severe_c:g} C ({self.tracker.limits.source})")


class HeatGate:
    """A HotCheck run off the event loop, its answer kept for CACHE_S; a failing check counts as not hot."""

    def __init__(self, check: HotCheck, cache_s: float = CACHE_S):
        self.check = check
        self.cache_s = cache_s
        self._at = float("-inf")
        self._reason: str | None = None

    async def reason(self) -> str | None:
        now = time.monotonic()
        if now - self._at > self.cache_s:
            try:
                self._reason = await asyncio.to_thread(self.check)
            except Exception as exc:  # noqa: BLE001  a broken sensor must not take descriptions down
                log.warning("heat check failed: %s", exc)
                self._reason = None
            self._at = time.monotonic()
        return self._reason


__all__ = ["HeatGate", "HotCheck", "ThermalHeat"]
