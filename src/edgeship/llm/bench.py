"""Benchmark a GGUF model: load time, time to first token, prompt and generation speed, memory.

>>> result = bench_llm("SmolLM2-135M-Instruct.Q4_1.gguf", LLMBenchConfig(n_threads=2, repeat=3))
>>> result.summary["decode_tps"].mean
76.3

Each run loads the model afresh (so load time and the memory it adds are measured every time),
processes a prompt of exactly ``prompt_tokens`` tokens (cut from the shipped evaluation text) and
generates ``gen_tokens`` tokens greedily, ignoring end-of-sequence so every run does the same work.
TTFT is wall-clock from the start of generation to the first sampled token; prompt tok/s is the
prompt length divided by llama.cpp's own prompt-evaluation timer; generation tok/s counts the
tokens after the first over the wall-clock time they took, through the same code path as the
server and chat.
"""

from __future__ import annotations

import gc
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import JustifyMethod

from .._config import cli, positive_int
from ..errors import InputError
from .report import Spread, describe_environment, llm_environment

# (key, label, unit, format): the rows of the table, in order.
METRICS = (
    ("load_s", "load time", "ms", 1e3, ".0f"),
    ("ttft_s", "time to first token", "ms", 1e3, ".1f"),
    ("prompt_tps", "prompt processing", "tok/s", 1, ".1f"),
    ("decode_tps", "generation", "tok/s", 1, ".1f"),
    ("peak_rss_bytes", "peak RSS", "MB", 1 / 2**20, ".0f"),
    ("rss_added_bytes", "RSS added by the model", "MB", 1 / 2**20, ".0f"),
)


@dataclass(frozen=True)
class LLMBenchConfig:
    prompt_tokens: int = field(default=128, metadata=cli("prompt length in tokens", type=positive_int))
    gen_tokens: int = field(default=128, metadata=cli("tokens to generate", type=positive_int))
    repeat: int = field(default=3, metadata=cli("runs, each loading the model afresh", type=positive_int))
    n_threads: int | None = field(default=None, metadata=cli(
        "llama.cpp threads (default: the physical cores this process may use)", flag="--threads", type=positive_int))
    n_ctx: int | None = field(default=None, metadata=cli(  # None: prompt + generated tokens, rounded up to 256
        "context length (default: prompt + generated, rounded up to 256)", flag="--ctx", type=positive_int))

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "gen_tokens", "repeat"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.n_threads is not None and self.n_threads < 1:
            raise InputError(f"threads: expected a positive integer, got {self.n_threads}")
        if self.n_ctx is not None and self.n_ctx < self.prompt_tokens + self.gen_tokens:
            raise InputError(
                f"ctx: {self.n_ctx} tokens cannot hold the {self.prompt_tokens}-token prompt and "
                f"{self.gen_tokens} generated tokens; use --ctx {self.prompt_tokens + self.gen_tokens} or more"
            )

    @property
    def context(self) -> int:
        if self.n_ctx:
            return self.n_ctx
        need = self.prompt_tokens + self.gen_tokens
        return -(-need // 256) * 256


@dataclass
class LLMBenchResult:
    model: dict[str, Any]  # name, path, quantization, description, n_params, file_bytes
    config: dict[str, Any]
    runs: list[dict[str, Any]]
    summary: dict[str, Spread]
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "config": self.config,
            "summary": {k: v.to_dict() for k, v in self.summary.items()},
            "runs": self.runs,
            "environment": self.environment,
        }


def bench_prompt_tokens(engine, n: int) -> list[int]:
    """Exactly ``n`` tokens of the shipped text (repeated if it is shorter), BOS first where the model wants it."""
    from .perplexity import fixed_text

    llm = engine.llama
    text_tokens = llm.tokenize(fixed_text().encode("utf-8"), add_bos=False)
    bos = [llm.token_bos()] if llm._model.add_bos_token() and llm.token_bos() >= 0 else []
    tokens = list(bos)
    while len(tokens) < n:
        tokens.extend(text_tokens[: n - len(tokens)])
    return tokens[:n]


