"""Vision + LLM: a vision result described by a local LLM, streamed, with the prompt's head cached.

>>> from edgeship.pipeline import DescribeConfig, Pipeline
>>> pipe = Pipeline.load("effnet-lite0/", "SmolLM2-135M-Instruct.Q4_1.gguf", DescribeConfig(max_tokens=48))
>>> for event in pipe.describe("chelsea.png"):
...     print(event.kind, event.data)

``edgeship describe`` runs it in one process; ``edgeship serve BUNDLE --llm MODEL`` answers
``POST /v1/pipelines/describe`` with it. Names resolve on first use; llama.cpp and ONNX Runtime
are imported only when a model loads.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DescribeConfig": ".config",
    "DEFAULT_PROMPT": ".config",
    "DEFAULT_SYSTEM": ".config",
    "Event": ".describe",
    "Pipeline": ".describe",
    "PromptTemplate": ".prompt",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgeship.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)


def __dir__() -> list[str]:
    return __all__
