"""System sensors for the device side: temperature, throttling, energy, system gauges.

>>> from edgeship.monitor import cpu_temperature, EnergyMeter
>>> cpu_temperature()          # None where the machine has no CPU temperature sensor

Standard library only (psutil for the gauges): safe on a Raspberry Pi without torch.
"""

from .energy import EnergyMeter, EnergyReading, power_gauges, power_sensors, energy_counters
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

__all__ = [
    "EnergyMeter",
    "EnergyReading",
    "PiThrottle",
    "SystemGauges",
    "TempReading",
    "ThrottleStatus",
    "cpu_temperature",
    "decode_throttled",
    "energy_counters",
    "power_gauges",
    "power_sensors",
    "system_gauges",
    "thermal_zones",
    "throttle_status",
]
