"""Work a device should do once, not on every start: hashing big files and unpacking archives.

>>> file_sha256("model.gguf")           # hashes once; later calls cost one stat() while unchanged
>>> cache_dir() / "bundles"             # where store.unpacked() keeps archives it unpacked

The sha256 of a file is remembered with its size, mtime (ns), inode and device; a file whose four
are unchanged is taken as unchanged. That is what ``make`` and ``rsync`` trust too, and it is a
guard against damage in transfer, not against someone who can write the file and restore its
mtime: only signed bundles (``edgeship ota``) defend against tampering. ``EDGESHIP_VERIFY=full``
re-hashes every time.

The cache lives in ``$EDGESHIP_CACHE``, else ``$XDG_CACHE_HOME/edgeship``, else
``~/.cache/edgeship``; where it cannot be written, everything still works, uncached.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Union

from ..util import write_text_atomic

PathLike = Union[str, os.PathLike]
_INDEX = "sha256-index.json"
_MAX_ENTRIES = 4096  # the index stays small; the oldest entries go first
_lock = threading.Lock()


def cache_dir() -> Path:
    if os.environ.get("EDGESHIP_CACHE"):
        return Path(os.environ["EDGESHIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgeship"


def _hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _key(path: Path) -> tuple[str, list[int]]:
    st = path.stat()
    return str(path.resolve()), [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


def _load_index(where: Path) -> dict:
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def file_sha256(path: PathLike) -> str:
    """The sha256 of ``path``, from the cache while its size, mtime, inode and device are unchanged."""
    path = Path(path)
    if os.environ.get("EDGESHIP_VERIFY") == "full":
        return _hash(path)
    name, stamp = _key(path)
    where = cache_dir() / _INDEX
    with _lock:
        entry = _load_index(where).get(name)
    if isinstance(entry, dict) and entry.get("stat") == stamp and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    digest = _hash(path)
    if _key(path)[1] != stamp:  # changed while we read it: do not remember a digest of a moving file
        return digest
    with _lock:
        index = _load_index(where)
        index.pop(name, None)
        index[name] = {"stat": stamp, "sha256": digest}
        while len(index) > _MAX_ENTRIES:
            index.pop(next(iter(index)))
        try:
            write_text_atomic(where, json.dumps(index))
        except OSError:  # a read-only or full cache: the digest is still right
            pass
    return digest
