"""The environment a measurement was taken in: recorded with every benchmark's JSON."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata

_PACKAGES = ["edgeship", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "openvino", "nncf", "ai-edge-litert",
             "tensorrt", "torch", "torchvision", "pillow", "llama-cpp-python"]


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(packages: list[str] = _PACKAGES) -> dict[str, str]:
    """Installed versions, read from package metadata (nothing is imported)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment(threads: int | None = None) -> dict:
    import psutil

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "host": platform.node(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads,
        "ram_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "versions": versions(),
    }


def describe(env: dict) -> str:
    """One line for table captions: 'AMD EPYC 7B13, 2 cores, 2 threads, onnxruntime 1.32.0, 2026-11-26'."""
    v = env.get("versions", {})
    parts = [env.get("cpu", "?"), f"{env.get('cores_logical')} cores"]
    if env.get("threads"):
        parts.append(f"{env['threads']} threads")
    if "onnxruntime" in v:
        parts.append(f"onnxruntime {v['onnxruntime']}")
    parts.append(env.get("date", "")[:10])
    return ", ".join(parts)
