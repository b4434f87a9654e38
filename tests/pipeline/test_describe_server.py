"""A real `edgeship serve EFFICIENTNET-LITE0 --llm SMOLLM2` process on 127.0.0.1: the packaged models,
a real photo, streamed over HTTP."""

from __future__ import annotations

import json

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("llama_cpp")

from tests.serve.support import ServerProcess  # noqa: E402

pytestmark = pytest.mark.slow

URL = "/v1/pipelines/describe"
LIMIT = 256
CAT_LABELS = {"Egyptian cat", "tiger cat", "tabby", "lynx", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module")
def server(lite0_bundle, smollm2):
    srv = ServerProcess([lite0_bundle], "--llm", str(smollm2), "--threads", "1", "--llm-ctx", "1024",
                        "--llm-queue-size", "1", "--llm-max-tokens", str(LIMIT), "--describe-max-tokens", "48")
    srv.wait_ready(timeout=120)  # the LLM loads, the head warms
    yield srv
    srv.stop()


def _events(lines) -> list[tuple[str, dict]]:
    out, kind = [], None
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            out.append((kind, json.loads(line[6:])))
    return out


def test_chelsea_gets_a_streamed_description_that_names_a_cat(server, chelsea):
    with httpx.Client(timeout=300) as c:
        with c.stream("POST", server.url + URL, content=chelsea.read_bytes()) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            evs = _events(resp.iter_lines())
    kinds = [k for k, _ in evs]
    assert kinds[0] == "vision" and kinds[-1] == "done" and kinds.count("token") >= 3, kinds
    vision, done = evs[0][1], evs[-1][1]
    assert vision["model"] == "efficientnet-lite0" and vision["classes"][0]["label"] in CAT_LABELS
    text = done["description"]
    assert text == "".join(d["text"] for k, d in evs if k == "token").strip()
    assert "cat" in text.lower(), text
    assert done["usage"]["reused_prompt_tokens"] > 10  # the head came from the prefix cache
    t = done["timing_ms"]
    assert t["vision"] < t["first_token"] <= t["total"]


def test_a_busy_llm_degrades_describe_and_never_holds_up_predict(server, chelsea):
    """One long generation runs, another waits (queue size 1): describe answers with vision only, at once."""
    story = {"stream": True, "temperature": 0, "max_tokens": LIMIT,
             "messages": [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]}
    img = chelsea.read_bytes()
    with httpx.Client(timeout=300) as c:
        with c.stream("POST", server.url + "/v1/chat/completions", json=story) as running:
            lines = running.iter_lines()
            for line in lines:  # wait until it generates
                if '"content":"' in line and '"content":""' not in line:
                    break
            with c.stream("POST", server.url + "/v1/chat/completions", json=story) as waiting:
                assert waiting.status_code == 200  # admitted: it waits in the queue
                busy = c.post(server.url + URL + "?stream=false", content=img)
                predict = c.post(server.url + "/v1/models/efficientnet-lite0/predict", content=img)
                # The first generation is still under way: the vision answers did not wait for it.
                more = next(line for line in lines if line.startswith("data: "))
                assert more != "data: [DONE]"
    assert busy.status_code == 200, busy.text
    body = busy.json()
    assert body["description"] is None and body["degraded"]["reason"] == "llm_queue_full"
    assert body["vision"]["classes"][0]["label"] in CAT_LABELS
    assert predict.status_code == 200 and predict.json()["classes"][0]["label"] in CAT_LABELS
    # Both streams were abandoned mid-way: the model is free again and describes the next picture.
    again = httpx.post(server.url + URL + "?stream=false", content=img, timeout=300).json()
    assert again["degraded"] is None and again["description"]


def test_a_client_that_disconnects_mid_stream_does_not_hold_up_the_next(server, chelsea):
    img = chelsea.read_bytes()
    with httpx.Client(timeout=300) as c:
        with c.stream("POST", server.url + URL + f"?max_tokens={LIMIT}", content=img) as resp:
            got = 0
            for line in resp.iter_lines():
                if line.startswith("event: token"):
                    got += 1
                if got >= 2:
                    break  # hang up mid-stream
    r = httpx.post(server.url + URL + "?stream=false", content=img, timeout=300)
    assert r.status_code == 200 and r.json()["description"]
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert "edgeship_llm_queue_depth" in metrics and 'edgeship_pipeline_seconds_count{stage="first_token"}' in metrics


def test_bad_input_through_the_real_server(server):
    r = httpx.post(server.url + URL, content=b"%PDF-1.7 not a picture", timeout=60)
    assert r.status_code == 415 and r.json()["error"]["type"] == "unsupported_media_type"
    r = httpx.post(server.url + URL + f"?max_tokens={LIMIT + 1}", content=b"x", timeout=60)
    assert r.status_code == 400 and f"limit of {LIMIT}" in r.json()["error"]["message"]
