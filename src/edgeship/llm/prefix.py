"""Prefix caching: a prompt head that every request shares is evaluated once, its KV cache kept.

>>> cache = PrefixCache(engine, engine.tokenize(head_text, add_bos=False, special=True).tokens)
>>> cache.warm()                                      # on the model's thread: evaluate the head once
>>> gen = PrefixedGeneration(engine, cache.tokens + tail, sampling, cancel=None, prefix=cache)
>>> "".join(gen); gen.reused_tokens, gen.evaluated_tokens
('The photo of a cat with the image of a tiger is ...', 30, 31)

llama-cpp-python's ``generate`` already reuses the longest common prefix of the new prompt and
what the context holds now, so a run of requests with one head pays for it once. Any other
request in between (a chat completion on the same model) replaces that context, and the next
request would evaluate the head again. Here the head's KV cache is copied out once
(``llama_state_seq_get_data``, sequence 0: only the head's cells, 676 KB for a 30-token head of
SmolLM2-135M) and copied back in front of a prompt whose context no longer starts with it; then
``generate`` finds the head in place and evaluates only the tail.

``Llama.save_state``/``load_state`` would do it too, but they also copy the logits of every row
of the batch (n_batch x n_vocab floats: 100 MB for SmolLM2 at n_batch 512) on each restore.

Not thread-safe, like the engine: call ``warm`` and iterate generations on the model's thread.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any, Sequence

from .engine import Engine, Generation, SamplingConfig
from .errors import LLMError

SEQ = 0  # llama-cpp-python runs one sequence, id 0


class PrefixCache:
    """The KV cache of ``tokens`` (a prompt head), evaluated once and put back when it is gone."""

    def __init__(self, engine: Engine, tokens: Sequence[int]):
        if not tokens:
            raise ValueError("a prefix cache needs at least one token")
        self.engine = engine
        self.tokens = list(tokens)
        self._state: Any = None  # the head's sequence state (a ctypes buffer), once warm
        self.warm_ms: float | None = None
        self.bytes = 0
        self.restores = 0

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def warm_done(self) -> bool:
        return self._state is not None

    def warm(self) -> None:
        """Evaluate the head and copy its sequence state out (on the model's thread)."""
        llama, lib = self.engine.llama, self.engine._lib
        t0 = time.perf_counter()
        llama.reset()
        llama.eval(self.tokens)
        ctx = llama._ctx.ctx
        size = lib.llama_state_seq_get_size(ctx, SEQ)
        buf = (ctypes.c_uint8 * size)()
        written = lib.llama_state_seq_get_data(ctx, buf, size, SEQ)
        if written == 0 or written > size:
            raise LLMError(f"llama.cpp could not copy the prompt head's state ({written} of {size} bytes)")
        self._state, self.bytes = buf, int(written)
        self.warm_ms = (time.perf_counter() - t0) * 1e3

    def _in_context(self) -> bool:
        llama = self.engine.llama
        n = len(self.tokens)
        return llama.n_tokens >= n and list(llama.input_ids[:n]) == self.tokens

    def apply(self) -> int:
        """Make the context start with the head; returns how many head tokens are reused (all of them).

        When the context still starts with the head, nothing is copied: ``generate`` keeps it.
        """
        if self._state is None:
            self.warm()
            return len(self.tokens)
        if self._in_context():
            return len(self.tokens)
        llama, lib = self.engine.llama, self.engine._lib
        n = len(self.tokens)
        if lib.llama_state_seq_set_data(llama._ctx.ctx, self._state, self.bytes, SEQ) == 0:
            # Nothing was put back (a llama.cpp that refuses the state): the head is evaluated again.
            llama.reset()
            return 0
        llama.input_ids[:n] = self.tokens
        llama.n_tokens = n
        llama._requires_eval = True  # the logits are not the head's: generate evaluates the tail first
        self.restores += 1
        return n


class PrefixedGeneration(Generation):
    """A Generation whose prompt starts with a PrefixCache's head (or, with ``prefix=None``, a cold one).

    Before the first token: the head is put back in the context when it is gone (``prefix``), or
    the context is emptied so the whole prompt is evaluated (``prefix=None``: what a server
    without prefix caching does after any other request). ``reused_tokens`` and
    ``evaluated_tokens`` say which happened; ``restore_ms`` is the time the copy took.
    """

    def __init__(self, engine: Engine, tokens: Sequence[int], sampling: SamplingConfig, cancel=None,
                 prefix: PrefixCache | None = None):
        tokens = list(tokens)
        if prefix is not None and tokens[: len(prefix)] != prefix.tokens:
            raise ValueError("the prompt does not start with the cached prefix")
        super().__init__(engine, tokens, sampling, cancel)
        self.prefix = prefix
        self.reused_tokens = 0
        self.evaluated_tokens = len(tokens)
        self.restore_ms = 0.0
        self.t_begin = 0.0  # when the model began on this request (before the restore)

    def _run(self):
        self.t_begin = time.perf_counter()
        if self.prefix is None:
            self.engine.reset()
        else:
            # llama-cpp-python may also reuse a longer common prefix (the same tail as the request
            # before); only the head is counted as reused, which is what every request gets.
            self.reused_tokens = self.prefix.apply()
            self.evaluated_tokens = len(self.tokens) - self.reused_tokens
        self.restore_ms = (time.perf_counter() - self.t_begin) * 1e3
        yield from super()._run()

    @property
    def prompt_ms(self) -> float:
        """From the model's start on this request to its first token: restore, tail evaluation, first sample."""
        return (self.t_first - self.t_begin) * 1e3 if self.t_first else float("nan")


__all__ = ["PrefixCache", "PrefixedGeneration"]
