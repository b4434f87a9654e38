"""response_format, the frequency and presence penalties, /v1/embeddings and a server without --llm,
through the OpenAI routes in-process (httpx.ASGITransport) on the tiny random GGUF run by llama.cpp."""

from __future__ import annotations

import asyncio
import json

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from tests.llm.test_openai_api import _error, _run  # noqa: E402

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello there"}]
YES_NO = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "string", "enum": ["yes", "no"]}}}


def _text(resp) -> str:
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    return choice["message"]["content"] if "message" in choice else choice["text"]


def test_a_json_schema_holds_the_output_to_it(tiny_gguf):
    """Random weights write noise; the schema's grammar leaves the sampler only '"yes"' or '"no"'."""
    reqs = [
        (CHAT, {"messages": HELLO, "max_tokens": 24, "temperature": t, "seed": 3, "response_format": YES_NO})
        for t in (0, 1.0)
    ] + [(CHAT, {"messages": HELLO, "max_tokens": 24, "temperature": 0})]
    *held, free = _run(tiny_gguf, reqs)[0]
    for resp in held:
        assert json.loads(_text(resp)) in ("yes", "no"), resp.text
        assert resp.json()["choices"][0]["finish_reason"] == "stop"
    assert _text(free) not in ('"yes"', '"no"')  # without the grammar, the same model writes noise


def test_an_object_schema_and_json_object_give_json(tiny_gguf):
    schema = {"type": "json_schema", "json_schema": {"name": "o", "strict": True, "schema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}
    reqs = [
        (CHAT, {"messages": HELLO, "max_tokens": 40, "temperature": 0.8, "seed": 1, "response_format": schema}),
        ("/v1/completions", {"prompt": "x", "max_tokens": 40, "temperature": 0.8, "seed": 1,
                             "response_format": {"type": "json_object"}}),
        (CHAT, {"messages": HELLO, "max_tokens": 8, "temperature": 0, "response_format": {"type": "text"}}),
    ]
    obj, anything, text = _run(tiny_gguf, reqs)[0]
    assert isinstance(json.loads(_text(obj))["ok"], bool)
    assert _text(anything).startswith("{")
    assert not _text(text).startswith("{")


@pytest.mark.parametrize("param", ["frequency_penalty", "presence_penalty"])
def test_penalties_reach_llama_cpp(tiny_gguf, param):
    """Greedy decoding is deterministic: only a penalty applied by the sampler can change its output."""
    body = {"messages": HELLO, "max_tokens": 100, "temperature": 0}
    reqs = [(CHAT, body), (CHAT, {**body, param: 2.0}), (CHAT, {**body, param: -2.0}), (CHAT, {**body, param: 0})]
    base, up, down, zero = (_text(r) for r in _run(tiny_gguf, reqs)[0])
    assert up != base and down != base
    assert zero == base


def test_out_of_range_or_unsupported_values_are_400s_naming_the_parameter(tiny_gguf):
    reqs = [
        (CHAT, {"messages": HELLO, "frequency_penalty": 2.5}),
        (CHAT, {"messages": HELLO, "presence_penalty": -3}),
        (CHAT, {"messages": HELLO, "presence_penalty": "high"}),
        (CHAT, {"messages": HELLO, "response_format": {"type": "xml"}}),
        (CHAT, {"messages": HELLO, "response_format": {"type": "json_schema"}}),
        (CHAT, {"messages": HELLO, "response_format": {"type": "json_schema", "json_schema": {
            "name": "r", "schema": {"$ref": "http://169.254.169.254/latest/meta-data"}}}}),
        (CHAT, {"messages": HELLO, "response_format": {"type": "json_schema", "json_schema": {
            "name": "big", "schema": {"type": "array", "items": {"type": "integer"}, "maxItems": 10**9}}}}),
        (CHAT, {"messages": HELLO, "max_tokens": 4, "temperature": 0}),
    ]
    (freq, pres, pres_type, fmt, no_schema, remote, huge, ok), _, _ = _run(tiny_gguf, reqs)
    assert "[-2, 2]" in _error(freq, 400, "invalid_value", "frequency_penalty")["message"]
    _error(pres, 400, "invalid_value", "presence_penalty")
    _error(pres_type, 400, "invalid_type", "presence_penalty")
    msg = _error(fmt, 400, "invalid_value", "response_format")["message"]
    assert "json_object" in msg and "json_schema" in msg
    _error(no_schema, 400, param="response_format.json_schema")
    assert "$ref" in _error(remote, 400, param="response_format")["message"]
    assert "maxItems" in _error(huge, 400, param="response_format")["message"]
    assert ok.status_code == 200


def test_embeddings_answer_an_openai_error_that_says_why_and_what_to_do(tiny_gguf):
    (resp,), _, _ = _run(tiny_gguf, [("/v1/embeddings", {"model": "tiny-random-llama", "input": "hello"})])
    msg = _error(resp, 400, "embeddings_not_supported", "model")["message"]
    assert "--embedding" in msg


def test_a_server_without_llm_answers_openai_routes_with_model_not_loaded(tiny_bundle):
    pytest.importorskip("prometheus_client")
    from edgeship.serve.app import create_app
    from edgeship.serve.config import ServeConfig

    app = create_app([tiny_bundle.root], ServeConfig(prep_threads=1))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return [
                await c.post("/v1/chat/completions", json={"model": "smollm2", "messages": HELLO}),
                await c.post("/v1/completions", json={"prompt": "x"}),
                await c.post("/v1/embeddings", json={"input": "x"}),
                await c.get("/v1/models/smollm2"),
                await c.get("/v1/models/tiny"),
            ]

    *refused, vision = asyncio.run(main())
    for resp in refused:
        err = _error(resp, 404, "model_not_loaded")
        assert err["type"] == "invalid_request_error"
        assert "no language model is loaded" in err["message"] and "serve --llm MODEL" in err["message"]
    assert vision.status_code == 200 and vision.json()["id"] == "tiny"


def test_a_client_error_is_one_log_line_and_a_server_failure_keeps_its_traceback(caplog):
    from edgeship.llm.openai_protocol import OpenAIError
    from edgeship.llm.refusals import refusal

    try:
        raise RuntimeError("llama_decode returned -3")
    except RuntimeError as exc:
        cause = exc
    with caplog.at_level("INFO", logger="edgeship.serve"):
        client = refusal(OpenAIError(400, "Invalid 'stop'", param="stop"), "POST /v1/chat/completions")
        busy = refusal(OpenAIError(503, "busy", type="server_error"), "POST /v1/completions")
        failed = refusal(OpenAIError(500, "Generation failed", type="server_error"), "POST /v1/completions", cause)
    assert [client.status_code, busy.status_code, failed.status_code] == [400, 503, 500]
    lines = caplog.records
    assert [r.levelname for r in lines] == ["INFO", "INFO", "ERROR"]
    assert lines[0].getMessage() == "POST /v1/chat/completions -> 400 Invalid 'stop'"
    assert lines[0].exc_info is None and lines[1].exc_info is None
    assert lines[2].exc_info[1] is cause
