"""The OpenAI wire format, without pydantic: request validation, error bodies, pre-serialised chunks.

>>> req = parse_request(b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": true}', CHAT)
>>> enc = ChunkEncoder(CHAT, "m"); enc.piece("Hel")
b'data: {"id":"chatcmpl-...","object":"chat.completion.chunk",...,"delta":{"content":"Hel"},...}\\n\\n'

Every malformed request raises OpenAIError with the status and the body OpenAI would send:
``{"error": {"message", "type", "param", "code"}}``. Streamed chunks are a constant prefix, the
JSON-escaped text and a constant suffix, so a token costs one ``json.dumps`` of a short string.
"""

from __future__ import annotations

import enum
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import RequestError

MAX_STOP = 4
MAX_STOP_CHARS = 256
ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class RequestLimits:
    """What one request may hold, checked while it is parsed, before any template or tokenizer work.

    max_messages: messages in a chat request.
    max_prompt_bytes: UTF-8 bytes of all message contents (or of a completion prompt) together;
      None: no limit here. The service sets it to the context length times the longest token of
      the vocabulary: a longer text cannot fit the context, however it is tokenised.
    max_json_depth: nesting of arrays and objects in the body (the JSON parser recurses per level).
    """

    max_messages: int = 1024
    max_prompt_bytes: int | None = None
    max_json_depth: int = 32


class Endpoint(str, enum.Enum):
    CHAT = "chat"  # POST /v1/chat/completions
    COMPLETION = "completion"  # POST /v1/completions


CHAT, COMPLETION = Endpoint.CHAT, Endpoint.COMPLETION


class OpenAIError(RequestError):
    """A request the server refuses, carrying the HTTP status and the OpenAI-style error body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(status, message)
        self.type, self.param, self.code = type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class GenerationRequest:
    """A validated /v1/chat/completions or /v1/completions request."""

    endpoint: Endpoint
    model: str | None
    messages: tuple[dict[str, str], ...] = ()  # chat
    prompt: str | list[int] = ""  # completions: text, or token ids
    max_tokens: int | None = None
    temperature: float = 1.0  # OpenAI's defaults
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    frequency_penalty: float = 0.0  # OpenAI's range, -2 to 2; llama.cpp's penalty_freq
    presence_penalty: float = 0.0  # llama.cpp's penalty_present
    # None: free text. Else ("json_object", None) or ("json_schema", the schema as JSON text): the
    # output is held to it by a llama.cpp grammar (openai_api builds it, off the event loop).
    response_format: tuple[str, str | None] | None = None


FORMATS = ("text", "json_object", "json_schema")


def _response_format(value: Any) -> tuple[str, str | None] | None:
    """OpenAI's ``response_format``: {"type": "text" | "json_object"} or {"type": "json_schema",
    "json_schema": {"name": ..., "schema": {...}}}; anything else is a 400 naming what is supported."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in FORMATS:
        raise _bad(f"Invalid 'response_format': expected an object whose 'type' is one of {', '.join(FORMATS)} "
                   f"(this server supports all three), got {json.dumps(value)[:200]}.", "response_format")
    if kind == "text":
        return None
    if kind == "json_object":
        return ("json_object", None)
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise _bad("Invalid 'response_format.json_schema': expected an object with a 'schema' object "
                   '({"name": "...", "schema": {"type": "object", ...}}).', "response_format.json_schema")
    return ("json_schema", json.dumps(schema))


def _bad(message: str, param: str | None, code: str | None = "invalid_value") -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def _number(body: dict, name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f"Invalid '{name}': expected a number, got {json.dumps(value)}.", name, "invalid_type")
    if not lo <= value <= hi:
        raise _bad(f"Invalid '{name}': expected a value within [{lo:g}, {hi:g}], got {value}.", name)
    return float(value)


def _int(body: dict, name: str, minimum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"Invalid '{name}': expected an integer, got {json.dumps(value)}.", name, "invalid_type")
    if minimum is not None and value < minimum:
        raise _bad(f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, "
                   f"but got {value} instead.", name, "integer_below_min_value")
    return value


