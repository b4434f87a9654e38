"""Target presets: a catalog device turned into runtime settings and an INT8 format.

>>> from edgeship.targets import preset
>>> p = preset("rpi5")
>>> p.runtime.intra_op_threads, p.quant.activation, p.quant.weight
(4, 's8', 's8')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Union

from ..errors import InputError
from ..runtime.session import RuntimeConfig
from .catalog import CATALOG, QUANT_FORMATS, Device, QuantFormat
from .probe import host_device, probe_host


@dataclass(frozen=True)
class TargetPreset:
    """A device turned into runtime settings and an INT8 format; ``quant`` None means keep float.

    >>> preset("jetson-orin-nx").runtime.providers[0]
    'TensorrtExecutionProvider'
    """

    name: str
    device: Device
    runtime: RuntimeConfig
    quant: Union[QuantFormat, None]
    why: str


def _preset_for(dev: Device) -> TargetPreset:
    # Threads = big cores: little cores (and SMT siblings) slow the whole op down to their pace.
    runtime = RuntimeConfig(intra_op_threads=dev.big_cores, inter_op_threads=1, execution_mode="sequential",
                            graph_optimization="all", providers=dev.providers)
    quant = QUANT_FORMATS.get(dev.quant_target) if dev.quant_target else None
    why = quant.why if quant else " ".join(dev.notes)
    return TargetPreset(dev.id, dev, runtime, quant, why)


PRESETS: dict[str, TargetPreset] = {dev.id: _preset_for(dev) for dev in CATALOG.values()}
HOST = "host"  # resolved at call time by host_preset(), from a probe of this machine


def target_names() -> list[str]:
    """Every name ``preset()`` accepts: the catalog ids plus ``host``."""
    return [*PRESETS, HOST]


def preset(name: str) -> TargetPreset:
    """The target preset ``name`` (a catalog id, or ``host`` for this machine).

    >>> preset("rpi4").quant.activation
    'u8'
    """
    if name == HOST:
        return host_preset()
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown target {name!r}; valid targets: {', '.join(target_names())}") from None


def host_preset(root: str = "/") -> TargetPreset:
    """The preset fitting this machine: its catalog device when the board is recognised, else one
    built from the probe (threads = physical cores, the quant format its ISA runs fastest,
    accelerated ONNX Runtime providers that are installed first).

    >>> host_preset().runtime.intra_op_threads  # doctest: +SKIP
    2
    """
    info = probe_host(root)
    dev = host_device(info)
    if dev is not None:
        # A recognised board keeps its catalog preset; providers it lacks are skipped at session time.
        return dataclasses.replace(PRESETS[dev.id], name=HOST)
    generic = Device(
        id=HOST, name=f"This host ({info.cpu_model})", cpu=info.cpu_model, cores=info.logical_cores,
        # A container may pin us to fewer CPUs than the machine has: more threads would only contend.
        big_cores=min(info.big_cores, info.usable_cpus or info.big_cores), clock_ghz=None, ram_gb=None, ram_note="", accelerator=None,
        cpu_gflops=None, accel_gflops=None, accel_tops=None, power_w=None, price_usd=None,
        use_case="the machine edgeship runs on", quant_target=info.quant_target,
        providers=info.preferred_providers(), source="probe of this host",
    )
    return dataclasses.replace(_preset_for(generic), name=HOST)
