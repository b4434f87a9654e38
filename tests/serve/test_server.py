"""End to end: `edgeship serve` as a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from tests.serve.support import ServerProcess, encode, picture  # noqa: E402
from tests.serve.test_upload import png_header_only  # noqa: E402

pytestmark = pytest.mark.slow


def predict(url: str, data: bytes, name: str = "tiny", mime: str = "image/jpeg", **kw) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{name}/predict", files={"file": ("x", data, mime)}, timeout=30, **kw)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_valid_images_are_answered(server, fmt):
    arr = picture(90, 70, seed=7)
    r = predict(server.url, encode(arr, fmt), mime=f"image/{fmt.lower()}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny" and body["version"] == "3" and len(body["classes"]) == 5
    assert body["classes"][0]["label"].startswith("class")
    assert {"queue", "decode", "preprocess", "infer", "total"} <= set(body["timing_ms"])
    raw = httpx.post(f"{server.url}/v1/models/tiny/predict?top_k=2", content=encode(arr, "PNG"), timeout=30)
    assert raw.status_code == 200 and len(raw.json()["classes"]) == 2


def test_exif_orientation_and_modes(server):
    from PIL import Image

    arr = picture(80, 60, seed=3)
    base = predict(server.url, encode(arr, "PNG")).json()["classes"][0]
    im = Image.fromarray(np.ascontiguousarray(np.rot90(arr, 1)))  # stored rotated, EXIF says rotate back
    exif = Image.Exif()
    exif[0x0112] = 6
    import io

    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=98, exif=exif)
    rotated = predict(server.url, buf.getvalue()).json()["classes"][0]
    assert rotated["index"] == base["index"]
    for mode in ("L", "P", "RGBA", "CMYK", "I;16"):
        img = Image.fromarray(arr).convert(mode) if mode != "I;16" else Image.fromarray((arr[:, :, 0].astype(np.uint16) * 257))
        buf = io.BytesIO()
        img.save(buf, "TIFF" if mode in ("CMYK", "I;16") else "PNG")
        r = predict(server.url, buf.getvalue())
        assert r.status_code == 200, (mode, r.text)


def _bad_inputs():
    jpg = encode(picture(400, 300, 1), "JPEG")
    return {
        "empty": (lambda url: predict(url, b""), 400),
        "truncated_jpeg": (lambda url: predict(url, jpg[: len(jpg) // 2]), 400),
        "text_as_jpeg": (lambda url: predict(url, b"this is not a picture, only text\n" * 20), 415),
        "pixel_bomb_png": (lambda url: predict(url, png_header_only(20000, 20000), mime="image/png"), 413),
        "over_limit": (lambda url: predict(url, b"\xff\xd8\xff" + b"\x00" * (1024 * 1024 + 10)), 413),
        "missing_field": (lambda url: httpx.post(f"{url}/v1/models/tiny/predict", files={"image": ("x", jpg)}, timeout=30), 422),
        "unknown_model": (lambda url: predict(url, jpg, name="nope"), 404),
        "bad_top_k": (lambda url: httpx.post(f"{url}/v1/models/tiny/predict?top_k=0", content=jpg, timeout=30), 422),
        "top_k_not_a_number": (lambda url: httpx.post(f"{url}/v1/models/tiny/predict?top_k=3x", content=jpg, timeout=30), 422),
        "top_k_superscript": (lambda url: httpx.post(f"{url}/v1/models/tiny/predict?top_k=%C2%B2", content=jpg, timeout=30), 422),
        "get_on_predict": (lambda url: httpx.get(f"{url}/v1/models/tiny/predict", timeout=30), 405),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_is_a_4xx_and_the_server_lives_on(server, jpeg, case):
    send, status = _bad_inputs()[case]
    r = send(server.url)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == status and len(err["message"]) > 10
    assert predict(server.url, jpeg).status_code == 200


def test_detection_over_http(server):
    r = predict(server.url, encode(picture(120, 80, 11), "PNG"), name="tinydet", mime="image/png")
    assert r.status_code == 200, r.text
    dets = r.json()["detections"]
    assert dets and {"label", "index", "score", "box"} <= set(dets[0])
    assert all(0 <= d["box"][0] <= d["box"][2] <= 120 and 0 <= d["box"][1] <= d["box"][3] <= 80 for d in dets)


def test_models_list_is_openai_shaped(server):
    body = httpx.get(f"{server.url}/v1/models").json()
    assert body["object"] == "list"
    tiny = next(m for m in body["data"] if m["id"] == "tiny")
    assert tiny["object"] == "model" and tiny["owned_by"] == "edgeship"
    assert tiny["version"] == "3" and tiny["task"] == "classify" and len(tiny["sha256"]) == 64 and tiny["inputs"]
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    assert {"tiny", "tinydet"} <= {m.id for m in client.models.list()}


def test_health(server):
    assert httpx.get(f"{server.url}/health/live").json()["status"] == "live"
    r = httpx.get(f"{server.url}/health/ready")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["status"] == "ready" and report["models"]["tiny"]["check"] == "golden input"


def test_triton_client_gets_the_same_top1_as_v1(server, classifier_bundle):
    http = pytest.importorskip("tritonclient.http")
    from edgeship.runtime import Model

    client = http.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny")
    meta = client.get_model_metadata("tiny")
    assert meta["inputs"][0]["shape"] == [-1, 3, 32, 32]
    model = Model.load(classifier_bundle)
    for seed in range(4):
        data = encode(picture(100, 75, seed + 20), "PNG")
        v1 = predict(server.url, data).json()["classes"][0]["index"]
        x = np.stack([model.prepare(data).x] * 2)
        for binary in (True, False):
            inp = http.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = http.InferRequestedOutput("logits", binary_data=binary)
            result = client.infer("tiny", [inp], outputs=[out])
            logits = result.as_numpy("logits")
            assert logits.shape == (2, 10) and list(logits.argmax(1)) == [v1, v1]
        inp = http.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        default = client.infer("tiny", [inp])  # no outputs named: all of them, binary
        assert default.as_numpy("logits").argmax(1)[0] == v1
        top = client.infer("tiny", [inp], outputs=[http.InferRequestedOutput("logits", class_count=3)]).as_numpy("logits")
        assert top.shape == (2, 3) and top[0, 0].decode().split(":")[1:] == [str(v1), f"class{v1}"]
    from tritonclient.utils import InferenceServerException

    bad = http.InferInput("input", [1, 3, 16, 16], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("tiny", [bad])
    # more rows than one run takes (the config's max_batch_size) would grow the arena past the memory plan
    limit = client.get_model_config("tiny")["max_batch_size"]
    big = http.InferInput("input", [limit + 1, 3, 32, 32], "FP32")
    big.set_data_from_numpy(np.zeros((limit + 1, 3, 32, 32), np.float32))
    with pytest.raises(InferenceServerException, match=f"batch-size must be <= {limit} for 'tiny', got {limit + 1}"):
        client.infer("tiny", [big])
    inp = http.InferInput("input", [limit, 3, 32, 32], "FP32")
    inp.set_data_from_numpy(np.zeros((limit, 3, 32, 32), np.float32))
    assert client.infer("tiny", [inp]).as_numpy("logits").shape == (limit, 10)
    client.close()


def test_metrics_pass_promtool(server, jpeg):
    for _ in range(3):
        predict(server.url, jpeg)
    httpx.get(f"{server.url}/health/ready")
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200
    text = r.text
    for series in ("edgeship_requests_total{", "edgeship_queue_wait_seconds_bucket", "edgeship_preprocess_seconds_bucket",
                   "edgeship_inference_seconds_bucket", "edgeship_request_seconds_bucket", "edgeship_batch_size_bucket",
                   "edgeship_queue_depth{", 'edgeship_model_info{format="onnx"', "edgeship_memory_available_bytes",
                   'edgeship_readiness{edgeship_readiness="ready"} 1.0', 'node_cpu_seconds_total{cpu="0",mode="idle"}'):
        assert series in text, series
    assert 'endpoint="/v1/models/{name}/predict"' in text and 'status="200"' in text and 'model="tiny"' in text
    # Each fixed metric once: resident memory only from the process collector, no stateful CPU percent.
    assert "edgeship_process_resident_memory_bytes" not in text and "edgeship_cpu_percent" not in text
    assert text.count("\nprocess_resident_memory_bytes ") == 1
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    done = subprocess.run([promtool, "check", "metrics"], input=r.content, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def _partial_request(port: int, body: bytes, sent: int) -> socket.socket:
    """Open a request whose body is only partly sent: it holds a queue place until finished."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    s.sendall(head + body[:sent])
    return s


