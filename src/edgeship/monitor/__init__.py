"""System sensors for the device side: temperature, throttling, energy, system gauges; thermal
status in Android's levels and the thermal governor.

>>> from edgeship.monitor import cpu_temperature, EnergyMeter, limits_for, ThermalTracker
>>> cpu_temperature()          # None where the machine has no CPU temperature sensor

Standard library only (psutil for the gauges): safe on a Raspberry Pi without torch.
"""

from .energy import EnergyMeter, EnergyReading, energy_counters, power_gauges, power_sensors
from .governor import Action, Governor, GovernorConfig, GovernorState, Step
from .sensors import (
    PiThrottle,
    SystemGauges,
    TempReading,
    ThrottleStatus,
    cpu_temperature,
    decode_throttled,
    system_gauges,
    thermal_zones,
    throttle_status,
)
from .thermal import Sample, ThermalLimits, ThermalStatus, ThermalTracker, limits_for, read_sample

__all__ = [
    "Action",
    "EnergyMeter",
    "EnergyReading",
    "Governor",
    "GovernorConfig",
    "GovernorState",
    "PiThrottle",
    "Sample",
    "Step",
    "SystemGauges",
    "TempReading",
    "ThermalLimits",
    "ThermalStatus",
    "ThermalTracker",
    "ThrottleStatus",
    "cpu_temperature",
    "decode_throttled",
    "energy_counters",
    "limits_for",
    "power_gauges",
    "power_sensors",
    "read_sample",
    "system_gauges",
    "thermal_zones",
    "throttle_status",
]
