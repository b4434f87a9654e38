"""``response_format`` as a llama.cpp grammar: the sampler only picks tokens the grammar allows.

>>> grammar = response_grammar("json_schema", '{"type": "string", "enum": ["yes", "no"]}')
>>> engine.generate(prompt, SamplingConfig(grammar=grammar))      # '"yes"' or '"no"', then the end

``json_object`` uses llama.cpp's JSON grammar (a JSON object: ``llama_cpp.llama_grammar.JSON_GBNF``); ``json_schema`` is turned into a grammar by llama-cpp-python's
converter. A schema is a client's input, so before conversion it is held to two rules: no ``$ref``
but to the schema itself (the converter would fetch an http(s) one from the device) and no count
(``minItems``, ``maxLength``, ...) over MAX_REPEAT (the converter writes one rule per repetition:
``"maxItems": 10**9`` would fill memory).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputError
from .engine import llama_cpp_module

MAX_REPEAT = 256
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def _check(node: Any, where: str) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check(item, f"{where}[{i}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and not (isinstance(value, str) and value.startswith("#")):
                raise InputError(f"{where}.$ref: only references inside the schema ('#/...') are supported, "
                                 f"got {str(value)[:100]!r}")
            if key in _COUNTS and isinstance(value, int) and value > MAX_REPEAT:
                raise InputError(f"{where}.{key}: {value} is over this server's limit of {MAX_REPEAT}")
            _check(value, f"{where}.{key}")


def response_grammar(kind: str, schema: str | None = None):
    """The LlamaGrammar of a response format ("json_object", or "json_schema" with its JSON text);
    InputError naming the part of the schema that cannot be used."""
    llama_cpp_module()  # MissingDependencyError naming the extra, before the submodule import
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if kind == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if kind != "json_schema" or schema is None:
        raise InputError(f"response_format: expected json_object or json_schema, got {kind!r}")
    _check(json.loads(schema), "schema")
    try:
        return LlamaGrammar.from_json_schema(schema, verbose=False)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, NotImplementedError) as exc:
        raise InputError(f"response_format.json_schema: this schema cannot be turned into a grammar "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from exc


__all__ = ["MAX_REPEAT", "response_grammar"]
