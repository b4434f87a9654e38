"""Resident memory of this process: now, and the peak since the last reset (Linux ``/proc``).

>>> reset_peak(); run(); peak_rss_bytes()

OS access is a parameter (``proc``) so tests can point it at a fake tree; a missing file or field
is "no sample" (None), never an exception and never a made-up number.
"""

from __future__ import annotations

import os
from pathlib import Path


def _status_kb(field: str, proc: str | os.PathLike) -> int | None:
    try:
        text = (Path(proc) / "self" / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            parts = line.split()
            try:
                return int(parts[1]) * 1024
            except (IndexError, ValueError):
                return None
    return None


def rss_bytes(proc: str | os.PathLike = "/proc") -> int | None:
    """Resident set size now (VmRSS), or None where /proc is not available."""
    value = _status_kb("VmRSS", proc)
    if value is None:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except Exception:  # psutil missing or unsupported platform: no sample
            return None
    return value


def peak_rss_bytes(proc: str | os.PathLike = "/proc") -> int | None:
    """Peak resident set size (VmHWM) since the process started or since ``reset_peak()``."""
    return _status_kb("VmHWM", proc)


def reset_peak(proc: str | os.PathLike = "/proc") -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False where unsupported."""
    try:
        with open(Path(proc) / "self" / "clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


__all__ = ["peak_rss_bytes", "reset_peak", "rss_bytes"]
