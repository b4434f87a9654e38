"""`edgeship serve` as a real uvicorn process on 127.0.0.1, against clients an attacker writes.

Raw sockets where HTTP clients would be too polite: headers that never end, bodies that stop,
a megabyte of header, thousands of multipart parts, JSON nested a hundred thousand deep. The
server runs with short limits (1 s deadlines, small sizes) so that each case ends quickly; every
case asserts what the server answers and that it keeps serving. Waits on sockets are bounded
(10 s) so a defect shows as a failure, never as a hung suite.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import zlib

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.serve.support import ServerProcess, encode, picture  # noqa: E402

pytestmark = pytest.mark.slow

KEY = "k3y-for-tests-0123456789abcdef"
LIMITS = ["--header-timeout-s", "1", "--body-timeout-s", "1", "--keep-alive-s", "1", "--max-header-kb", "8",
          "--max-upload-mb", "1", "--max-multipart-parts", "8", "--max-decode-mb", "8", "--queue-size", "2",
          "--max-connections", "24", "--prep-threads", "1", "--log-level", "info"]


@pytest.fixture(scope="module")
def srv(classifier_bundle):
    server = ServerProcess([classifier_bundle], *LIMITS).wait_live()
    yield server
    server.stop()


def _connect(srv) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the server closes (at most 10 s: a socket timeout fails the test)."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def _json_body(response: bytes):
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


def _predict(url: str, data: bytes, **kw) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/tiny/predict", content=data, timeout=30, **kw)


def _alive(srv) -> None:
    assert httpx.get(f"{srv.url}/health/live", timeout=5).status_code == 200
    assert _predict(srv.url, encode(picture(), "JPEG")).status_code == 200


# --- slowloris: headers and bodies that never end -------------------------------------------------


def test_headers_that_never_end_are_cut_off_with_408(srv):
    held = []
    for _ in range(8):  # a third of the connections the server takes
        s = _connect(srv)
        s.sendall(b"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        held.append(s)
    idle = _connect(srv)  # connects and says nothing
    _alive(srv)  # meanwhile everyone else is served
    for s in held:
        response = _read_all(s)  # the server closes it after --header-timeout-s
        assert _status(response) == 408 and "within 1 s" in _json_body(response)["error"]["message"]
    assert _read_all(idle) == b""  # closed without a word: there was no request to answer
    _alive(srv)


def test_a_body_that_stops_is_a_408_and_holds_no_queue_place(srv):
    jpeg = encode(picture(), "JPEG")
    stalled = []
    for _ in range(5):  # more than --queue-size 2
        s = _connect(srv)
        s.sendall(b"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg[:10])
        stalled.append(s)
    time.sleep(0.2)
    assert _predict(srv.url, jpeg).status_code == 200  # the model's queue is free
    assert httpx.get(f"{srv.url}/health/ready", timeout=5).status_code == 200
    for s in stalled:
        response = _read_all(s)
        assert _status(response) == 408, response[:200]
        assert "no request body bytes for 1 s" in _json_body(response)["error"]["message"]


def test_a_megabyte_of_header_is_a_431(srv):
    s = _connect(srv)
    s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        for _ in range(64):
            s.sendall(b"a" * 16384)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending
    response = _read_all(s)
    assert _status(response) == 431 and "over 8,192 bytes" in response.decode()
    _alive(srv)


def test_connections_beyond_the_cap_get_503_and_the_cap_frees_itself(srv):
    idle = [_connect(srv) for _ in range(24)]  # every connection the server takes, saying nothing
    time.sleep(0.2)
    refused = httpx.get(f"{srv.url}/health/live", timeout=5)
    assert refused.status_code == 503
    for s in idle:  # the header deadline closes them
        assert _read_all(s) == b""
    _alive(srv)


# --- sizes -----------------------------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(srv):
    s = _connect(srv)
    s.sendall(b"POST /v1/models/tiny/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
              b"Content-Length: 104857600\r\n\r\n")  # 100 MB announced, nothing sent
    response = _read_all(s)
    assert _status(response) == 413 and b"connection: close" in response.lower()
    assert "over the limit of 1,048,576 bytes" in _json_body(response)["error"]["message"]


def test_an_unread_body_is_not_drained_after_the_answer(srv):
    s = _connect(srv)
    s.sendall(b"POST /no/such/route HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n" + b"x" * 1000)
    response = _read_all(s)  # answered and closed, not kept open while 499 KB trickle in
    assert _status(response) == 404


def test_multipart_parts_are_capped_and_the_422_stays_short(srv):
    boundary = "b0undary"
    many = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"p{i}\"\r\n\r\nx\r\n" for i in range(5000))
    r = httpx.post(f"{srv.url}/v1/models/tiny/predict", content=(many + f"--{boundary}--\r\n").encode(),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"}, timeout=30)
    assert r.status_code == 413 and "more than 8 parts" in r.json()["error"]["message"]
    names = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{'n' * 300}{i}\"\r\n\r\nx\r\n"
                    for i in range(7))
    r = httpx.post(f"{srv.url}/v1/models/tiny/predict", content=(names + f"--{boundary}--\r\n").encode(),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"}, timeout=30)
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "and 2 more" in message and len(message) < 600


def _png16_header(width: int, height: int) -> bytes:
    """A 16-bit grayscale PNG header claiming width x height, with a tiny IDAT (a few hundred bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decode_memory_is_budgeted_in_bytes_not_pixels(srv):
    # 4 MP passes the pixel limit, but a 16-bit picture needs 3 bytes a pixel to decode and convert
    r = _predict(srv.url, _png16_header(2000, 2000))
    assert r.status_code == 413, r.text
    assert "over the budget of 8 MiB" in r.json()["error"]["message"]


# --- JSON -------------------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_400_not_a_500(srv):
    r = httpx.post(f"{srv.url}/v2/models/tiny/infer", content=b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                   timeout=30)
    assert r.status_code == 400 and "levels deep" in r.json()["error"]


def test_v2_answers_are_strict_json_even_for_nan_outputs(srv):
    x = np.full((1, 3, 32, 32), np.nan, dtype=np.float32)
    req = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": x.ravel().tolist()}]}
    r = httpx.post(f"{srv.url}/v2/models/tiny/infer", content=json.dumps(req).encode(), timeout=30)
    assert r.status_code == 200, r.text

    def strict(name):
        raise ValueError(f"non-standard JSON literal {name}")

    body = json.loads(r.text, parse_constant=strict)
    assert body["outputs"][0]["data"][0] is None


@pytest.mark.parametrize("req, fragment", [
    ({"inputs": [{"name": "input", "shape": [2 ** 40, 2 ** 40], "datatype": "FP32", "data": [1.0]}]}, "can carry"),
    ({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 3072}],
      "outputs": [{"name": "logits", "parameters": {"classification": "many"}}]}, "classification must be"),
    ({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 3072}],
      "outputs": [{"name": "logits"}] * 1000}, "the model has 1"),
])
def test_malformed_v2_requests_are_4xx_json(srv, req, fragment):
    r = httpx.post(f"{srv.url}/v2/models/tiny/infer", content=json.dumps(req).encode(), timeout=30)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


