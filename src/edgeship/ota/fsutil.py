"""Durable file operations: temp name, fsync, rename, then fsync the folder so the rename survives power loss.

>>> write_bytes_durable(path, data)          # a reader sees the old file or the new one, never half
>>> replace_durable(tmp, final)
"""

from __future__ import annotations

import os
from pathlib import Path

from . import faults


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durable(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    faults.point()
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)
    faults.point()


def write_bytes_durable(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically and durably; the temp file carries this process's pid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            faults.point()
            f.flush()
            os.fsync(f.fileno())
        replace_durable(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_durable(path: str | os.PathLike, text: str, mode: int = 0o644) -> Path:
    return write_bytes_durable(path, text.encode("utf-8"), mode)


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")
