"""Errors of the LLM part, under the one tree of ``edgeship.errors``::

    EdgeshipError
     ├── LLMError                 llama.cpp failed: a GGUF would not load, quantization failed
     │    └── GenerationFailed    it failed mid-generation (llm/queueing.py)
     ├── InputError
     │    └── ContextLengthError  a prompt (plus the tokens asked for) does not fit the context
     └── RequestError
          └── OpenAIError         a refused OpenAI request: its HTTP status and OpenAI's error body
                                  (llm/openai_protocol.py)
"""

from __future__ import annotations

from ..errors import EdgeshipError, InputError


class LLMError(EdgeshipError):
    """llama.cpp could not do what was asked (load, decode, quantize); the message says why."""


class ContextLengthError(InputError):
    """The prompt, plus the tokens asked for, does not fit the model's context."""

    def __init__(self, message: str, *, prompt_tokens: int, n_ctx: int, excess: int):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        self.excess = excess


__all__ = ["ContextLengthError", "LLMError"]