class _Budget:
    """Counts the prompt's UTF-8 bytes as it is parsed; refuses (400) as soon as they pass the limit."""

    def __init__(self, limit: int | None, param: str):
        self.limit, self.param, self.used = limit, param, 0

    def take(self, text: str, where: str) -> str:
        try:
            n = len(text.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): no tokenizer can take it
            raise _bad(f"Invalid '{where}': not valid Unicode text (it holds a lone surrogate).", where) from None
        self.used += n
        if self.limit is not None and self.used > self.limit:
            raise OpenAIError(400, f"The prompt is over {self.limit:,} bytes of text, more than this model's context "
                                   "can hold; shorten it.", param=self.param, code="context_length_exceeded")
        return text


def _content(value: Any, where: str, budget: _Budget) -> str:
    """Message content: a string, or a list of ``{"type": "text", "text": ...}`` parts (joined)."""
    if isinstance(value, str):
        return budget.take(value, where)
    if value is None:
        return ""
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad(f"Invalid '{where}[{i}]': only text content parts are supported "
                           '({"type": "text", "text": "..."}).', where)
            texts.append(budget.take(part["text"], f"{where}[{i}]"))
        return "".join(texts)
    raise _bad(f"Invalid '{where}': expected a string or a list of text parts.", where, "invalid_type")


