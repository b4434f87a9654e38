"""System sensors for the device side: temperature, throttling, energy, system gauges; thermal
status in Android's levels and the thermal governor.

>>> from edgeship.monitor import cpu_temperature, EnergyMeter, limits_for, ThermalTracker
>>> cpu_temperature()          # None where the machine has no CPU temperature sensor

Standard library only (psutil for the gauges): safe on a Raspberry Pi without torch.
"""

import importlib
from typing import Any

# Imported when first used: `edgeship serve` starts without the governor and energy modules
# unless it runs them.
_EXPORTS = {
    **dict.fromkeys(("EnergyMeter", "EnergyReading", "energy_counters", "power_gauges", "power_sensors"), ".energy"),
    **dict.fromkeys(("Action", "Governor", "GovernorConfig", "GovernorState", "Step"), ".governor"),
    **dict.fromkeys(("PiThrottle", "SystemGauges", "TempReading", "ThrottleStatus", "cpu_temperature",
                     "decode_throttled", "system_gauges", "thermal_zones", "throttle_status"), ".sensors"),
    **dict.fromkeys(("Sample", "ThermalLimits", "ThermalStatus", "ThermalTracker", "limits_for", "read_sample"),
                    ".thermal"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgeship.monitor' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)


def __dir__() -> list[str]:
    return __all__
