"""Memory: this process's (now, peak, by kind), the device's, and a plan of where a server's goes.

>>> plan = MemoryPlan((MemoryPart("process before models", 97 << 20, Source.MEASURED),
...                    MemoryPart("mobilenet: weights", 10 << 20, Source.FILE, note="mapped"),
...                    MemoryPart("mobilenet: batch of 8", 9 << 20, Source.PREDICTED, When.PEAK)))
>>> plan.resident_bytes, plan.peak_bytes            # held from the start; plus what work in flight adds
>>> plan.overrun(256 << 20)                         # None, or a message naming the biggest parts
>>> usage().anon_bytes, peak_rss_bytes(), reset_peak(), physical_memory_bytes()

Every part says where its figure comes from (``Source``): resident growth measured in this
process, a file's size, arithmetic on known sizes, or a prediction. OS access is a parameter
(``proc``, ``sys_root``) so tests can point it at a fake tree; a missing file or field is "no
sample" (None), never an exception and never a made-up number.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Union

MB = 1 << 20
PathLike = Union[str, os.PathLike]


class Source(str, enum.Enum):
    MEASURED = "measured"  # resident growth measured in this process
    FILE = "file size"  # a file's size on disk (weights the process maps)
    COMPUTED = "computed"  # arithmetic on known sizes (a KV cache from n_ctx and the model's dims)
    PREDICTED = "predicted"  # an estimate from measured parts, labelled so


class When(str, enum.Enum):
    RESIDENT = "resident"  # held from the start on
    PEAK = "peak"  # held only while work is in flight (a full batch, decodes at the pixel limit)


@dataclass(frozen=True)
class MemoryPart:
    name: str
    bytes: int
    source: Source
    when: When = When.RESIDENT
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": int(self.bytes), "mb": round(self.bytes / MB, 1),
                "source": self.source.value, "when": self.when.value, "note": self.note}


@dataclass(frozen=True)
class MemoryPlan:
    """Named parts; ``resident_bytes`` is what is held from the start, ``peak_bytes`` adds the work in flight."""

    parts: tuple[MemoryPart, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def resident_bytes(self) -> int:
        return sum(p.bytes for p in self.parts if p.when is When.RESIDENT)

    @property
    def peak_bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    def plus(self, parts: Iterable[MemoryPart], *notes: str) -> "MemoryPlan":
        return MemoryPlan((*self.parts, *parts), (*self.notes, *notes))

    def overrun(self, budget_bytes: int, fixes: dict[str, str] | None = None) -> Union[str, None]:
        """None when the planned peak fits ``budget_bytes``; else what does not fit and what to change.

        ``fixes``: part name prefix -> what a user can change to shrink it (a flag), quoted in the
        message for the biggest parts.
        """
        if self.peak_bytes <= budget_bytes:
            return None
        over = self.peak_bytes - budget_bytes
        biggest = sorted(self.parts, key=lambda p: p.bytes, reverse=True)[:4]
        lines = [f"the planned peak memory, {self.peak_bytes / MB:.0f} MB, does not fit the memory budget of "
                 f"{budget_bytes / MB:.0f} MB ({over / MB:.0f} MB over). The biggest parts:"]
        for p in biggest:
            fix = next((f for prefix, f in (fixes or {}).items() if p.name.startswith(prefix) or prefix in p.name), "")
            lines.append(f"  {p.name}: {p.bytes / MB:.0f} MB ({p.source.value}{', ' + p.note if p.note else ''})"
                         + (f" -> {fix}" if fix else ""))
        lines.append("Raise --memory-budget if the device has the memory, or shrink the parts above.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"parts": [p.to_dict() for p in self.parts], "resident_bytes": self.resident_bytes,
                "peak_bytes": self.peak_bytes, "notes": list(self.notes)}


# --- this process ---------------------------------------------------------------------------------


class Usage(NamedTuple):
    """Resident memory now, by kind (Linux /proc/self/status): anonymous (heap) and file-backed (mapped)."""

    rss_bytes: int
    anon_bytes: int
    file_bytes: int


def _status(proc: PathLike, pid: Union[int, str] = "self") -> dict[str, int]:
    try:
        text = (Path(proc) / str(pid) / "status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


def usage(proc: PathLike = "/proc", pid: Union[int, str] = "self") -> Union[Usage, None]:
    """RSS split into anonymous and file-backed pages, or None where /proc does not say."""
    s = _status(proc, pid)
    if "VmRSS" not in s:
        return None
    return Usage(s["VmRSS"], s.get("RssAnon", s["VmRSS"]), s.get("RssFile", 0))


def rss_bytes(proc: PathLike = "/proc") -> Union[int, None]:
    """Resident set size now (VmRSS), or None where neither /proc nor psutil can say."""
    value = _status(proc).get("VmRSS")
    if value is None:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except Exception:  # psutil missing or unsupported platform: no sample
            return None
    return value


def peak_rss_bytes(proc: PathLike = "/proc", pid: Union[int, str] = "self") -> Union[int, None]:
    """Peak resident set size (VmHWM) of this process or ``pid`` since it started or since ``reset_peak()``."""
    return _status(proc, pid).get("VmHWM")


def reset_peak(proc: PathLike = "/proc", pid: Union[int, str] = "self") -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False where unsupported."""
    try:
        with open(Path(proc) / str(pid) / "clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- the device --------------------------------------------------------------------------------------


def _read_int(path: Path) -> Union[int, None]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 says "max" for no limit


def cgroup_limit_bytes(proc: PathLike = "/proc", sys_root: PathLike = "/sys") -> Union[int, None]:
    """The memory limit of this process's cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), if any."""
    try:
        lines = (Path(proc) / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path(sys_root) / "fs" / "cgroup"
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if controllers == "":  # v2
            value = _read_int(root / rel / "memory.max")
        elif "memory" in controllers.split(","):  # v1
            value = _read_int(root / "memory" / rel / "memory.limit_in_bytes")
        else:
            continue
        if value is not None and value < 1 << 60:  # v1 says "no limit" with a huge number
            return value
    return None


def physical_memory_bytes(proc: PathLike = "/proc", sys_root: PathLike = "/sys") -> Union[int, None]:
    """The RAM this process can have: MemTotal, or its cgroup's limit where that is lower."""
    total = None
    try:
        for line in (Path(proc) / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        total = None
    limit = cgroup_limit_bytes(proc, sys_root)
    if total is None:
        return limit
    return min(total, limit) if limit else total


__all__ = [
    "MB", "MemoryPart", "MemoryPlan", "Source", "Usage", "When", "cgroup_limit_bytes", "peak_rss_bytes",
    "physical_memory_bytes", "reset_peak", "rss_bytes", "usage",
]
