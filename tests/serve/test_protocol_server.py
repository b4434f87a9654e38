"""A real `edgeship serve TINY --llm TINY.gguf` on 127.0.0.1, met by the clients users already run:
Triton's own HTTP client (model config, statistics, repository index) and plain HTTP for the log.

The vision model is an onnx.helper graph run by ONNX Runtime; the LLM a tiny random GGUF run by
llama.cpp (tests/llm/conftest.py). No torch.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("llama_cpp")

from tests.serve.support import ServerProcess  # noqa: E402
from tests.support import build_tiny_classifier, jpeg_bytes, make_tiny_bundle  # noqa: E402

CTX = 1024


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    pytest.importorskip("gguf")
    from tests.llm.conftest import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("llm") / "tiny-random-llama.gguf", n_ctx=CTX)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vision")
    return make_tiny_bundle(folder / "tiny", build_tiny_classifier(folder / "tiny.onnx")).root


@pytest.fixture(scope="module")
def server(tiny, gguf):
    srv = ServerProcess([tiny], "--llm", str(gguf), "--llm-ctx", str(CTX), "--threads", "1",
                        "--max-batch", "4", "--log-level", "info")
    srv.wait_live(timeout=120)
    deadline = time.monotonic() + 120
    while (r := httpx.get(srv.url + "/health/ready", timeout=10)).status_code != 200:
        if time.monotonic() > deadline:
            srv.stop()
            pytest.fail(f"server not ready: {r.text}\n{srv.output()[-2000:]}")
        time.sleep(0.2)
    yield srv
    srv.stop()


def test_client_errors_are_logged_as_one_line_without_a_traceback(server):
    png = _png()
    truncated = png[: len(png) // 2]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        before = len(server.output())
        answers = [
            c.post("/v1/models/tiny/predict", content=truncated, headers={"content-type": "image/png"}),
            c.post("/v1/models/tiny/predict", files={"file": ("x.png", truncated, "image/png")}),
            c.post("/v2/models/tiny/infer", content=b'{"inputs": [{"name": "input", "shape": [1, 3, 16, 16], '
                                                     b'"datatype": "FP32", "data": [1, 2]}]}'),
            c.post("/v2/models/tiny/infer", content=b"{broken"),
            c.post("/v1/pipelines/describe", content=truncated, headers={"content-type": "image/png"}),
            c.post("/v1/chat/completions", content=b'{"messages": [ broken'),
            c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                 "frequency_penalty": 9}),
            c.get("/v2/models/nosuch/config"),
        ]
        time.sleep(0.3)  # the log file is written by the server process
    statuses = [a.status_code for a in answers]
    print(statuses); print(server.output()[before:])
    assert all(400 <= s < 500 for s in statuses), [(a.status_code, a.text) for a in answers]
    log = server.output()[before:]
    assert "Traceback" not in log, log
    # One line each for the refusals the routes answer themselves (the access log adds its own).
    refusals = [line for line in log.splitlines() if " -> 4" in line]
    assert len(refusals) >= len(answers), log


def _png() -> bytes:
    import io

    from PIL import Image

    arr = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
