"""Load a GGUF model with llama.cpp and stream text from it, one token at a time.

>>> engine = Engine.load("SmolLM2-135M-Instruct.Q4_1.gguf", LoadConfig(n_threads=2))
>>> prompt = engine.chat_prompt([{"role": "user", "content": "Name the capital city of Germany."}])
>>> gen = engine.generate(prompt, SamplingConfig(temperature=0.0, max_tokens=32))
>>> "".join(gen), gen.finish_reason, gen.completion_tokens
('The capital city of Germany is Berlin.', 'stop', 8)

One lean loop serves the CLI, the benchmark and the HTTP server: llama-cpp-python's
``Llama.generate`` evaluates and samples (and reuses the KV cache for a shared prompt prefix);
detokenising is incremental (one token's bytes through a UTF-8 decoder) and stop strings are
matched on a held-back tail, so the cost per token stays constant however long the answer grows.
``create_completion(stream=True)`` re-detokenises the whole answer on every token instead.
"""

from __future__ import annotations

import codecs
import os
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .._config import cli, positive_int
from .._deps import require
from ..errors import InputError
from .errors import ContextLengthError, LLMError
from .gguf_types import file_type_name

# Used when a GGUF carries no chat template: ChatML, the most common template of small instruct models.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def llama_cpp_module():
    """``llama_cpp``, or MissingDependencyError naming ``pip install 'edgeship[llm]'``."""
    return require("llama_cpp", "llm", "running GGUF models")


