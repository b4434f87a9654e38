"""A recipe: how to rebuild one published bundle version from content-addressed chunks.

>>> r = Recipe.from_json(text)
>>> r.model, r.version, r.total_bytes
('mobilenet', '4', 18734112)
>>> [c.sha256 for c in r.files["model.onnx"].chunks][:1]

The recipe is a TUF target (its sha256 and length are signed), and it pins the sha256 and size of
every chunk and of every file, so a chunk needs no signature of its own: a device that trusts the
recipe can check each chunk it downloads, and each file it assembles, against it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .errors import TrustError

RECIPE_SCHEMA = 1
MAX_FILES = 64
MAX_CHUNKS = 1 << 20
MAX_CHUNK_BYTES = 64 << 20  # a chunk is held in memory once while it is checked
_SHA = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def version_key(version: str) -> tuple[int, ...]:
    """'1.10' > '1.9' > '1': dotted integers compared part by part."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ValueError(f"version: expected dotted integers like '4' or '1.2.0', got {version!r}")
    return tuple(int(p) for p in version.split("."))


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what}: {name!r} must be 1-128 letters, digits, '.', '_' or '-' (no path)")
    return name


@dataclass(frozen=True)
class ChunkRef:
    sha256: str
    size: int


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int
    chunks: tuple[ChunkRef, ...]


@dataclass(frozen=True)
class Recipe:
    model: str
    version: str
    files: dict[str, FileEntry]
    published: str = ""
    chunk_avg: int = 0
    notes: dict = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def chunk_set(self) -> dict[str, int]:
        return {c.sha256: c.size for f in self.files.values() for c in f.chunks}

    def to_json(self) -> str:
        return json.dumps({
            "schema": RECIPE_SCHEMA, "model": self.model, "version": self.version, "published": self.published,
            "chunk_avg": self.chunk_avg, "notes": self.notes,
            "files": {n: {"sha256": f.sha256, "size": f.size, "chunks": [[c.sha256, c.size] for c in f.chunks]}
                      for n, f in sorted(self.files.items())},
        }, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "recipe") -> "Recipe":
        """Parse and check a recipe; anything malformed is a TrustError (it came from the repository)."""
        try:
            d = json.loads(text)
            if d.get("schema") != RECIPE_SCHEMA:
                raise ValueError(f"schema: expected {RECIPE_SCHEMA}, got {d.get('schema')!r}")
            model = check_name(d["model"], "model")
            version = d["version"]
            version_key(version)
            files = {}
            raw = d["files"]
            if not isinstance(raw, dict) or not 0 < len(raw) <= MAX_FILES:
                raise ValueError(f"files: expected 1 to {MAX_FILES} entries")
            total_chunks = 0
            for name, f in raw.items():
                check_name(name, "file name")
                chunks = tuple(ChunkRef(_sha(c[0]), _size(c[1])) for c in f["chunks"])
                if any(c.size > MAX_CHUNK_BYTES for c in chunks):
                    raise ValueError(f"{name}: a chunk is larger than {MAX_CHUNK_BYTES >> 20} MiB")
                total_chunks += len(chunks)
                if total_chunks > MAX_CHUNKS:
                    raise ValueError(f"more than {MAX_CHUNKS} chunks")
                entry = FileEntry(_sha(f["sha256"]), _size(f["size"]), chunks)
                if sum(c.size for c in chunks) != entry.size:
                    raise ValueError(f"{name}: chunk sizes add up to {sum(c.size for c in chunks)}, not {entry.size}")
                files[name] = entry
            return cls(model, version, files, str(d.get("published", "")), int(d.get("chunk_avg", 0)),
                       dict(d.get("notes") or {}))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise TrustError(f"{source}: not a valid recipe ({exc})") from exc


def _sha(value) -> str:
    if not isinstance(value, str) or not _SHA.match(value):
        raise ValueError(f"expected a sha256 hex digest, got {value!r:.80}")
    return value


def _size(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 1 << 40:
        raise ValueError(f"expected a size in bytes, got {value!r:.40}")
    return value
