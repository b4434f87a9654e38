"""The OpenAI endpoints in-process (httpx.ASGITransport): the error paths, the formats, the queue."""

from __future__ import annotations

import asyncio
import json

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
prometheus_client = pytest.importorskip("prometheus_client")

from starlette.applications import Starlette  # noqa: E402

from edgeship.llm.openai_api import LLMService, ServiceState, create_llm_router  # noqa: E402
from edgeship.llm.openai_protocol import CHAT, COMPLETION, ChunkEncoder, OpenAIError, parse_request  # noqa: E402

MSG = [{"role": "user", "content": "hello"}]


def _run(tiny_gguf, body, *, queue_size=8, n_ctx=256, before=None, after=None):
    """Start a service on the tiny model, send each request in ``body`` in turn, return the responses."""

    async def main():
        registry = prometheus_client.CollectorRegistry()
        service = LLMService(tiny_gguf, n_ctx=n_ctx, n_threads=1, queue_size=queue_size, registry=registry)
        app = Starlette(routes=create_llm_router(service))
        await service.start()
        if before is not None:
            await before(service)
        out = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path, payload in body:
                content = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
                out.append(await client.post(path, content=content, headers={"content-type": "application/json"}))
        if after is not None:
            await after(service)
        await service.stop()
        return out, service, registry

    return asyncio.run(main())


def _error(resp, status, code=None, param=None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


def test_bad_requests_get_openai_errors_and_the_next_one_is_served(tiny_gguf):
    chat = "/v1/chat/completions"
    reqs = [
        (chat, b'{"model": "tiny", "messages": [ broken'),
        (chat, {"model": "no-such-model", "messages": MSG}),
        (chat, {"messages": MSG, "max_tokens": -5}),
        (chat, {"messages": [{"role": "user", "content": "x " * 400}], "max_tokens": 8}),
        (chat, {"messages": MSG, "max_tokens": 250}),
        (chat, {"messages": []}),
        (chat, {"messages": MSG, "temperature": "hot"}),
        (chat, {"messages": MSG, "n": 3}),
        ("/v1/completions", {"max_tokens": 4}),
        (chat, {"model": "tiny-random-llama", "messages": MSG, "max_tokens": 5, "temperature": 0}),
    ]
    (bad_json, unknown, negative, too_long, too_long_with_answer, empty, bad_type, many, no_prompt, ok), service, _ = \
        _run(tiny_gguf, reqs)
    _error(bad_json, 400, "invalid_json")
    assert "tiny-random-llama" in _error(unknown, 404, "model_not_found", "model")["message"]
    _error(negative, 400, "integer_below_min_value", "max_tokens")
    msg = _error(too_long, 400, "context_length_exceeded", "messages")["message"]
    assert "too many" in msg and "256" in msg
    assert "tokens too many" in _error(too_long_with_answer, 400, "context_length_exceeded")["message"]
    _error(empty, 400, param="messages")
    _error(bad_type, 400, "invalid_type", "temperature")
    _error(many, 400, param="n")
    _error(no_prompt, 400, "missing_required_parameter", "prompt")
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny-random-llama"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] <= 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert service.state is ServiceState.STOPPED


def test_streamed_chat_and_completion_are_server_sent_events(tiny_gguf):
    reqs = [
        ("/v1/chat/completions", {"messages": MSG, "max_tokens": 6, "temperature": 0, "stream": True,
                                  "stream_options": {"include_usage": True}}),
        ("/v1/completions", {"prompt": "the cat", "max_tokens": 6, "temperature": 0, "stream": True}),
        ("/v1/completions", {"prompt": "the cat", "max_tokens": 6, "temperature": 0}),
    ]
    (chat, comp, comp_plain), _, registry = _run(tiny_gguf, reqs)
    for resp in (chat, comp):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [e for e in resp.text.split("\n\n") if e]
        assert all(e.startswith("data: ") for e in events)
        assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in chat.text.split("\n\n") if e and e != "data: [DONE]"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 6
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    comp_chunks = [json.loads(e[6:]) for e in comp.text.split("\n\n") if e and e != "data: [DONE]"]
    comp_text = "".join(c["choices"][0]["text"] for c in comp_chunks)
    assert comp_text == comp_plain.json()["choices"][0]["text"]  # greedy: streamed == not streamed
    assert isinstance(streamed, str)
    # Metrics, on the registry the server passed in.
    get = registry.get_sample_value
    assert get("edgeship_llm_completion_tokens_total", {"model": "tiny-random-llama"}) > 0
    assert get("edgeship_llm_prompt_tokens_total", {"model": "tiny-random-llama"}) > 0
    assert get("edgeship_llm_time_to_first_token_seconds_count", {"model": "tiny-random-llama"}) == 3
    assert get("edgeship_llm_time_per_output_token_seconds_count", {"model": "tiny-random-llama"}) >= 1


def test_full_queue_gets_503_with_retry_after(tiny_gguf):
    async def occupy(service):  # one request running, none allowed to wait
        await service._lock.acquire()
        service._busy = True

    async def release(service):
        service._busy = False
        service._lock.release()

    (resp,), _, _ = _run(tiny_gguf, [("/v1/chat/completions", {"messages": MSG})], queue_size=0, before=occupy,
                         after=release)
    _error(resp, 503, "queue_full")
    assert int(resp.headers["retry-after"]) >= 1


def test_model_card_and_readiness(tiny_gguf):
    service = LLMService(tiny_gguf, n_ctx=128, n_threads=1)
    assert service.name == "tiny-random-llama"
    assert service.ready() == (False, "new")

    async def main():
        await service.start()
        card = service.model_card()
        ready = service.ready()
        await service.stop()
        return card, ready

    card, ready = asyncio.run(main())
    assert ready == (True, "ready")
    assert card["id"] == "tiny-random-llama" and card["object"] == "model" and card["owned_by"] == "edgeship"
    assert card["format"] == "gguf" and card["quantization"] == "F32" and card["context_length"] >= 128  # llama.cpp pads to 256
    assert len(card["sha256"]) == 64
    assert service.ready() == (False, "stopped")
    with pytest.raises(RuntimeError, match="cannot go to loading from stopped"):
        asyncio.run(service.start())


def test_requests_before_start_get_503(tiny_gguf):
    async def main():
        service = LLMService(tiny_gguf, n_ctx=128, n_threads=1)
        app = Starlette(routes=create_llm_router(service))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.post("/v1/chat/completions", json={"messages": MSG})

    _error(asyncio.run(main()), 503, "model_not_ready")


def test_parse_request_and_chunks():
    req = parse_request(json.dumps({"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"},
                                                                                   {"type": "text", "text": "b"}]}],
                                    "stop": "###", "seed": 7, "max_completion_tokens": 9}).encode(), CHAT)
    assert req.messages == ({"role": "system", "content": "ab"},)
    assert (req.stop, req.seed, req.max_tokens, req.temperature) == (("###",), 7, 9, 1.0)
    with pytest.raises(OpenAIError) as err:
        parse_request(b'{"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}', COMPLETION)
    assert err.value.param == "stop"
    with pytest.raises(OpenAIError):
        parse_request(b'[1, 2]', CHAT)
    enc = ChunkEncoder(CHAT, 'say "hi"')
    chunk = json.loads(enc.piece('line\n"quoted" é')[6:])
    assert chunk["choices"][0]["delta"]["content"] == 'line\n"quoted" é' and chunk["model"] == 'say "hi"'
    tail = enc.finish("length", {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}).decode()
    assert tail.endswith("data: [DONE]\n\n") and '"finish_reason":"length"' in tail
