"""Quantize a GGUF with llama.cpp, then measure what the smaller file costs: size, speed, perplexity.

>>> r = quantize_gguf("model.f16.gguf", "model.Q4_K_M.gguf", QuantizeConfig(FileType.Q4_K_M))
>>> r.source.file_bytes, r.output.file_bytes, r.source.perplexity, r.output.perplexity

The file is written to a temporary name beside the output, fsynced and renamed, so an interrupted
run never leaves a half-written model under the output name. Both models are then benchmarked
(the same prompt, greedy, the same threads) and scored on the evaluation text shipped with
edgeship, in this run, on this machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import JustifyMethod

from ..errors import InputError
from ..util import atomic_path
from .errors import LLMError
from .gguf_types import FileType


@dataclass(frozen=True)
class QuantizeConfig:
    type: FileType
    n_threads: int | None = None
    # Requantizing an already-quantized file (Q4_1 -> Q4_0) works but loses more than starting from
    # F16/F32; llama.cpp refuses unless asked, edgeship asks and says so in the report.
    allow_requantize: bool = True
    measure: bool = True  # benchmark and score both files
    repeat: int = 3
    prompt_tokens: int = 64
    gen_tokens: int = 64
    perplexity_ctx: int = 512
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.type, FileType):
            raise InputError(f"type: expected a FileType, got {self.type!r}")
        if self.repeat < 1:
            raise InputError(f"repeat: expected a positive integer, got {self.repeat}")


@dataclass
class ModelMeasurement:
    """One side of the comparison."""

    path: str
    quantization: str
    file_bytes: int
    ttft_ms: float | None = None
    prompt_tps: float | None = None
    decode_tps: float | None = None
    decode_tps_std: float | None = None
    perplexity: float | None = None


@dataclass
class QuantizeResult:
    source: ModelMeasurement
    output: ModelMeasurement
    type: str
    requantized: bool
    quantize_s: float
    config: dict[str, Any] = field(default_factory=dict)
    perplexity_text: str = ""
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        return self.output.file_bytes / self.source.file_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"size_ratio": self.size_ratio}


def _source_type(path: Path) -> int | None:
    """general.file_type of a GGUF, read with the gguf package (no model load)."""
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))
        field_ = reader.fields.get("general.file_type")
        return int(field_.parts[field_.data[0]][0]) if field_ is not None else None
    except Exception:  # unreadable header: llama.cpp will say what is wrong when it loads the file
        return None


@contextlib.contextmanager
def _stderr_to(file):
    """Point file descriptor 2 (where C code writes) at ``file`` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def write_quantized(src: Path, dst: Path, config: QuantizeConfig) -> float:
    """llama_model_quantize into a temp file beside ``dst``, fsync, rename. Returns the seconds it took."""
    from .engine import llama_cpp_module

    lib = llama_cpp_module()
    params = lib.llama_model_quantize_default_params()
    params.ftype = int(config.type)
    params.nthread = config.n_threads or 0  # 0: llama.cpp uses every hardware thread
    params.allow_requantize = config.allow_requantize
    t0 = time.perf_counter()
    # llama.cpp logs a line per tensor on the C stderr: keep it aside, show it only when quantizing fails.
    with tempfile.TemporaryFile() as log, atomic_path(dst) as tmp:
        with _stderr_to(log):
            rc = lib.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.is_file():
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            raise LLMError(f"llama.cpp could not quantize {src} to {config.type.name} (return code {rc}): "
                           + (" | ".join(tail) or "no message"))
    return time.perf_counter() - t0


def _measure(path: Path, config: QuantizeConfig) -> ModelMeasurement:
    from .bench import LLMBenchConfig, bench_llm
    from .perplexity import PerplexityConfig, perplexity

    bench = bench_llm(path, LLMBenchConfig(prompt_tokens=config.prompt_tokens, gen_tokens=config.gen_tokens,
                                           repeat=config.repeat, n_threads=config.n_threads))
    ppl = perplexity(path, PerplexityConfig(n_ctx=config.perplexity_ctx, n_threads=config.n_threads))
    s = bench.summary
    return ModelMeasurement(
        path=str(path), quantization=bench.model["quantization"], file_bytes=path.stat().st_size,
        ttft_ms=s["ttft_s"].mean * 1e3, prompt_tps=s["prompt_tps"].mean, decode_tps=s["decode_tps"].mean,
        decode_tps_std=s["decode_tps"].std, perplexity=ppl.perplexity,
    )