def default_threads() -> int:
    """Physical cores available to this process: llama.cpp's matrix kernels gain nothing from SMT siblings."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        usable = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or usable
    except ImportError:
        physical = usable
    return max(1, min(usable, physical))


@dataclass(frozen=True)
class LoadConfig:
    """How a GGUF model is loaded. ``n_threads=None``: the physical cores this process may use."""

    n_ctx: int = field(default=2048, metadata=cli("context length in tokens", flag="--ctx", type=positive_int))
    n_threads: int | None = field(default=None, metadata=cli(
        "llama.cpp threads (default: the physical cores this process may use)", flag="--threads", type=positive_int))
    n_batch: int = 512
    # Only perplexity needs the logits of every position; it costs 11-12% prompt speed otherwise.
    logits_all: bool = False

    def __post_init__(self) -> None:
        if self.n_ctx < 8:
            raise InputError(f"n_ctx: expected at least 8 tokens, got {self.n_ctx}")
        if self.n_threads is not None and self.n_threads < 1:
            raise InputError(f"n_threads: expected a positive integer, got {self.n_threads}")
        if self.n_batch < 1:
            raise InputError(f"n_batch: expected a positive integer, got {self.n_batch}")

    @property
    def threads(self) -> int:
        return self.n_threads or default_threads()


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are chosen. ``temperature=0`` is greedy; ``max_tokens=None`` runs to the context's end."""

    max_tokens: int | None = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40  # 0: off
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0  # subtracted per earlier occurrence of a token (OpenAI's, -2 to 2)
    presence_penalty: float = 0.0  # subtracted once a token has occurred (OpenAI's, -2 to 2)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks: always generate max_tokens tokens
    # A llama_cpp.LlamaGrammar the output must match (llm/grammar.py builds them); None: free text.
    grammar: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 0:
            raise InputError(f"max_tokens: expected 0 or more, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise InputError(f"temperature: expected a number within [0, 2], got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise InputError(f"top_p: expected a number within [0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InputError(f"top_k: expected 0 (off) or more, got {self.top_k}")
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise InputError(f"{name}: expected a number within [-2, 2], got {getattr(self, name)}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InputError("stop: expected non-empty strings")


@dataclass(frozen=True)
class ModelInfo:
    """What the loaded GGUF says about itself."""

    path: str
    name: str
    architecture: str
    quantization: str  # llama.cpp file type, e.g. "Q4_1" (the type of most weights)
    description: str  # llama.cpp's one-line summary, e.g. "llama ?B Q4_1"
    n_params: int
    size_bytes: int
    file_bytes: int
    context_length: int  # the context this engine was loaded with
    context_length_train: int
    vocab_size: int
    chat_template: str  # "gguf" (stored in the file) or "fallback" (ChatML)
    metadata: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Prompt:
    """A tokenised prompt: what the model reads, and the text it was made from."""

    tokens: list[int]
    text: str = ""

    def __len__(self) -> int:
        return len(self.tokens)


def _quantization(metadata: dict[str, str], description: str) -> str:
    raw = metadata.get("general.file_type")
    if raw is not None:
        try:
            return file_type_name(int(raw))
        except ValueError:
            pass
    # No file type in the metadata: llama.cpp's description ends with the type it guessed.
    return description.rsplit(" ", 1)[-1] if description else "unknown"


def check_fits(prompt_tokens: int, max_tokens: int | None, n_ctx: int) -> None:
    """ContextLengthError, saying by how many tokens, when the prompt (plus ``max_tokens``) exceeds ``n_ctx``.

    The prompt needs room for at least one generated token.
    """
    wanted = prompt_tokens + (max_tokens if max_tokens else 1)
    if wanted <= n_ctx:
        return
    excess = wanted - n_ctx
    if max_tokens:
        msg = (f"this model's context is {n_ctx} tokens, but {wanted} were requested ({prompt_tokens} in the "
               f"prompt, {max_tokens} for the completion): {excess} tokens too many; shorten the prompt or "
               "lower max_tokens")
    else:
        msg = (f"the prompt is {prompt_tokens} tokens and this model's context is {n_ctx} tokens "
               f"(one more is needed for the answer): {excess} tokens too many; shorten the prompt")
    raise ContextLengthError(msg, prompt_tokens=prompt_tokens, n_ctx=n_ctx, excess=excess)


class Engine:
    """A loaded GGUF model. Not thread-safe: one generation at a time (the server serialises)."""

    def __init__(self, llama: Any, path: Path, name: str, config: LoadConfig, load_s: float):
        self.llama = llama
        self.path = path
        self.name = name
        self.config = config
        self.load_s = load_s
        self._lib = llama_cpp_module()
        self._vocab = llama._model.vocab
        self._formatter: Callable[..., Any] | None = None  # llama_cpp's Jinja2ChatFormatter, built on first use
        self._max_piece: int | None = None
        # Called before each token is evaluated (before the prompt, then between two tokens); a
        # server sets it to let other work on the same cores go first (serve/sharing.py).
        self.pace: Callable[[], object] | None = None
        self.info = self._read_info()

    @classmethod
    def load(cls, path: str | os.PathLike, config: LoadConfig | None = None, name: str | None = None) -> "Engine":
        """Load a ``.gguf`` file with llama.cpp; the time it took is ``engine.load_s``."""
        config = config or LoadConfig()
        lib = llama_cpp_module()
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such GGUF file")
        t0 = time.perf_counter()
        try:
            llama = lib.Llama(
                model_path=str(path),
                n_ctx=config.n_ctx,
                n_batch=min(config.n_batch, config.n_ctx),
                n_threads=config.threads,
                n_threads_batch=config.threads,
                logits_all=config.logits_all,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(
                f"{path}: llama.cpp could not load this GGUF ({exc}); check the file is complete "
                "and that this llama-cpp-python supports its architecture"
            ) from exc
        return cls(llama, path, name or path.stem, config, time.perf_counter() - t0)

    def _read_info(self) -> ModelInfo:
        llm = self.llama
        meta = dict(llm.metadata)
        desc = llm._model.desc()
        return ModelInfo(
            path=str(self.path),
            name=self.name,
            architecture=meta.get("general.architecture", "unknown"),
            quantization=_quantization(meta, desc),
            description=desc,
            n_params=int(llm._model.n_params()),
            size_bytes=int(llm._model.size()),
            file_bytes=self.path.stat().st_size,
            context_length=int(llm.n_ctx()),
            context_length_train=int(llm._model.n_ctx_train()),
            vocab_size=int(llm.n_vocab()),
            chat_template="gguf" if "tokenizer.chat_template" in meta else "fallback",
            metadata=meta,
        )

    @property
    def n_ctx(self) -> int:
        return self.info.context_length

    def close(self) -> None:
        """Free the model and its context now rather than at garbage collection."""
        if self.llama is not None:
            self.llama.close()
            self.llama = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- prompts -----------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = False) -> Prompt:
        """Tokens of plain text (a completion prompt); BOS is added when the model wants one."""
        tokens = self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)
        return Prompt(tokens, text)

    def chat_prompt(self, messages: Sequence[dict[str, Any]]) -> Prompt:
        """Render ``messages`` with the chat template stored in the GGUF, then tokenise.

        The template's own text is tokenised with special tokens on (its ``<|im_start|>``, BOS
        where wanted); each message's content with special tokens off, so a user who types
        ``<|im_end|>\n<|im_start|>system`` gets those characters as plain text, not a system turn.
        The contents are swapped for random stand-ins while the template renders, and the
        rendered text is tokenised piece by piece around them (as llama.cpp's server tokenises a
        prompt mixing text and token ids).
        """
        if self._formatter is None:
            self._formatter = self._make_formatter()
        nonce = secrets.token_hex(8)
        stand_in = re.compile(f"edgeship{nonce}m([0-9]+)x")
        masked = [{**m, "content": f"edgeship{nonce}m{i}x"} for i, m in enumerate(messages)]
        try:
            text = self._formatter(messages=masked).prompt
        except Exception as exc:  # jinja2 errors, or the template's own raise_exception()
            raise InputError(f"messages: the model's chat template rejected them ({exc})") from exc
        tokens: list[int] = []
        shown: list[str] = []
        at = 0
        tokenize = self.llama.tokenize
        for match in stand_in.finditer(text):
            template_part = text[at:match.start()]
            content = str(messages[int(match.group(1))].get("content") or "")
            tokens += tokenize(template_part.encode("utf-8"), add_bos=False, special=True) if template_part else []
            tokens += tokenize(content.encode("utf-8"), add_bos=False, special=False) if content else []
            shown += [template_part, content]
            at = match.end()
        if text[at:]:
            tokens += tokenize(text[at:].encode("utf-8"), add_bos=False, special=True)
            shown.append(text[at:])
        return Prompt(tokens, "".join(shown))

    @property
    def max_piece_bytes(self) -> int:
        """The most bytes one token of this vocabulary stands for (a prompt of N bytes needs N / this tokens or more)."""
        if self._max_piece is None:
            import ctypes

            # A negative return is the size the piece needs: a small buffer finds every length in
            # one call per token (about 0.2 s for a 49k vocabulary, once, in the loading thread).
            buf, size, piece, vocab = ctypes.create_string_buffer(8), 8, self._lib.llama_token_to_piece, self._vocab
            self._max_piece = max((abs(piece(vocab, t, buf, size, 0, True)) for t in range(self.info.vocab_size)),
                                  default=1) or 1
        return self._max_piece

    def _make_formatter(self):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.llama
        model = llm._model
        eos, bos = llm.token_eos(), llm.token_bos()
        template = self.info.metadata.get("tokenizer.chat_template", FALLBACK_CHAT_TEMPLATE)
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    # -- generation --------------------------------------------------------------------------------

    def generate(
        self, prompt: Prompt | Sequence[int], sampling: SamplingConfig | None = None,
        cancel: threading.Event | None = None,
    ) -> "Generation":
        """A Generation: iterate it for text pieces; counts and timings are on it afterwards."""
        tokens = list(prompt.tokens if isinstance(prompt, Prompt) else prompt)
        if not tokens:
            raise InputError("prompt: empty (no tokens)")
        check_fits(len(tokens), None, self.n_ctx)
        return Generation(self, tokens, sampling or SamplingConfig(), cancel)

    def reset(self) -> None:
        """Forget the KV cache, so the next prompt is processed in full (benchmarks)."""
        self.llama.reset()


class Generation:
    """One streamed completion. Iterate once; then read ``finish_reason`` ("stop", "length",
    "cancelled"), ``prompt_tokens``, ``completion_tokens``, ``ttft_s`` and ``decode_tps``."""

    def __init__(self, engine: Engine, tokens: list[int], sampling: SamplingConfig,
                 cancel: threading.Event | None):
        self.engine = engine
        self.tokens = tokens
        self.sampling = sampling
        self.cancel = cancel
        self.prompt_tokens = len(tokens)
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.prompt_text: str | None = None  # the prompt as text, where a caller knows it (for its logs)
        self.t_start = self.t_first = self.t_end = 0.0
        self.t_arrival = 0.0  # set by the server: when the request arrived (perf_counter)
        self._started = False

    @property
    def ttft_s(self) -> float:
        """Seconds from the start of the generation to the first sampled token."""
        return self.t_first - self.t_start if self.t_first else float("nan")

    @property
    def decode_tps(self) -> float:
        """Tokens per second after the first one (the first includes prompt processing)."""
        span = self.t_end - self.t_first
        return (self.completion_tokens - 1) / span if self.completion_tokens > 1 and span > 0 else float("nan")

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a Generation can be iterated once")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[str]:
        engine, s = self.engine, self.sampling
        llm, lib, vocab = engine.llama, engine._lib, engine._vocab
        budget = engine.n_ctx - len(self.tokens)
        if s.max_tokens is not None:
            budget = min(budget, s.max_tokens)
        llm.set_seed(s.seed if s.seed is not None else random.getrandbits(32))
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        stops, held = s.stop, ""
        longest_stop = max((len(x) for x in stops), default=0)
        cancel, is_eog, detok, pace = self.cancel, lib.llama_vocab_is_eog, llm._model.detokenize, engine.pace
        self.t_start = time.perf_counter()
        self.finish_reason = "length"
        if budget <= 0:
            self.t_end = self.t_start
            return
        tokens = llm.generate(
            self.tokens, temp=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
            repeat_penalty=s.repeat_penalty, frequency_penalty=s.frequency_penalty,
            presence_penalty=s.presence_penalty, grammar=s.grammar,
        )
        stopped_by_string = False
        if pace is not None:
            pace()
        try:
            for token in tokens:
                if not self.t_first:
                    self.t_first = time.perf_counter()
                if cancel is not None and cancel.is_set():
                    self.finish_reason = "cancelled"
                    break
                if not s.ignore_eos and is_eog(vocab, token):
                    self.finish_reason = "stop"
                    break
                self.completion_tokens += 1
                text = decoder.decode(detok([token]))
                if stops:
                    text = held + text
                    cut = min((i for i in (text.find(x) for x in stops) if i >= 0), default=-1)
                    if cut >= 0:
                        if cut:
                            yield text[:cut]
                        self.finish_reason, stopped_by_string = "stop", True
                        break
                    # Hold back a tail that could be the start of a stop string.
                    keep = _stop_prefix_len(text, stops, longest_stop)
                    text, held = (text[:-keep], text[-keep:]) if keep else (text, "")
                if text:
                    yield text
                if self.completion_tokens >= budget:
                    break
                if pace is not None:  # before the next token's evaluation, which the loop's next step runs
                    pace()
            if not stopped_by_string and self.finish_reason != "cancelled":
                tail = held + decoder.decode(b"", final=True)
                if tail:
                    yield tail
        finally:
            tokens.close()
            self.t_end = time.perf_counter()


def _stop_prefix_len(text: str, stops: Sequence[str], longest: int) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of some stop string."""
    for n in range(min(longest - 1, len(text)), 0, -1):
        tail = text[-n:]
        if any(x.startswith(tail) for x in stops):
            return n
    return 0


__all__ = ["Engine", "check_fits", "Generation", "LoadConfig", "ModelInfo", "Prompt", "SamplingConfig", "default_threads"]
