"""Summaries and output shared by the LLM commands: spread over runs, atomic JSON, the environment.

>>> Spread.of([76.1, 74.9, 77.3]).text(".1f")
'76.1 ± 1.0 (74.9-77.3)'
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence


@dataclass(frozen=True)
class Spread:
    """Mean, population standard deviation, min and max of repeated measurements (NaNs dropped)."""

    mean: float
    std: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> "Spread":
        xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not xs:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
        return cls(mean, std, min(xs), max(xs), len(xs))

    def text(self, fmt: str = ".1f") -> str:
        if not self.n:
            return "n/a"
        if self.n == 1:
            return format(self.mean, fmt)
        return f"{self.mean:{fmt}} ± {self.std:{fmt}} ({self.min:{fmt}}-{self.max:{fmt}})"

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _clean(obj: Any) -> Any:
    """JSON has no NaN: measurements that could not be taken become null."""
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Spread):
        return obj.to_dict()
    return obj


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as JSON atomically (temp file, fsync, rename); NaN becomes null."""
    from ..util import write_text_atomic

    return write_text_atomic(path, json.dumps(_clean(data), indent=2, default=str) + "\n")


def llm_environment(threads: int | None) -> dict[str, Any]:
    """``edgeship bench``'s environment record, plus the versions of the GGUF stack."""
    from ..bench.env import environment, versions

    env = environment(threads=threads)
    env.setdefault("versions", {}).update(versions(["llama-cpp-python", "gguf"]))
    try:
        import llama_cpp

        info = llama_cpp.llama_print_system_info()
        env["llama_cpp_system_info"] = info.decode() if isinstance(info, bytes) else str(info)
    except Exception:  # optional detail: an older binding without the call
        pass
    return env


def describe_environment(env: dict[str, Any]) -> str:
    """One caption line: CPU, cores, threads, llama-cpp-python version and date."""
    v = env.get("versions", {})
    parts = [str(env.get("cpu", "?")), f"{env.get('cores_logical')} cores"]
    if env.get("threads"):
        parts.append(f"{env['threads']} threads")
    if "llama-cpp-python" in v:
        parts.append(f"llama-cpp-python {v['llama-cpp-python']}")
    parts.append(str(env.get("date", ""))[:10])
    return ", ".join(parts)


def mb(n: int | float | None) -> float | None:
    return None if n is None else n / 2**20


__all__ = ["Spread", "describe_environment", "llm_environment", "mb", "write_json"]
