"""Content-defined chunks: the same bytes give the same chunks wherever they sit in a file.

>>> chunks = chunk_file("model.onnx", ChunkParams(avg=64 * 1024))
>>> chunks[0]
Chunk(sha256='9f2c...', offset=0, size=70112)

A retrained classifier head changes a few hundred KB in the middle of a model file; cutting the file
where a rolling hash of the last 32 bytes hits a pattern (a gear hash, as in FastCDC) puts chunk
edges at the same content before and after the change, so only the chunks that hold the new bytes
are new. Fixed-size blocks would all shift when a tensor changes length.

Only the publisher chunks; the device only concatenates the chunks a recipe lists. The gear table
comes from sha256 so that every publisher, on every numpy version, cuts the same file the same way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import InputError

_WINDOW = 32  # bytes the 32-bit gear hash depends on
_BLOCK = 8 << 20  # bytes hashed at a time: memory stays bounded on multi-GB GGUF files


def _gear_table() -> np.ndarray:
    values = [int.from_bytes(hashlib.sha256(b"edgeship-gear-%d" % i).digest()[:4], "little") for i in range(256)]
    return np.array(values, dtype=np.uint32)


_GEAR = _gear_table()


@dataclass(frozen=True)
class ChunkParams:
    """Chunk sizes in bytes: a cut is never before ``min`` bytes nor after ``max``; ``avg`` on average."""

    avg: int = 64 * 1024
    min: int = 16 * 1024
    max: int = 256 * 1024

    def __post_init__(self) -> None:
        if not (0 < self.min < self.avg < self.max):
            raise InputError(f"chunk sizes: expected 0 < min < avg < max, got {self.min}, {self.avg}, {self.max}")

    @classmethod
    def around(cls, avg: int) -> "ChunkParams":
        return cls(avg=avg, min=max(1, avg // 4), max=avg * 4)

    @property
    def mask(self) -> int:
        # a cut when the top k bits are zero: one position in 2**k, after the minimum length
        k = max(1, int(np.log2(max(2, self.avg - self.min))))
        return ((1 << k) - 1) << (32 - k)


@dataclass(frozen=True)
class Chunk:
    sha256: str
    offset: int
    size: int


def _gear_hashes(data: np.ndarray, context: np.ndarray) -> np.ndarray:
    """h[i] = sum over k < 32 of gear[byte[i - k]] << k (mod 2**32), for every position of ``data``."""
    full = np.concatenate([context, data])
    g = _GEAR[full]
    h = np.zeros(full.size, dtype=np.uint32)
    for k in range(min(_WINDOW, full.size)):
        h[k:] += g[: full.size - k] << np.uint32(k)
    return h[context.size:]


def cut_points(path: str | os.PathLike, params: ChunkParams) -> Iterator[int]:
    """End offsets of the chunks of ``path``, in order; the last is the file size."""
    size = os.path.getsize(path)
    mask = np.uint32(params.mask)
    start = 0  # where the current chunk began
    context = np.zeros(0, dtype=np.uint8)
    with open(path, "rb") as f:
        base = 0
        while base < size:
            block = np.frombuffer(f.read(_BLOCK), dtype=np.uint8)
            hits = np.flatnonzero((_gear_hashes(block, context) & mask) == 0) + base + 1  # cut after the byte
            i = 0
            end_of_block = base + block.size
            while True:
                lo, hi = start + params.min, start + params.max
                # the first hit at or after lo, else the forced cut at hi
                i += int(np.searchsorted(hits[i:], lo))
                cut = int(hits[i]) if i < hits.size and hits[i] <= hi else hi
                if cut > end_of_block:
                    break  # decided in the next block
                yield cut
                start = cut
            context = block[-(_WINDOW - 1):]
            base = end_of_block
    if start < size:
        yield size


def chunk_file(path: str | os.PathLike, params: ChunkParams | None = None) -> list[Chunk]:
    """The chunks of a file with their sha256 (each read once more to hash it)."""
    params = params or ChunkParams()
    chunks = []
    with open(path, "rb") as f:
        offset = 0
        for end in cut_points(path, params):
            data = f.read(end - offset)
            chunks.append(Chunk(hashlib.sha256(data).hexdigest(), offset, end - offset))
            offset = end
    return chunks
