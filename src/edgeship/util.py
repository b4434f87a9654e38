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


def rss() -> int:
    """This process's resident set size in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


def json_depth(text: str | bytes, limit: int | None = None, block: int = 1 << 18) -> int:
    """How deeply arrays and objects nest in JSON ``text``, found without parsing it (no recursion).

    >>> json_depth('{"a": [[1], "[[[["]}')
    3

    Meant to run before ``json.loads``, which recurses once per level: a body of ten thousand '['
    ends in RecursionError. Brackets inside strings do not count (escaped quotes are honoured).
    With ``limit``, scanning stops as soon as the depth passes it (the result is then > limit).
    Linear time, in blocks of ``block`` bytes with numpy, so memory stays bounded: about 30 ms
    for a 10 MB array of arrays; text with fewer brackets than ``limit`` is not scanned at all.
    """
    import numpy as np

    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    opening = raw.count(b"[") + raw.count(b"{")
    if limit is not None and opening <= limit:
        return opening  # an upper bound, enough to say "within the limit" without scanning
    depth, in_string, backslashes, deepest = 0, 0, 0, 0
    for start in range(0, len(raw), block):
        a = np.frombuffer(raw, dtype=np.uint8, count=min(block, len(raw) - start), offset=start)
        step = (a == 0x5B).view(np.int8) + (a == 0x7B).view(np.int8) - (a == 0x5D).view(np.int8) \
            - (a == 0x7D).view(np.int8)
        quote = a == 0x22
        is_bs = a == 0x5C
        tail = 0
        if backslashes or is_bs.any():
            idx = np.arange(a.size, dtype=np.int32)
            # Index of the last non-backslash at or before each position (-1: none in this block).
            last_other = np.maximum.accumulate(np.where(is_bs, -1, idx))
            before = np.empty(a.size, dtype=np.int32)  # backslashes right before each position
            before[0] = backslashes
            before[1:] = idx[:-1] - last_other[:-1] + np.where(last_other[:-1] < 0, backslashes, 0)
            quote &= (before & 1) == 0  # an escaped quote does not end a string
            tail = a.size - 1 - int(last_other[-1]) + (backslashes if last_other[-1] < 0 else 0)
        if in_string or quote.any():
            inside = (np.cumsum(quote, dtype=np.int32) + in_string) & 1
            step[inside.astype(bool)] = 0
            in_string = int(inside[-1])
        running = np.cumsum(step, dtype=np.int32) + depth
        deepest = max(deepest, int(running.max()))
        if limit is not None and deepest > limit:
            return deepest
        depth, backslashes = int(running[-1]), tail
    return deepest