def _messages(value: Any, limits: RequestLimits) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _bad("Invalid 'messages': expected a non-empty array of messages.", "messages",
                   "invalid_type" if not isinstance(value, list) else "empty_array")
    if len(value) > limits.max_messages:
        raise _bad(f"Invalid 'messages': {len(value)} messages, more than this server takes "
                   f"({limits.max_messages}).", "messages", "array_above_max_length")
    budget = _Budget(limits.max_prompt_bytes, "messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise _bad(f"Invalid 'messages[{i}]': expected an object.", f"messages[{i}]", "invalid_type")
        role = m.get("role")
        if role not in ROLES:
            raise _bad(f"Invalid 'messages[{i}].role': expected one of {', '.join(ROLES)}, got {json.dumps(role)}.",
                       f"messages[{i}].role")
        # The templates of small models know 'system', not OpenAI's newer 'developer'.
        out.append({"role": "system" if role == "developer" else role,
                    "content": _content(m.get("content"), f"messages[{i}].content", budget)})
    return tuple(out)


def _prompt(value: Any, limits: RequestLimits) -> str | list[int]:
    budget = _Budget(limits.max_prompt_bytes, "prompt")
    if isinstance(value, str):
        return budget.take(value, "prompt")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return budget.take(value[0], "prompt")
    if isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return list(value)
    if isinstance(value, list) and len(value) > 1:
        raise _bad("Invalid 'prompt': batches of prompts are not supported; send one prompt per request.", "prompt")
    raise _bad("Invalid 'prompt': expected a string or an array of token ids.", "prompt", "invalid_type")


def parse_request(raw: bytes, endpoint: Endpoint, limits: RequestLimits = RequestLimits()) -> GenerationRequest:
    """Validate a request body; OpenAIError (400) naming the offending parameter otherwise."""
    from ..util import json_depth

    if json_depth(raw, limits.max_json_depth) > limits.max_json_depth:
        raise OpenAIError(400, f"The JSON body nests arrays and objects more than {limits.max_json_depth} levels "
                               "deep.", code="invalid_json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise OpenAIError(400, f"We could not parse the JSON body of your request ({exc}). The body must be "
                               "a JSON object; see https://platform.openai.com/docs/api-reference",
                          code="invalid_json") from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("Invalid 'model': expected a string.", "model", "invalid_type")
    n = _int(body, "n", 1)
    if n not in (None, 1):
        raise _bad("Invalid 'n': this server generates one choice per request (n=1).", "n", "unsupported_value")
    for unsupported in ("logprobs", "top_logprobs", "tools", "functions", "echo", "suffix", "best_of"):
        value = body.get(unsupported)
        if value and not (unsupported == "best_of" and value == 1):
            raise _bad(f"Unsupported parameter '{unsupported}' for this server.", unsupported, "unsupported_parameter")
    max_tokens = _int(body, "max_tokens", 1)
    if max_tokens is None:
        max_tokens = _int(body, "max_completion_tokens", 1)
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOP:
        stops = tuple(s for s in stop if s)
    else:
        raise _bad(f"Invalid 'stop': expected a string or an array of at most {MAX_STOP} strings.", "stop")
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        # Each generated token is matched against every tail of every stop string.
        raise _bad(f"Invalid 'stop': each stop string may be at most {MAX_STOP_CHARS} characters.", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("Invalid 'stream': expected a boolean.", "stream", "invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("Invalid 'stream_options': expected an object.", "stream_options", "invalid_type")
    common: dict[str, Any] = dict(
        endpoint=endpoint, model=model, max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0), top_p=_number(body, "top_p", 1.0, 0.0, 1.0),
        stop=stops, seed=_int(body, "seed"), stream=stream, include_usage=bool(options.get("include_usage")),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        response_format=_response_format(body.get("response_format")),
    )
    if endpoint is CHAT:
        return GenerationRequest(messages=_messages(body.get("messages"), limits), **common)
    if "prompt" not in body:
        raise _bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    return GenerationRequest(prompt=_prompt(body["prompt"], limits), **common)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class ChunkEncoder:
    """The SSE events of one streamed response, with everything but the token text serialised once."""

    def __init__(self, endpoint: Endpoint, model: str):
        self.endpoint = endpoint
        self.model = model
        self.created = int(time.time())
        if endpoint is CHAT:
            self.id = f"chatcmpl-{uuid.uuid4().hex}"
            head = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": model}
            self._head = _dumps(head)[:-1]  # without the closing brace
            self._prefix = b"data: " + self._head + b',"choices":[{"index":0,"delta":{"content":'
            self._suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self.id = f"cmpl-{uuid.uuid4().hex}"
            head = {"id": self.id, "object": "text_completion", "created": self.created, "model": model}
            self._head = _dumps(head)[:-1]
            self._prefix = b"data: " + self._head + b',"choices":[{"text":'
            self._suffix = b',"index":0,"logprobs":null,"finish_reason":null}]}\n\n'

    def piece(self, text: str) -> bytes:
        return self._prefix + json.dumps(text, ensure_ascii=False).encode("utf-8") + self._suffix

    def role(self) -> bytes:
        """The first chat chunk: the assistant role, no text yet (OpenAI sends this first)."""
        if self.endpoint is not CHAT:
            return b""
        return (b"data: " + self._head
                + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
                  b'"finish_reason":null}]}\n\n')

    def finish(self, reason: str, usage: dict[str, int] | None) -> bytes:
        if self.endpoint is CHAT:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"text": "", "index": 0, "logprobs": None, "finish_reason": reason}
        out = b"data: " + self._head + b',"choices":[' + _dumps(choice) + b"]}\n\n"
        if usage is not None:
            out += b"data: " + self._head + b',"choices":[],"usage":' + _dumps(usage) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(exc: OpenAIError) -> bytes:
        return b"data: " + _dumps(exc.body()) + b"\n\ndata: [DONE]\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def response(endpoint: Endpoint, model: str, text: str, finish_reason: str, use: dict[str, int]) -> dict[str, Any]:
    """The non-streamed response object."""
    created = int(time.time())
    if endpoint is CHAT:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": use,
        }
    return {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": created, "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
        "usage": use,
    }


__all__ = ["CHAT", "COMPLETION", "ChunkEncoder", "Endpoint", "GenerationRequest", "OpenAIError", "RequestLimits",
           "parse_request", "response", "usage"]
