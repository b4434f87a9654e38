"""Tar archives of bundles: written uncompressed, read back with every entry checked first.

>>> write_tar(root, ["edgeship.json", "model.onnx"], "m.tar")
>>> with tarfile.open("m.tar") as tar: extract_checked(tar, Path("m.tar"), staging)

Knows nothing of manifests: ``store.pack`` / ``store.unpack`` verify what goes in and comes out.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Iterable

from ..errors import UnsafeArchiveError


def check_member(member: tarfile.TarInfo, tar_path: Path) -> None:
    name = member.name
    p = Path(name)
    if name.startswith(("/", "\\")) or p.is_absolute():
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' has an absolute path; refusing to unpack")
    if ".." in p.parts:
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' contains '..'; refusing to unpack")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is a link; refusing to unpack")
    if member.isdev() or member.isfifo():
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is a device or fifo; refusing to unpack")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is not a regular file; refusing to unpack")



def extract_checked(tar: tarfile.TarFile, tar_path: Path, staging: Path) -> None:
    """Check every entry of ``tar``, then write the files into ``staging`` (an empty folder)."""
    members = tar.getmembers()
    for m in members:
        check_member(m, tar_path)
    for m in members:
        target = staging / m.name
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        with src, open(target, "wb") as f:
            shutil.copyfileobj(src, f)
        os.chmod(target, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)


def write_tar(root: Path, names: Iterable[str], tar_path: Path) -> Path:
    """Write ``names`` (files under ``root``) into an uncompressed PAX ``tar_path``, atomically."""
    tmp = tar_path.with_name(f".{tar_path.name}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                tar.add(root / name, arcname=name, recursive=False)
        os.replace(tmp, tar_path)
    finally:
        tmp.unlink(missing_ok=True)
    return tar_path
