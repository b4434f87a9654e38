"""Tar archives of bundles: written uncompressed, read back in one bounded pass.

>>> write_tar(root, ["edgeship.json", "model.onnx"], "m.tar")
>>> extract_checked(Path("m.tar"), staging)          # UnsafeArchiveError / BundleError, nothing half-done

An archive comes from outside (a download, an update), so reading one is bounded before any byte
is written: each entry passes tarfile's ``data`` filter (no absolute paths, no ``..``, no links
out, no devices) and then edgeship's stricter rules (a bundle is flat: plain file names only, no
links, no sparse files); the entry count, the bytes the entries declare and the bytes actually
decompressed are capped (``UnpackLimits``), so neither a sparse member declaring 100 GB nor a
few KB of gzip that inflate to gigabytes can fill the disk; a truncated or corrupt archive is a
BundleError naming the archive, never a traceback.

Knows nothing of manifests: ``store.pack`` / ``store.unpack`` verify what goes in and comes out.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import BundleError, UnsafeArchiveError
from ..util import atomic_path
from .manifest import MAX_FILES, check_member_name

_GiB = 1 << 30


@dataclass(frozen=True)
class UnpackLimits:
    """What one archive may cost to unpack.

    max_members: entries (a bundle lists at most ``MAX_FILES`` files, plus its manifest).
    max_bytes: bytes all entries may hold together; also never more than the free space of the
      destination's file system.
    max_ratio: for compressed archives, decompressed bytes per compressed byte once past
      ``ratio_grace`` bytes. Model weights compress by 1.1-3x; a gzip bomb by about 1000x.
    """

    max_members: int = MAX_FILES + 2
    max_bytes: int = 64 * _GiB
    max_ratio: float = 100.0
    ratio_grace: int = 64 << 20


class _Bounded(io.RawIOBase):
    """A read-only stream over a decompressor that stops at ``limit`` bytes and at ``max_ratio``."""

    def __init__(self, inner, raw, limit: int, limits: UnpackLimits, where: Path):
        self.inner, self.raw, self.limit, self.limits, self.where = inner, raw, limit, limits, where
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.inner.readinto(b)
        self.read_bytes += n
        if self.read_bytes > self.limit:
            raise UnsafeArchiveError(f"{self.where}: decompresses to more than {self.limit:,} bytes; refusing to unpack")
        consumed = max(self.raw.tell(), 1)
        if self.read_bytes > self.limits.ratio_grace and self.read_bytes > consumed * self.limits.max_ratio:
            raise UnsafeArchiveError(
                f"{self.where}: {consumed:,} compressed bytes inflate to over {self.read_bytes:,} "
                f"(more than {self.limits.max_ratio:g}x, a decompression bomb); refusing to unpack"
            )
        return n


_MAX_HEADER = 1 << 20  # a pax or GNU long-name header is read into memory whole
_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
             tarfile.GNUTYPE_LONGLINK)


class _HeaderTooLarge(Exception):
    """Private: raised inside tarfile's header parsing, caught in this module and raised again as
    UnsafeArchiveError (a tarfile subclass cannot raise edgeship's errors through tarfile's own handlers)."""


class _Tar(tarfile.TarFile):
    """A stream-mode TarFile that also holds the raw file under its decompressor, closed with it."""

    _edgeship_raw: Any = None


class _TarInfo(tarfile.TarInfo):
    """tarfile reads an extended header into memory in one piece: cap its size first."""

    def _proc_member(self, tar):
        if self.type in _EXTENDED and self.size > _MAX_HEADER:
            raise _HeaderTooLarge(f"an extended header of {self.size:,} bytes (over {_MAX_HEADER:,}); "
                                  "refusing to unpack")
        return super()._proc_member(tar)


_MAGIC = {
    b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    b"BZh": lambda raw: bz2.BZ2File(raw, "rb"),
    b"\xfd7zXZ\x00": lambda raw: lzma.LZMAFile(raw, "rb"),
}


def _open(tar_path: Path, limit: int, limits: UnpackLimits) -> _Tar:
    """The archive as a stream-mode TarFile; a compressed one goes through a bounded decompressor."""
    raw = open(tar_path, "rb")
    try:
        head = raw.read(6)
        raw.seek(0)
        opener = next((o for magic, o in _MAGIC.items() if head.startswith(magic)), None)
        fileobj = raw
        if opener is not None:
            fileobj = io.BufferedReader(_Bounded(opener(raw), raw, limit, limits, tar_path), 1 << 16)
        tar = _Tar.open(fileobj=fileobj, mode="r|", tarinfo=_TarInfo)
    except BaseException:
        raw.close()
        raise
    tar._edgeship_raw = raw  # closed with the archive (see extract_checked)
    return tar


def check_member(member: tarfile.TarInfo, tar_path: Path, staging: Path) -> tarfile.TarInfo:
    """The entry as it may be written (tarfile's data filter, then a bundle's own rules), or UnsafeArchiveError."""
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
    if member.issparse():
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is a sparse file (it can declare far more bytes "
                                 "than the archive holds); refusing to unpack")
    try:
        member = tarfile.data_filter(member, str(staging))
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is unsafe ({exc}); refusing to unpack") from exc
    if member.isdir():
        return member
    if not member.isfile():
        raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is not a regular file; refusing to unpack")
    try:
        check_member_name(_plain(name), "entry")
    except ValueError as exc:
        raise UnsafeArchiveError(f"{tar_path}: {exc}; refusing to unpack") from None
    return member


def _plain(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def extract_checked(tar_path: Path, staging: Path, limits: UnpackLimits = UnpackLimits()) -> list[str]:
    """Write the files of archive ``tar_path`` into ``staging`` (an empty folder); returns their names.

    One pass over the archive (compressed ones are never seeked back), so what is read is bounded
    as it is read. On any error the caller removes ``staging``.
    """
    try:
        free = shutil.disk_usage(staging).free
    except OSError:
        free = limits.max_bytes
    budget = min(limits.max_bytes, free)
    try:
        tar = _open(tar_path, budget, limits)
    except _HeaderTooLarge as exc:
        raise UnsafeArchiveError(f"{tar_path}: {exc}") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise BundleError(f"{tar_path}: not a readable tar archive ({exc})") from exc
    names: list[str] = []
    total = 0
    try:
        with tar:
            count = 0
            for member in tar:
                count += 1
                if count > limits.max_members:
                    raise UnsafeArchiveError(f"{tar_path}: more than {limits.max_members} entries (a bundle holds "
                                             f"at most {MAX_FILES} files); refusing to unpack")
                member = check_member(member, tar_path, staging)
                if member.isdir():
                    if _plain(member.name).rstrip("/") not in ("", "."):
                        raise UnsafeArchiveError(f"{tar_path}: entry '{member.name}' is a folder; a bundle is flat")
                    continue
                name = _plain(member.name)
                if name in names:
                    raise UnsafeArchiveError(f"{tar_path}: entry '{name}' appears twice; refusing to unpack")
                total += member.size
                if total > budget:
                    why = f"the limit of {limits.max_bytes:,}" if budget == limits.max_bytes else \
                        f"the {free:,} bytes free in {staging.parent}"
                    raise UnsafeArchiveError(f"{tar_path}: entries declare over {total:,} bytes, more than {why}; "
                                             "refusing to unpack")
                target = staging / name
                src = tar.extractfile(member)
                if src is None:  # check_member let only regular files through
                    raise UnsafeArchiveError(f"{tar_path}: entry '{name}' is not a regular file")
                with open(target, "xb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
                    if f.tell() != member.size:
                        raise BundleError(f"{tar_path}: entry '{name}' is truncated; copy the archive again")
                os.chmod(target, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
                names.append(name)
    except _HeaderTooLarge as exc:
        raise UnsafeArchiveError(f"{tar_path}: {exc}") from None
    except BundleError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise BundleError(f"{tar_path}: the archive is truncated or corrupt ({exc}); copy it again") from exc
    except OSError as exc:
        raise BundleError(f"{tar_path}: cannot unpack ({exc})") from exc
    finally:
        tar._edgeship_raw.close()
    if not names:
        raise BundleError(f"{tar_path}: the archive holds no files")
    return names


def write_tar(root: Path, names: Iterable[str], tar_path: Path) -> Path:
    """Write ``names`` (regular files under ``root``) into an uncompressed PAX ``tar_path``, atomically."""
    with atomic_path(tar_path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            check_member_name(name, "pack")
            path = root / name
            if not stat.S_ISREG(os.lstat(path).st_mode):
                raise UnsafeArchiveError(f"{path}: not a regular file (a link or a device); refusing to pack it")
            tar.add(path, arcname=name, recursive=False)
    return tar_path
