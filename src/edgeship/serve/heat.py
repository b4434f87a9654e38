"""Whether the device is too hot to start an LLM generation: a small seam, read at most once a second.

>>> gate = HeatGate(SensorHeat("/", max_cpu_temp_c=80.0))
>>> await gate.reason()          # None, or why: "CPU temperature 83.2 C (thermal_zone0 (cpu-thermal)) ..."

``POST /v1/pipelines/describe`` asks before it hands a request to the LLM: when the device is hot
the answer is the vision result with ``"description": null`` and the reason, and the LLM is left
idle. Any callable returning None or a reason can stand in (``create_app(..., hot=...)``); the
default reads the CPU temperature and the firmware's throttle flags through monitor/sensors.py
(the same reading readiness uses), hot from ``--max-temp`` up or while the firmware throttles.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional

HotCheck = Callable[[], Optional[str]]
CACHE_S = 1.0  # sensors are read at most this often (vcgencmd on a Pi takes milliseconds)


class SensorHeat:
    """Hot when the CPU temperature is at or above ``max_cpu_temp_c``, or the firmware throttles now."""

    def __init__(self, root: str = "/", max_cpu_temp_c: float = 80.0):
        self.root = root
        self.max_cpu_temp_c = max_cpu_temp_c

    def __call__(self) -> str | None:
        from ..monitor import sensors

        temp = sensors.cpu_temperature(self.root)
        if temp is not None and temp.celsius >= self.max_cpu_temp_c:
            return (f"CPU temperature {temp.celsius:.1f} C ({temp.source}) is at or above the {self.max_cpu_temp_c:g} C "
                    "limit (serve --max-temp)")
        if sensors.throttle_status(self.root).throttled_now:
            return "the firmware reports throttling now (vcgencmd get_throttled)"
        return None


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
                import logging

                logging.getLogger("edgeship.serve").warning("heat check failed: %s", exc)
                self._reason = None
            self._at = time.monotonic()
        return self._reason


__all__ = ["HeatGate", "HotCheck", "SensorHeat"]
