"""Small shared helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a file atomically (temp file, fsync, rename) so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def console(stderr: bool = False):
    """A rich Console; wide enough for tables when output goes to a file or a pipe (CI logs, make)."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def trim_heap() -> bool:
    """Give the memory the C heap holds free back to the system (glibc's ``malloc_trim``); False elsewhere.

    After a burst of temporary allocations (a model's load, the optimizer's work), glibc keeps the freed
    pages for reuse; a server that will not need them again gives them back once.
    """
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def rss() -> int:
    """This process's resident set size in bytes."""
    import psutil

    return psutil.Process().memory_info().rss
