"""Perplexity of a GGUF model on the fixed text shipped with edgeship (``llm/data/perplexity.txt``).

>>> perplexity("model.Q4_0.gguf", PerplexityConfig(n_threads=2)).perplexity
21.7

The text (about 3.5 KB of plain English prose written for edgeship, Apache-2.0) is read in windows
of ``n_ctx`` tokens sliding by half a window; every token after the first is scored once, with
the previous tokens of its window as context. Lower is better; compare models on the same text,
window and tokenizer only: the number means little across tokenizers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import InputError

TEXT_NAME = "perplexity.txt"


def fixed_text() -> str:
    """The evaluation text shipped with edgeship."""
    return (resources.files("edgeship.llm") / "data" / TEXT_NAME).read_text(encoding="utf-8")


@dataclass(frozen=True)
class PerplexityConfig:
    n_ctx: int = 512  # window length in tokens
    n_threads: int | None = None
    max_tokens: int | None = None  # score only the first N tokens of the text (tests)

    def __post_init__(self) -> None:
        if self.n_ctx < 16:
            raise InputError(f"n_ctx: expected at least 16 tokens for perplexity, got {self.n_ctx}")
        if self.max_tokens is not None and self.max_tokens < 2:
            raise InputError(f"max_tokens: expected at least 2, got {self.max_tokens}")


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    mean_nll: float  # nats per token
    tokens_scored: int
    windows: int
    n_ctx: int
    seconds: float
    text: str = TEXT_NAME

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _log_softmax_pick(logits, targets):
    """-log p(target) per row, computed stably in float64."""
    import numpy as np

    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(x - m).sum(axis=1)))
    return lse - x[np.arange(len(targets)), targets]


def perplexity(model: str | Path, config: PerplexityConfig | None = None, text: str | None = None) -> PerplexityResult:
    """Load ``model`` with every position's logits kept and score ``text`` (default: the shipped text)."""
    import numpy as np

    from .engine import Engine, LoadConfig

    config = config or PerplexityConfig()
    t0 = time.perf_counter()
    load = LoadConfig(n_ctx=config.n_ctx, n_threads=config.n_threads, n_batch=config.n_ctx, logits_all=True)
    with Engine.load(model, load) as engine:
        llm = engine.llama
        tokens = llm.tokenize((text if text is not None else fixed_text()).encode("utf-8"), add_bos=False)
        if config.max_tokens:
            tokens = tokens[: config.max_tokens]
        bos = [llm.token_bos()] if llm._model.add_bos_token() and llm.token_bos() >= 0 else []
        width = config.n_ctx - len(bos)
        stride = max(1, width // 2)
        if len(tokens) < 2:
            raise InputError("perplexity text: fewer than 2 tokens")
        nll_sum, scored, windows = 0.0, 0, 0
        done = 1  # tokens[0] has no context and is never scored
        start = 0
        while done < len(tokens):
            window = tokens[start : start + width]
            llm.reset()
            llm.eval(bos + window)
            logits = np.asarray(llm.scores[: len(bos) + len(window)])
            # Position p of the window predicts window[p + 1]; score only tokens not scored before.
            first = done - start
            targets = np.asarray(window[first:], dtype=np.int64)
            rows = logits[len(bos) + first - 1 : len(bos) + len(window) - 1]
            nll_sum += float(_log_softmax_pick(rows, targets).sum())
            scored += len(targets)
            windows += 1
            done = start + len(window)
            start += stride
    mean = nll_sum / scored
    return PerplexityResult(math.exp(mean), mean, scored, windows, config.n_ctx, time.perf_counter() - t0)


__all__ = ["PerplexityConfig", "PerplexityResult", "fixed_text", "perplexity"]
