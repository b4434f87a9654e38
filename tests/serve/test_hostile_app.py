"""The app in-process (httpx.ASGITransport): what the limits do, deterministically.

A full queue, the Guard's bookkeeping of buffered bytes, and client errors that must be answered
inside the app (an exception that escapes it is what makes the server log a traceback).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from edgeship.serve import ServeConfig, create_app  # noqa: E402
from tests.serve.support import encode, picture  # noqa: E402

PREDICT = "/v1/models/tiny/predict"


def run(app, fn):
    async def main():
        async with app.router.lifespan_context(app):
            # raise_app_exceptions: an exception leaving the app fails the test, as it would put a
            # traceback in a real server's log
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
                return await fn(client)

    return asyncio.run(main())


def test_a_full_queue_is_503_with_retry_after(classifier_bundle):
    app = create_app([classifier_bundle], ServeConfig(queue_size=1))
    state = app.state.edgeship
    jpeg = encode(picture(), "JPEG")

    async def fn(client):
        gate = threading.Event()
        model = state.lookup("tiny").model
        real = model.prepare
        model.prepare = lambda data: gate.wait(10) and real(data)  # the one admitted request stays in its decode
        held = asyncio.create_task(client.post(PREDICT, content=jpeg))
        while state.pending("tiny") != 1:
            await asyncio.sleep(0.005)
        refused = await client.post(PREDICT, content=jpeg)
        live = await client.get("/health/live")
        gate.set()
        return refused, live, await held

    refused, live, held = run(app, fn)
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "overloaded"
    assert live.status_code == 200 and held.status_code == 200


@pytest.mark.parametrize("body, status", [
    (encode(picture(200, 150), "PNG")[:400], 400),  # truncated: fails in the decoder, in the decode thread
])
def test_client_errors_from_the_decode_thread_are_answered_inside_the_app(classifier_bundle, body, status):
    app = create_app([classifier_bundle])

    async def fn(client):
        return await client.post(PREDICT, content=body)

    r = run(app, fn)
    assert r.status_code == status and r.json()["error"]["message"]


def test_a_picture_over_the_decode_budget_is_a_413(classifier_bundle):
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((1500, 1500), dtype=np.uint16)).save(buf, "PNG")
    app = create_app([classifier_bundle], ServeConfig(max_decode_bytes=4 << 20))

    async def fn(client):
        return await client.post(PREDICT, content=buf.getvalue())

    r = run(app, fn)
    assert r.status_code == 413 and r.json()["error"]["type"] == "image_too_large"


def test_the_guard_bounds_bytes_buffered_across_requests():
    from edgeship.serve.guard import Guard

    config = ServeConfig(max_upload_bytes=1000, llm_max_body_bytes=1000, max_body_buffer_bytes=1500)
    sent: list[dict] = []
    gate = asyncio.Event()

    async def app(scope, receive, send):
        try:
            while (await receive()).get("more_body"):
                pass
            await gate.wait()  # the body is held until the answer
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        except Exception as exc:  # what the app's ApiError handler does
            await send({"type": "http.response.start", "status": exc.status, "headers": []})
            await send({"type": "http.response.body", "body": exc.message.encode()})

    guard = Guard(app, config)

    def request(n: int):
        chunks = [{"type": "http.request", "body": b"x" * n, "more_body": False}]
        scope = {"type": "http", "path": "/v2/models/m/infer", "method": "POST",
                 "headers": [(b"content-length", str(n).encode())]}

        async def receive():
            return chunks.pop(0)

        async def send(message):
            sent.append(message)

        return guard(scope, receive, send)

    async def main():
        first = asyncio.create_task(request(900))
        await asyncio.sleep(0.01)
        assert guard.buffered == 900
        await request(900)  # 1800 held together would pass 1500: refused
        refused = [m for m in sent if m.get("status")]
        gate.set()
        await first
        return refused

    refused = asyncio.run(main())
    assert refused[0]["status"] == 503 and guard.buffered == 0
    assert [m["status"] for m in sent if m.get("status")] == [503, 200]


def test_limits_are_flags_with_their_defaults_shown():
    import argparse

    from edgeship.commands import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    text = parser._subparsers._group_actions[0].choices["serve"].format_help()
    for flag in ("--max-header-kb", "--header-timeout-s", "--body-timeout-s", "--keep-alive-s", "--max-connections",
                 "--llm-max-body-kb", "--max-multipart-parts", "--max-json-depth", "--max-decode-mb",
                 "--max-body-buffer-mb", "--api-key-file", "--docs"):
        assert flag in text, flag
    assert "0.0.0.0 opens every route to the network" in " ".join(text.split())
    args = parser.parse_args(["serve", "b", "--max-header-kb", "4", "--header-timeout-s", "2.5", "--max-connections", "9"])
    cfg = serve.build_config(args)
    assert cfg.max_header_bytes == 4096 and cfg.header_timeout_s == 2.5 and cfg.max_connections == 9
    assert cfg.body_timeout_s == 15.0 and cfg.docs is False and cfg.api_key_file is None
