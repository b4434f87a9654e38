"""Targets: the device catalog (the article's tables as data), this host's probe, the presets
that turn a device into runtime settings, and ``fit`` (will a bundle fit a target, predicted).

>>> from edgeship.targets import device, preset, probe_host
>>> device("rpi5").cpu_gflops                 # a catalog figure, never a measurement
13.0
>>> preset("host").runtime.intra_op_threads   # from a probe of this machine
2

``fit`` and ``flops`` are imported from their modules (they load ONNX Runtime / onnx when used).
"""

from .catalog import (
    CATALOG,
    CATALOG_SOURCE,
    QUANT_FORMATS,
    VENDOR_SOURCE,
    Device,
    QuantFormat,
    QuantTarget,
    device,
    device_ids,
)
from .presets import HOST, PRESETS, TargetPreset, host_preset, preset, target_names
from .probe import HostInfo, host_device, probe_host

__all__ = [
    "CATALOG", "CATALOG_SOURCE", "HOST", "PRESETS", "QUANT_FORMATS", "VENDOR_SOURCE", "Device", "HostInfo", "QuantFormat",
    "QuantTarget", "TargetPreset", "device", "device_ids", "host_device", "host_preset", "preset", "probe_host",
    "target_names",
]