# --- the log ----------------------------------------------------------------------------------------


def test_client_errors_leave_one_line_and_no_traceback(srv):
    png = encode(picture(200, 150), "PNG")
    truncated = png[: len(png) // 2]  # its header is fine: it fails in the decoder, in the decode thread
    assert _predict(srv.url, truncated).status_code == 400
    assert _predict(srv.url, b"not an image at all" * 10).status_code == 415
    assert httpx.post(f"{srv.url}/v2/models/tiny/infer", content=b"{", timeout=30).status_code == 400
    time.sleep(0.3)
    log = srv.output()
    assert "Traceback" not in log, log[-3000:]
    assert "POST /v1/models/tiny/predict -> 400" in log


# --- exposure: the API key and /docs ------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(classifier_bundle, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("key") / "key.txt"
    key_file.write_text(f"# one key per line\n{KEY}\n")
    key_file.chmod(0o600)
    server = ServerProcess([classifier_bundle], "--api-key-file", str(key_file), "--docs").wait_live()
    yield server
    server.stop()


def test_an_api_key_guards_inference_and_models_but_not_health_or_metrics(keyed):
    jpeg = encode(picture(), "JPEG")
    anonymous = _predict(keyed.url, jpeg)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["type"] == "invalid_api_key"
    assert _predict(keyed.url, jpeg, headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401
    assert _predict(keyed.url, jpeg, headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    assert _predict(keyed.url, jpeg, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(f"{keyed.url}/v1/models", timeout=5).status_code == 401
    assert httpx.post(f"{keyed.url}/v2/models/tiny/infer", content=b"{}", timeout=5).json() == {
        "error": "a valid API key is needed: send 'Authorization: Bearer KEY'"}
    for open_path in ("/health/live", "/health/ready", "/metrics", "/v2/health/live"):
        assert httpx.get(keyed.url + open_path, timeout=5).status_code == 200, open_path


def test_docs_are_served_from_the_device_not_a_cdn(keyed, srv):
    assert httpx.get(f"{srv.url}/docs", timeout=5).status_code == 404  # off unless --docs
    assert httpx.get(f"{srv.url}/openapi.json", timeout=5).status_code == 404
    page = httpx.get(f"{keyed.url}/docs", timeout=5)
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere
    assert httpx.get(f"{keyed.url}/docs/assets/swagger-ui-bundle.js", timeout=5).status_code == 200
    assert httpx.get(f"{keyed.url}/docs/openapi.json", timeout=5).json()["info"]["title"] == "edgeship"


def test_a_key_file_that_is_weak_is_refused_at_start(classifier_bundle, tmp_path, capsys):
    from edgeship import cli

    weak = tmp_path / "weak.txt"
    weak.write_text("secret\n")
    assert cli.main(["serve", str(classifier_bundle), "--api-key-file", str(weak)]) == 2
    assert "at least 16 ASCII characters" in capsys.readouterr().err
    assert cli.main(["serve", str(classifier_bundle), "--api-key-file", str(tmp_path / "none.txt")]) == 2


def test_failed_decodes_do_not_pile_up_in_memory(classifier_bundle):
    # A truncated 16-bit 4000x4000 PNG is within the default decode budget: it is decoded, fails,
    # and its 32 MB of pixels must be freed with the answer (a reference cycle through the error's
    # traceback used to hold them until the cyclic GC ran: +500 MB over 60 such requests).
    psutil = pytest.importorskip("psutil")
    server = ServerProcess([classifier_bundle], "--prep-threads", "1").wait_live()
    try:
        bomb = _png16_header(4000, 4000)
        assert _predict(server.url, bomb).status_code == 400  # the first one sets up the decode thread's memory
        before = psutil.Process(server.proc.pid).memory_info().rss
        for _ in range(40):
            assert _predict(server.url, bomb).status_code == 400
        growth = psutil.Process(server.proc.pid).memory_info().rss - before
        assert growth < 64 << 20, f"{growth / 2**20:.0f} MB"
        assert "Traceback" not in server.output()
    finally:
        server.stop()
