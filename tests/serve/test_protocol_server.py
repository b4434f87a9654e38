"""A real `edgeship serve TINY --llm TINY.gguf` on 127.0.0.1, met by the clients users already run:
Triton's own HTTP client (model config, statistics, repository index) and plain HTTP for the log.

The vision model is an onnx.helper graph run by ONNX Runtime; the LLM a tiny random GGUF run by
llama.cpp (tests/llm/conftest.py). No torch.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("llama_cpp")

from tests.serve.support import ServerProcess  # noqa: E402
from tests.support import build_tiny_classifier, make_tiny_bundle  # noqa: E402

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
    srv.wait_ready(timeout=120)  # the LLM loads, the head warms
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


def test_tritonclient_reads_the_model_config_statistics_and_repository_index(server):
    """What perf_analyzer and Triton's clients ask before they infer, with Triton's own HTTP client."""
    th = pytest.importorskip("tritonclient.http")
    client = th.InferenceServerClient(server.url.removeprefix("http://"))
    for cfg in (client.get_model_config("tiny"), client.get_model_config("tiny", "3")):
        assert cfg["name"] == "tiny" and cfg["platform"] == "onnxruntime_onnx" and cfg["backend"] == "onnxruntime"
        assert cfg["max_batch_size"] == 4  # --max-batch: the most rows one run takes
        (inp,), (out,) = cfg["input"], cfg["output"]
        assert (inp["name"], inp["data_type"], inp["format"], inp["dims"]) == ("input", "TYPE_FP32", "FORMAT_NCHW",
                                                                             [3, 16, 16])
        assert (out["name"], out["data_type"], out["dims"]) == ("output", "TYPE_FP32", [4])
        assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] >= 0
    assert {"model_configuration", "statistics"} <= set(client.get_server_metadata()["extensions"])

    def success(stats):
        (stat,) = [s for s in stats["model_stats"] if s["name"] == "tiny" and s["version"] == "3"]
        return stat

    before = success(client.get_inference_statistics("tiny"))
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    for _ in range(3):
        inp = th.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        result = client.infer("tiny", [inp], outputs=[th.InferRequestedOutput("output", binary_data=True)])
        assert result.as_numpy("output").shape == (2, 4)
    after = success(client.get_inference_statistics("tiny", "3"))
    grown = {k: after["inference_stats"][k]["count"] - before["inference_stats"][k]["count"]
             for k in ("success", "queue", "compute_input", "compute_infer", "compute_output")}
    assert grown == dict.fromkeys(grown, 3), grown
    assert after["inference_stats"]["success"]["ns"] > before["inference_stats"]["success"]["ns"]
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert after["inference_count"] - before["inference_count"] == 6  # rows, as Triton counts
    assert 1 <= after["execution_count"] - before["execution_count"] <= 3
    assert any(b["batch_size"] >= 2 and b["compute_infer"]["ns"] > 0 for b in after["batch_stats"])
    assert after["last_inference"] >= max(before["last_inference"], 1)  # ms since the epoch
    every = client.get_inference_statistics()  # GET /v2/models/stats
    assert [s["name"] for s in every["model_stats"]] == ["tiny"]

    assert client.get_model_repository_index() == [{"name": "tiny", "version": "3", "state": "READY"}]

    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path in ("/v2/models/tiny/versions/9/config", "/v2/models/tiny/versions/9/stats",
                     "/v2/models/nosuch/stats"):
            r = c.get(path)
            assert r.status_code == 404 and isinstance(r.json()["error"], str), (path, r.text)
        r = c.post("/v2/repository/index", json={"ready": "yes"})
        assert r.status_code == 400 and "ready" in r.json()["error"]
        assert c.post("/v2/repository/index", json={"ready": True}).json()[0]["state"] == "READY"
