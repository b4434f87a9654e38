"""An LLM's memory before it is loaded (weights, KV cache for n_ctx, compute), and this process's RSS.

>>> dims = LLMDims.read("SmolLM2-135M-Instruct.Q4_1.gguf")
>>> dims.kv_cache_bytes(4096)                     # llama.cpp's f16 K and V for 4096 cells: 90 MiB
94371840
>>> [p.name for p in llm_parts("smollm2.gguf", n_ctx=4096)]
['llm smollm2: weights', 'llm smollm2: KV cache for 4096 tokens', 'llm smollm2: compute buffers']
>>> reset_peak(); run(); peak_rss_bytes()        # the process's RSS readers (monitor.memory)

The dimensions come from the GGUF header (read with the ``gguf`` package, nothing loaded), so a
server can refuse a context that does not fit before llama.cpp allocates it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, MissingDependencyError
from ..monitor.memory import MemoryPart, Source, When, peak_rss_bytes, reset_peak, rss_bytes

F16 = 2  # llama.cpp's default K and V cache type
F32 = 4


@dataclass(frozen=True)
class LLMDims:
    """What sizes an LLM's buffers: from the GGUF's ``{arch}.*`` keys."""

    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_ff: int
    n_vocab: int
    file_bytes: int

    @classmethod
    def read(cls, path: str | os.PathLike) -> "LLMDims":
        try:
            import gguf
        except ImportError as exc:
            raise MissingDependencyError("reading an LLM's dimensions needs gguf; pip install 'edgeship[llm]'") from exc
        path = Path(path)
        try:
            reader = gguf.GGUFReader(str(path))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable GGUF file ({exc})") from exc

        def value(key: str, default=None):
            f = reader.fields.get(key)
            if f is None or not f.data:
                return default
            raw = f.parts[f.data[0]]
            if f.types and f.types[0] == gguf.GGUFValueType.STRING:
                return bytes(raw).decode("utf-8", errors="replace")
            return int(raw[0]) if len(raw) else default

        arch = value("general.architecture")
        n_layer = value(f"{arch}.block_count")
        n_embd = value(f"{arch}.embedding_length")
        n_head = value(f"{arch}.attention.head_count")
        if not (arch and n_layer and n_embd and n_head):
            raise InputError(f"{path}: the GGUF header lacks the block count, embedding length or head count "
                             f"of architecture {arch!r}")
        n_head_kv = value(f"{arch}.attention.head_count_kv", n_head)
        head = n_embd // n_head
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        n_vocab = value(f"{arch}.vocab_size") or (len(tokens.data) if tokens is not None else 0)
        return cls(arch, n_layer, n_embd, n_head, n_head_kv, value(f"{arch}.attention.key_length", head),
                   value(f"{arch}.attention.value_length", head), value(f"{arch}.feed_forward_length", 4 * n_embd),
                   n_vocab, path.stat().st_size)

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """K and V for ``n_ctx`` cells in every layer, f16 (what llama.cpp allocates at load, and clears)."""
        return self.n_layer * n_ctx * (self.key_length + self.value_length) * self.n_head_kv * F16

    def compute_bytes(self, n_ctx: int, n_batch: int = 512) -> int:
        """The activations of one full prompt batch at a full context: attention scores dominate.

        llama.cpp reserves more (the logits of every row of a batch: 98 MiB for SmolLM2-135M) but
        a server asks only for the last row's, so those pages are never touched.
        """
        n_batch = min(n_batch, n_ctx)
        return n_batch * (n_ctx * self.n_head + 3 * self.n_ff + 4 * self.n_embd) * F32


def llm_parts(path: str | os.PathLike, n_ctx: int, n_batch: int = 512, name: str | None = None) -> list[MemoryPart]:
    """The memory parts of serving the GGUF at ``path`` with a context of ``n_ctx`` tokens."""
    dims = LLMDims.read(path)
    label = f"llm {name or Path(path).stem}"
    return [
        MemoryPart(f"{label}: weights", dims.file_bytes, Source.FILE, note="mapped by llama.cpp"),
        MemoryPart(f"{label}: KV cache for {n_ctx} tokens", dims.kv_cache_bytes(n_ctx), Source.COMPUTED,
                   note=f"{dims.n_layer} layers x {dims.n_head_kv} KV heads, f16"),
        MemoryPart(f"{label}: compute buffers", dims.compute_bytes(n_ctx, n_batch), Source.PREDICTED, When.PEAK,
                   note=f"a {min(n_batch, n_ctx)}-token prompt batch at a full context"),
    ]


__all__ = ["LLMDims", "llm_parts", "peak_rss_bytes", "reset_peak", "rss_bytes"]