def _one_run(path: Path, name: str, config: LLMBenchConfig) -> tuple[dict[str, Any], Any]:
    from .engine import Engine, LoadConfig, SamplingConfig, llama_cpp_module
    from .memory import peak_rss_bytes, reset_peak, rss_bytes

    lib = llama_cpp_module()
    gc.collect()
    rss0 = rss_bytes()
    peak_ok = reset_peak()
    engine = Engine.load(path, LoadConfig(n_ctx=config.context, n_threads=config.n_threads), name=name)
    try:
        prompt = bench_prompt_tokens(engine, config.prompt_tokens)
        sampling = SamplingConfig(max_tokens=config.gen_tokens, temperature=0.0, ignore_eos=True)
        engine.reset()
        lib.llama_perf_context_reset(engine.llama.ctx)
        gen = engine.generate(prompt, sampling)
        for _ in gen:
            pass
        perf = lib.llama_perf_context(engine.llama.ctx)
        rss1 = rss_bytes()
        peak = peak_rss_bytes() if peak_ok else None
        pp_s = perf.t_p_eval_ms / 1e3
        run = {
            "load_s": engine.load_s,
            "ttft_s": gen.ttft_s,
            "prompt_tokens": gen.prompt_tokens,
            "prompt_tps": perf.n_p_eval / pp_s if pp_s > 0 else None,
            "completion_tokens": gen.completion_tokens,
            "decode_tps": gen.decode_tps,
            "peak_rss_bytes": peak,
            "rss_bytes": rss1,
            "rss_added_bytes": rss1 - rss0 if rss0 is not None and rss1 is not None else None,
        }
        return run, engine.info
    finally:
        engine.close()


def bench_llm(model: str | os.PathLike, config: LLMBenchConfig | None = None, progress=None) -> LLMBenchResult:
    """Run ``config.repeat`` load-prompt-generate cycles on ``model`` (a .gguf or a bundle holding one)."""
    from .model_file import resolve_gguf

    config = config or LLMBenchConfig()
    path, name = resolve_gguf(model)
    runs, info = [], None
    for i in range(config.repeat):
        run, info = _one_run(path, name, config)
        runs.append(run)
        if progress is not None:
            progress(i + 1)
    assert info is not None  # LLMBenchConfig checks repeat >= 1
    summary = {key: Spread.of([r[key] for r in runs]) for key, *_ in METRICS}
    threads = config.n_threads
    if threads is None:
        from .engine import default_threads

        threads = default_threads()
    model_info = {
        "name": info.name, "path": str(path), "quantization": info.quantization, "description": info.description,
        "architecture": info.architecture, "n_params": info.n_params, "file_bytes": info.file_bytes,
        "context_length_train": info.context_length_train,
    }
    cfg = asdict(config) | {"n_threads": threads, "n_ctx": config.context, "logits_all": False}
    return LLMBenchResult(model_info, cfg, runs, summary, llm_environment(threads))


def render_table(result: LLMBenchResult):
    """A rich Table: one row per metric, mean ± std (min-max) over the runs."""
    from rich.table import Table

    m, c = result.model, result.config
    title = (f"{m['name']}  {m['quantization']}  {m['file_bytes'] / 2**20:.0f} MB  "
             f"{c['prompt_tokens']}-token prompt, {c['gen_tokens']} generated, {c['n_threads']} threads")
    table = Table(title=title, caption=f"{len(result.runs)} runs; {describe_environment(result.environment)}")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("metric", "left"), ("mean", "right"), ("std", "right"), ("min", "right"), ("max", "right"), ("unit", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for key, label, unit, scale, fmt in METRICS:
        s = result.summary[key]
        if not s.n:
            table.add_row(label, "n/a", "", "", "", unit)
            continue
        table.add_row(label, *(format(v * scale, fmt) for v in (s.mean, s.std, s.min, s.max)), unit)
    return table


def run_cli(args) -> int:
    """``edgeship llm bench MODEL``."""
    from rich.progress import Progress

    from .._config import config_from_args
    from ..util import console as make_console
    from ..util import emit_json
    from .engine import llama_cpp_module
    from .report import _clean

    llama_cpp_module()  # first: without the llm extra, say which one to install
    config = config_from_args(LLMBenchConfig, args)
    console = make_console(stderr=args.json == "-")
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("loading and generating", total=config.repeat)
        result = bench_llm(args.model, config, progress=lambda i: bar.update(task, completed=i))
    console.print(render_table(result))
    if result.model["quantization"] in ("Q4_1", "Q5_1", "Q5_0") and not args.json:
        console.print("[dim]hint: Q4_0 has repacked AVX2/NEON kernels in llama.cpp; "
                      "`edgeship llm quantize IN OUT --type Q4_0` and bench both to compare[/dim]")
    emit_json(args.json, _clean(result.to_dict()), say=console.print)
    return 0


__all__ = ["LLMBenchConfig", "LLMBenchResult", "bench_llm", "bench_prompt_tokens", "render_table"]