def quantize_gguf(src: str | os.PathLike, dst: str | os.PathLike, config: QuantizeConfig, progress=None) -> QuantizeResult:
    """Quantize ``src`` (a .gguf or a bundle holding one) to ``dst`` (a .gguf) and measure both."""
    from .gguf_types import file_type_name
    from .model_file import resolve_gguf
    from .perplexity import TEXT_NAME
    from .report import llm_environment

    src_path, _ = resolve_gguf(src)
    dst = Path(dst)
    if dst.suffix.lower() != ".gguf":
        raise InputError(f"{dst}: the output must be a .gguf file")
    if dst.exists() and dst.resolve() == src_path.resolve():
        raise InputError(f"{dst}: is the input file; write the quantized model to another path")
    if dst.exists() and not config.overwrite:
        raise InputError(f"{dst}: already exists; choose another path or pass --force")
    dst.parent.mkdir(parents=True, exist_ok=True)
    step = progress or (lambda msg: None)
    src_type = _source_type(src_path)
    requantized = src_type is not None and src_type not in (FileType.F32, FileType.F16, FileType.BF16)
    step(f"quantizing to {config.type.name}")
    seconds = write_quantized(src_path, dst, config)
    before = ModelMeasurement(str(src_path), file_type_name(src_type) if src_type is not None else "unknown",
                              src_path.stat().st_size)
    after = ModelMeasurement(str(dst), config.type.name, dst.stat().st_size)
    env: dict[str, Any] = {}
    if config.measure:
        step("measuring the input model")
        before = _measure(src_path, config)
        step("measuring the quantized model")
        after = _measure(dst, config)
        from .engine import default_threads

        env = llm_environment(config.n_threads or default_threads())
    cfg = asdict(config) | {"type": config.type.name}
    return QuantizeResult(before, after, config.type.name, requantized, seconds, cfg, TEXT_NAME, env)


def render_table(result: QuantizeResult):
    from rich.table import Table

    from .report import describe_environment

    a, b = result.source, result.output
    table = Table(title=f"{Path(a.path).name} -> {Path(b.path).name}",
                  caption=(f"measured in this run: {result.config['prompt_tokens']}-token prompt, "
                           f"{result.config['gen_tokens']} generated, greedy, {result.config['repeat']} runs each; "
                           f"perplexity on edgeship's {result.perplexity_text} ({result.config['perplexity_ctx']}-token "
                           f"windows); {describe_environment(result.environment) if result.environment else ''}"))
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("", "left"), ("input", "right"), ("output", "right"), ("change", "right"))
    for col, justify in columns:
        table.add_column(col, justify=justify)

    def ratio(x, y):
        return "" if x is None or y is None or not x else f"{y / x:.2f}x"

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    table.add_row("type", a.quantization, b.quantization, "")
    table.add_row("file size (MB)", fmt(a.file_bytes / 2**20, ".1f"), fmt(b.file_bytes / 2**20, ".1f"),
                  ratio(a.file_bytes, b.file_bytes))
    table.add_row("prompt processing (tok/s)", fmt(a.prompt_tps, ".1f"), fmt(b.prompt_tps, ".1f"),
                  ratio(a.prompt_tps, b.prompt_tps))
    table.add_row("generation (tok/s)", fmt(a.decode_tps, ".1f"), fmt(b.decode_tps, ".1f"),
                  ratio(a.decode_tps, b.decode_tps))
    table.add_row("time to first token (ms)", fmt(a.ttft_ms, ".1f"), fmt(b.ttft_ms, ".1f"), ratio(a.ttft_ms, b.ttft_ms))
    table.add_row("perplexity (lower is better)", fmt(a.perplexity, ".2f"), fmt(b.perplexity, ".2f"),
                  ratio(a.perplexity, b.perplexity))
    return table


def run_cli(args) -> int:
    """``edgeship llm quantize IN OUT --type T``."""
    from ..util import console as make_console
    from ..util import emit_json
    from .engine import llama_cpp_module
    from .gguf_types import parse_file_type
    from .report import _clean

    llama_cpp_module()  # first: without the llm extra, say which one to install
    try:
        ftype = parse_file_type(args.type)
    except ValueError as exc:
        raise InputError(f"--type: {exc}") from None
    config = QuantizeConfig(type=ftype, n_threads=args.threads, measure=not args.no_measure, repeat=args.repeat,
                            overwrite=args.force)
    console = make_console(stderr=args.json == "-")
    with console.status("quantizing") as status:
        result = quantize_gguf(args.input, args.output, config, progress=status.update)
    console.print(render_table(result))
    if result.requantized:
        console.print(f"[yellow]note:[/yellow] the input was already quantized ({result.source.quantization}); "
                      "quantizing from the F16/F32 original loses less")
    console.print(f"wrote {args.output} ({result.output.file_bytes / 2**20:.1f} MB, "
                  f"{result.size_ratio:.0%} of the input) in {result.quantize_s:.1f} s")
    emit_json(args.json, _clean(result.to_dict()), say=console.print)
    return 0


__all__ = ["ModelMeasurement", "QuantizeConfig", "QuantizeResult", "quantize_gguf", "render_table",
           "write_quantized"]
