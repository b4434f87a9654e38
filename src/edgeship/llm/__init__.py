"""GGUF language models with llama.cpp: load, stream, benchmark, quantize, chat, serve (OpenAI API).

>>> from edgeship.llm import Engine, LoadConfig, SamplingConfig, default_llm_path
>>> engine = Engine.load(default_llm_path(), LoadConfig(n_threads=2))
>>> prompt = engine.chat_prompt([{"role": "user", "content": "Name the capital city of Germany."}])
>>> print("".join(engine.generate(prompt, SamplingConfig(temperature=0.0))))
The capital city of Germany is Berlin.

Light on import: names resolve on first use, and llama.cpp is imported only when a model loads
(without it, MissingDependencyError says ``pip install 'edgeship[llm]'``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Engine": "edgeship.llm.engine",
    "Generation": "edgeship.llm.engine",
    "LoadConfig": "edgeship.llm.engine",
    "ModelInfo": "edgeship.llm.engine",
    "Prompt": "edgeship.llm.engine",
    "SamplingConfig": "edgeship.llm.engine",
    "LLMError": "edgeship.llm.errors",
    "ContextLengthError": "edgeship.llm.errors",
    "FileType": "edgeship.llm.gguf_types",
    "LLMBenchConfig": "edgeship.llm.bench",
    "LLMBenchResult": "edgeship.llm.bench",
    "bench_llm": "edgeship.llm.bench",
    "QuantizeConfig": "edgeship.llm.quantize",
    "QuantizeResult": "edgeship.llm.quantize",
    "quantize_gguf": "edgeship.llm.quantize",
    "PerplexityConfig": "edgeship.llm.perplexity",
    "PerplexityResult": "edgeship.llm.perplexity",
    "perplexity": "edgeship.llm.perplexity",
    "ChatConfig": "edgeship.llm.chat",
    "chat": "edgeship.llm.chat",
    "LLMService": "edgeship.llm.openai_api",
    "create_llm_router": "edgeship.llm.openai_api",
    "default_llm_path": "edgeship.llm.default",
    "demo_section": "edgeship.llm.default",
    "resolve_gguf": "edgeship.llm.model_file",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgeship.llm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
