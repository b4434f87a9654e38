"""TensorRT engines and timing caches on disk, keyed by what built them; a stale one is never loaded.

>>> key = EngineKey(model_sha256="ab12...", trt_version="11.4.0", compute_capability="9.0",
...                 precision="fp16", profile=((1, 1, 32),))
>>> cache = EngineCache("~/.cache/edgeship/tensorrt")
>>> cache.load(key)                     # engine bytes, or None (and why in cache.last_miss)
>>> cache.store(key, serialized_engine)

A serialized engine runs only on the TensorRT version and GPU architecture that built it, and
only means the model it was built from. Each engine file starts with its full key (a JSON header),
and ``load`` compares every field of it with the key asked for: a file for another TensorRT
version, another compute capability, another model digest or precision is refused, said so in
``last_miss``, and rebuilt by the backend (the stale file is replaced). The file name is a digest
of the key, so two hosts sharing one cache folder never overwrite each other's engines.

The timing cache (kernel timings, reused across models) is keyed by TensorRT version and
compute capability only.

Pure Python: testable without a GPU or tensorrt installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

MAGIC = b"EDGESHIP-TRT-ENGINE\n"


@dataclass(frozen=True)
class EngineKey:
    model_sha256: str
    trt_version: str
    compute_capability: str  # "8.7" (Orin), "9.0" (H100/H200)
    precision: str  # "fp32", "fp16" (TensorRT 10's flag) or "graph" (strong typing: from the model)
    profile: tuple[tuple[int, int, int], ...] = ()  # (min, opt, max) batch per dynamic input
    options: tuple[tuple[str, str], ...] = ()  # builder options that change the engine

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:24]

    def differences(self, other: dict) -> list[str]:
        """The fields in which a stored key ``other`` differs from this one (empty: the same)."""
        mine = json.loads(self.to_json())
        return [f"{k}: cached {other.get(k)!r}, needed {v!r}" for k, v in mine.items() if other.get(k) != v]


class EngineCache:
    """A folder of engines (``<digest>.engine``) and timing caches (``timing-<trt>-sm<cc>.cache``)."""

    def __init__(self, root: Union[str, os.PathLike]):
        self.root = Path(os.path.expanduser(str(root)))
        self.last_miss: str = ""

    def path(self, key: EngineKey) -> Path:
        return self.root / f"{key.digest}.engine"

    def timing_path(self, trt_version: str, compute_capability: str) -> Path:
        return self.root / f"timing-trt{trt_version}-sm{compute_capability}.cache"

    def load(self, key: EngineKey, path: Union[Path, None] = None) -> Union[bytes, None]:
        """The engine stored for ``key``; None when there is none, or when the file's own key differs."""
        path = path or self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.last_miss = f"no engine cached at {path}"
            return None
        except OSError as exc:
            self.last_miss = f"{path}: unreadable ({exc})"
            return None
        if not data.startswith(MAGIC):
            self.last_miss = f"{path}: not an edgeship engine file (no header); rebuilding"
            return None
        header_end = data.find(b"\n", len(MAGIC))
        try:
            stored = json.loads(data[len(MAGIC) : header_end])
        except ValueError:
            self.last_miss = f"{path}: damaged header; rebuilding"
            return None
        diff = key.differences(stored)
        if diff:
            self.last_miss = f"{path}: stale engine refused ({'; '.join(diff)}); rebuilding"
            return None
        self.last_miss = ""
        return data[header_end + 1 :]

    def store(self, key: EngineKey, engine: bytes) -> Path:
        """Write ``engine`` with its key header, atomically (temp file, fsync, rename)."""
        return _write_atomic(self.path(key), MAGIC + key.to_json().encode() + b"\n" + bytes(engine))

    def load_timing(self, trt_version: str, compute_capability: str) -> bytes:
        try:
            return self.timing_path(trt_version, compute_capability).read_bytes()
        except OSError:
            return b""

    def store_timing(self, trt_version: str, compute_capability: str, data: bytes) -> Path:
        return _write_atomic(self.timing_path(trt_version, compute_capability), bytes(data))


def _write_atomic(path: Path, data: bytes) -> Path:
    from ...util import atomic_file

    with atomic_file(path) as f:
        f.write(data)
    return path