def _finish(s: socket.socket, body: bytes, sent: int) -> bytes:
    s.sendall(body[sent:])
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _content_length(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_a_stalled_upload_holds_no_queue_place_and_shutdown_finishes_in_flight(classifier_bundle, jpeg):
    srv = ServerProcess([classifier_bundle], "--queue-size", "1").wait_live()
    try:
        # A body is read whole before its request takes a queue place: a client stalled mid-upload
        # holds a connection, not the model (it used to take the only place: every predict got 503).
        held = _partial_request(srv.port, jpeg, 10)
        time.sleep(0.3)
        r = predict(srv.url, jpeg)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{srv.url}/health/live").status_code == 200  # the loop is not blocked
        assert _finish(held, jpeg, 10).startswith(b"HTTP/1.1 200")
        assert predict(srv.url, jpeg).status_code == 200
        # Graceful shutdown: SIGTERM while a request is in flight; it is still answered.
        held = _partial_request(srv.port, jpeg, 10)
        time.sleep(0.3)
        srv.proc.send_signal(15)
        time.sleep(0.5)
        assert srv.proc.poll() is None
        assert _finish(held, jpeg, 10).startswith(b"HTTP/1.1 200")
        srv.proc.wait(20)
        assert srv.proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM once shut down
    finally:
        srv.stop()


def test_serves_without_torch(classifier_bundle, jpeg):
    srv = ServerProcess([classifier_bundle], env={"EDGESHIP_NO_TORCH": "1"}).wait_live()
    try:
        r = predict(srv.url, jpeg)
        assert r.status_code == 200, r.text + srv.output()
        assert httpx.get(f"{srv.url}/health/ready").status_code == 200
    finally:
        assert srv.stop() in (0, -15), srv.output()
