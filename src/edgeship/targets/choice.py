"""This host's class, and the runtime choice ``edgeship tune`` recorded for it in a bundle.

>>> host_class()                         # what a recorded choice is keyed by
'cpu: AMD EPYC (x86_64; avx2, fma)'
>>> config, note = recorded_runtime(bundle)
>>> note
'runtime choice for this host (cpu: AMD EPYC ...): openvino, variant openvino-int8, 2 threads (tuned 2026-12-04)'

A choice is measured on one class of host: the CPU model and the ISA features that pick kernels
(a different CPU, or the same model under a VM that hides AVX-512, may rank engines differently),
or the GPU's name for GPU engines. A bundle tuned elsewhere keeps its choices for those hosts; here
they are not applied, and the note says which hosts they were made for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Union

from ..runtime.config import RuntimeConfig
from .probe import probe_host

# The features that decide which kernels an engine uses (the rest of /proc/cpuinfo does not).
ISA = ("neon", "dotprod", "i8mm", "sve", "fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
       "amx", "amx_bf16")
GPU_ENGINES = {"tensorrt"}
GPU_PROVIDERS = {"cuda", "tensorrt"}


def gpu_names(root: Union[str, Path] = "/") -> list[str]:
    """NVIDIA GPU models from the driver's /proc files (empty without a driver); nothing is imported."""
    out = []
    for info in sorted(Path(root, "proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model":
                    out.append(value.strip())
        except OSError:
            continue
    return out


def host_class(root: Union[str, Path] = "/", gpu: bool = False) -> str:
    """``cpu: MODEL (arch; isa...)``, or ``gpu: NAME`` for a choice that runs on the GPU."""
    if gpu:
        names = gpu_names(root)
        return f"gpu: {names[0] if names else 'unknown NVIDIA GPU'}"
    info = probe_host(root)
    isa = ", ".join(f for f in info.features if f in ISA) or "no SIMD flags read"
    return f"cpu: {info.cpu_model} ({info.arch}; {isa})"


def is_gpu(backend: str, provider: Union[str, None]) -> bool:
    return backend in GPU_ENGINES or (provider or "") in GPU_PROVIDERS


class Recorded(NamedTuple):
    config: Union[RuntimeConfig, None]  # None: nothing applies here
    note: str  # what was applied, or why nothing was ("" when the bundle has no choices)
    choice: Any = None  # the RuntimeChoice applied (its spinning setting is the server's)


def recorded_runtime(bundle, base: Union[RuntimeConfig, None] = None, root: Union[str, Path] = "/") -> Recorded:
    """The config ``edgeship tune`` recorded for this host, over ``base``; (None, why) when there is none."""
    runtimes = bundle.manifest.runtimes
    if not runtimes:
        return Recorded(None, "")
    here = {host_class(root), host_class(root, gpu=True) if gpu_names(root) else None}
    for key, choice in runtimes.items():
        if key in here:
            base = base or RuntimeConfig()
            config = base.with_changes(
                backend=choice.backend, variant=choice.variant, provider=choice.provider,
                intra_op_threads=choice.threads if base.intra_op_threads is None else base.intra_op_threads,
                options=tuple(sorted(choice.options.items())))
            what = ", ".join(x for x in (choice.backend, choice.provider and f"provider {choice.provider}",
                                         choice.variant and f"variant {choice.variant}",
                                         f"{choice.threads} threads" if choice.threads else None) if x)
            return Recorded(config, f"runtime choice for this host ({key}): {what} (tuned {choice.created[:10]})", choice)
    others = "; ".join(runtimes)
    return Recorded(None, f"the bundle's runtime choices were made for other hosts ({others}), not for this one "
                  f"({host_class(root)}): not applied; run `edgeship tune` here")
