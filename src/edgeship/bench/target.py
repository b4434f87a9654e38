"""A device preset's runtime settings fitted to the host that runs them, saying what changed.

>>> fitted = fit_to_host("jetson-orin-nx", preset("jetson-orin-nx").runtime, threads=None)
>>> fitted.runtime.intra_op_threads, fitted.notes[0]            # on a 2-core host without a GPU
(2, 'jetson-orin-nx asks for 8 threads; this host has 2 usable cores: running 2')

A preset describes the device (8 big cores and TensorRT on a Jetson Orin NX). Run as is on a smaller
host, 8 threads on 2 cores oversubscribe them (measured 24x slower) and the GPU providers are
skipped for the CPU: the result would be neither the device's figure nor this host's best. So the
preset's threads are capped to the cores this process may use, each preferred provider the host
lacks is named, and ``record`` says what actually ran. Threads the user gave are kept (a deliberate
oversubscription is theirs to measure), with a note.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Union

from ..runtime.config import RuntimeConfig


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: a container's or taskset's limit), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class FittedRuntime:
    runtime: RuntimeConfig
    notes: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)  # for the JSON: asked, used, and why


def fit_to_host(target: Union[str, None], runtime: RuntimeConfig, threads: Union[int, None]) -> FittedRuntime:
    """``runtime`` (a preset's, or the default) with ``threads`` (the user's) applied and fitted to this host."""
    cores = usable_cores()
    asked = threads if threads is not None else runtime.intra_op_threads
    used = asked
    notes = []
    who = target or "the default settings"
    if asked is not None and asked > cores:
        if threads is None:  # the preset's device count, not a choice made for this host
            used = cores
            notes.append(f"{who} asks for {asked} threads; this host has {cores} usable cores: running {used}")
        else:
            notes.append(f"--threads {asked} is more than this host's {cores} usable cores: kept as asked, "
                         f"expect oversubscribed (slower) runs")
    preferred = [p for p in runtime.providers if p != "CPUExecutionProvider"]
    missing: list[str] = []
    if preferred and runtime.provider is None:
        from ..runtime.backends.ort_options import available_providers

        have = set(available_providers())
        missing = [p for p in preferred if p not in have]
        if missing:
            left = [p for p in preferred if p in have] or ["CPUExecutionProvider"]
            notes.append(f"{who} prefers {', '.join(missing)}, not available in this host's ONNX Runtime: "
                         f"running on {', '.join(left)}")
    record = {"target": target, "usable_cores": cores, "threads_asked": asked, "threads_used": used,
              "providers_preferred": list(runtime.providers), "providers_unavailable": missing}
    return FittedRuntime(runtime.replace(intra_op_threads=used), notes, record)
