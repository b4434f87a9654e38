"""Live swap of the model a name serves: no failed request, in-flight requests finish on the old
model, a model that fails its golden check is refused, threads change live. In-process through
httpx.ASGITransport, and on a real uvicorn server on 127.0.0.1 with clients posting from threads."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from edgeship.bundle import open_bundle  # noqa: E402
from edgeship.errors import BackendError, SwapError  # noqa: E402
from edgeship.runtime import Model  # noqa: E402
from edgeship.serve import ServeConfig, create_app  # noqa: E402
from edgeship.serve.config import runtime_config  # noqa: E402
from edgeship.serve.errors import ApiError  # noqa: E402
from tests.serve.support import encode, free_port, picture  # noqa: E402

PREDICT = "/v1/models/tiny/predict"


def run(app, fn):
    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
                return await fn(client)

    return asyncio.run(main())


def load(bundle, config: ServeConfig) -> Model:
    """A model loaded as the server loads its own: the caller of a swap does this."""
    return Model.load(bundle, runtime_config(config), max_pixels=config.max_pixels)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return encode(picture(64, 48, 5), "JPEG")


@pytest.fixture(scope="module")
def top1(classifier_bundle, classifier_bundle_v4, photo) -> dict[str, int]:
    """The class each version gives ``photo``: an answer must match its version's model, not only its label."""
    models = [Model.load(b) for b in (classifier_bundle, classifier_bundle_v4)]
    return {m.version: m.predict(photo).output["classes"][0]["index"] for m in models}


def check_answers(answers, top1, last_swap_done: float, final: str) -> None:
    """answers: (start time, status, body). All 200, each from one of the versions and its model."""
    bad = [(s, b) for _, s, b in answers if s != 200]
    assert not bad, bad[:3]
    versions = [b["version"] for _, _, b in answers]
    assert set(versions) == set(top1), f"both versions should have answered: {sorted(set(versions))}"
    assert all(b["classes"][0]["index"] == top1[b["version"]] for _, _, b in answers)
    after = [b["version"] for t, _, b in answers if t > last_swap_done]
    assert after and set(after) == {final}, "after the last swap only the new version answers"


@pytest.mark.parametrize("spinning", ["auto", "off"])
def test_swaps_under_concurrent_requests_fail_none(classifier_bundle, classifier_bundle_v4, photo, top1, spinning):
    config = ServeConfig(max_batch=4, prep_threads=2, spinning=spinning)
    app = create_app([classifier_bundle], config)
    state = app.state.edgeship
    order = [classifier_bundle_v4, classifier_bundle] * 2 + [classifier_bundle_v4]

    async def fn(client):
        stop = asyncio.Event()
        answers = []

        async def client_loop():
            while not stop.is_set():
                t = time.perf_counter()
                r = await client.post(PREDICT, content=photo)
                answers.append((t, r.status_code, r.json()))

        tasks = [asyncio.create_task(client_loop()) for _ in range(8)]
        results, retired = [], []
        for bundle in order:
            await asyncio.sleep(0.1)
            model = await asyncio.to_thread(load, bundle, config)
            retired.append(state.models["tiny"].model)
            results.append(await state.swap("tiny", model))
        done = time.perf_counter()
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
        card = (await client.get("/v1/models/tiny")).json()
        return answers, results, retired, done, card, (await client.get("/metrics")).text

    answers, results, retired, done, card, metrics = run(app, fn)
    check_answers(answers, top1, done, "4")
    assert [(r.old_version, r.new_version) for r in results] == [("3", "4"), ("4", "3")] * 2 + [("3", "4")]
    assert all(r.drained and r.warmup_ms > 0 and r.drain_ms >= 0 for r in results)
    for old in retired:  # drained, stopped and freed
        with pytest.raises(BackendError, match="closed"):
            old.run(old.blank_input())
    assert card["version"] == "4" and card["serving"]["version"] == "4" and card["serving"]["swaps"] == 5
    assert card["serving"]["backend"]["backend"] == "onnxruntime"
    assert card["serving"]["last_swap"]["old_version"] == "3" and card["serving"]["last_swap"]["new_version"] == "4"
    info = [line for line in metrics.splitlines() if line.startswith("edgeship_model_info{")]
    assert len(info) == 1 and 'version="4"' in info[0]


def test_in_flight_requests_finish_on_the_old_model(classifier_bundle, classifier_bundle_v4, photo, top1):
    config = ServeConfig()
    app = create_app([classifier_bundle], config)
    state = app.state.edgeship
    new = load(classifier_bundle_v4, config)

    async def until(predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.005)

    async def fn(client):
        gate = threading.Event()  # holds the request in its decode, admitted on version 3
        old = state.lookup("tiny").model
        real = old.prepare
        old.prepare = lambda data: gate.wait(10) and real(data)
        held = asyncio.create_task(client.post(PREDICT, content=photo, headers={"content-type": "image/jpeg"}))
        await until(lambda: state.pending("tiny") == 1)
        before = state.models["tiny"]
        swap = asyncio.create_task(state.swap("tiny", new))
        await until(lambda: state.models["tiny"] is not before)
        fresh = await client.post(PREDICT, content=photo)
        waiting = not swap.done() and state.pending("tiny") == 1  # the old worker drains the held request
        t_release = time.perf_counter()
        gate.set()
        late = await held
        result = await swap
        return fresh, waiting, late, result, (time.perf_counter() - t_release) * 1e3

    fresh, waiting, late, result, _ = run(app, fn)
    assert fresh.status_code == 200 and fresh.json()["version"] == "4"
    assert waiting
    assert late.status_code == 200 and late.json()["version"] == "3"
    assert late.json()["classes"][0]["index"] == top1["3"]
    assert result.drained and result.drain_ms > 0


def test_a_model_that_fails_its_golden_check_is_refused(classifier_bundle, photo, top1, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(classifier_bundle, copy)
    with np.load(copy / "golden.npz") as g:
        x, y = g["input"], g["output"]
    np.savez(copy / "golden.npz", input=x, output=y + 1.0)
    config = ServeConfig()
    broken = load(open_bundle(copy, verify=False), config)
    app = create_app([classifier_bundle], config)
    state = app.state.edgeship

    async def fn(client):
        before = state.models["tiny"]
        with pytest.raises(SwapError, match=r"swap of 'tiny' from version 3 to 3 refused: golden output differs "
                                             r"by 1 .*version 3 keeps serving"):
            await state.swap("tiny", broken)
        with pytest.raises(ApiError, match="no vision model named 'nope'"):
            await state.swap("nope", broken)
        with pytest.raises(SwapError, match="is the one serving already"):
            await state.swap("tiny", before.model)
        assert state.models["tiny"] is before
        return await client.post(PREDICT, content=photo), (await client.get("/v1/models/tiny")).json()

    after, card = run(app, fn)
    assert after.status_code == 200 and after.json()["classes"][0]["index"] == top1["3"]
    assert card["serving"]["swaps"] == 0 and card["serving"]["last_swap"] is None
    assert broken.run(broken.blank_input())  # refused, not closed: the caller's to close


def test_threads_change_live_and_an_update_keeps_them(classifier_bundle, classifier_bundle_v4, photo, top1):
    config = ServeConfig(threads=2)
    app = create_app([classifier_bundle], config)
    state = app.state.edgeship

    async def fn(client):
        before = (await client.get("/v1/models/tiny")).json()["serving"]["backend"]
        result = await state.reconfigure("tiny", intra_op_threads=1)
        card = (await client.get("/v1/models/tiny")).json()
        twin = state.models["tiny"].worker.models()[1]  # the spinning twin follows the model's threads
        answer = await client.post(PREDICT, content=photo)
        update = await state.load_for("tiny", classifier_bundle_v4)  # a new version, loaded like the one serving
        await state.swap("tiny", update)
        return before, result, card, twin.describe(), answer, update.describe()

    before, result, card, twin, answer, update = run(app, fn)
    assert before["intra_op_threads"] == 2
    assert (result.old_version, result.new_version) == ("3", "3")
    assert result.old_backend["intra_op_threads"] == 2 and result.new_backend["intra_op_threads"] == 1
    assert card["serving"]["backend"]["intra_op_threads"] == 1
    assert twin["intra_op_threads"] == 1 and twin["allow_spinning"] is True
    assert answer.status_code == 200 and answer.json()["classes"][0]["index"] == top1["3"]
    assert update["intra_op_threads"] == 1 and update["allow_spinning"] is False


def test_a_request_held_past_the_drain_timeout_gets_503_not_a_hang(classifier_bundle, classifier_bundle_v4, photo):
    config = ServeConfig()
    app = create_app([classifier_bundle], config)
    state = app.state.edgeship
    new = load(classifier_bundle_v4, config)

    async def fn(client):
        # Held in its decode (an upload is read whole before the request is admitted, so only
        # an admitted request can hold the old model).
        gate = threading.Event()
        old = state.lookup("tiny").model
        real = old.prepare
        old.prepare = lambda data: gate.wait(10) and real(data)
        held = asyncio.create_task(client.post(PREDICT, content=photo, headers={"content-type": "image/jpeg"}))
        while state.pending("tiny") != 1:
            await asyncio.sleep(0.005)
        result = await state.swap("tiny", new, drain_timeout_s=0.05)
        gate.set()
        return result, await asyncio.wait_for(held, 10), await client.post(PREDICT, content=photo)

    result, late, fresh = run(app, fn)
    assert not result.drained and result.drain_ms >= 50
    assert late.status_code == 503 and "was replaced" in late.json()["error"]["message"]
    assert late.headers["retry-after"] == "1"
    assert fresh.status_code == 200 and fresh.json()["version"] == "4"


class UvicornThread:
    """A real uvicorn server on 127.0.0.1 in a thread of this process, so the test can call its state."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True)

    def __enter__(self) -> "UvicornThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def call(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.loop.close()


@pytest.mark.slow
def test_swaps_on_a_real_server_with_eight_clients(classifier_bundle, classifier_bundle_v4, photo, top1):
    config = ServeConfig(max_batch=4, prep_threads=2)
    app = create_app([classifier_bundle], config)
    state = app.state.edgeship
    stop = threading.Event()
    answers: list = []
    errors: list = []

    def client_loop():
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    r = client.post(PREDICT, content=photo, headers={"content-type": "image/jpeg"})
                    answers.append((t, r.status_code, r.json()))
                except Exception as exc:  # noqa: BLE001  a refused connection is a failed request too
                    errors.append(repr(exc))

    with UvicornThread(app) as server:
        clients = [threading.Thread(target=client_loop) for _ in range(8)]
        for c in clients:
            c.start()
        results = []
        for bundle in [classifier_bundle_v4, classifier_bundle] * 2 + [classifier_bundle_v4]:
            time.sleep(0.3)
            results.append(server.call(state.swap("tiny", load(bundle, config))))
        done = time.perf_counter()
        time.sleep(0.3)
        stop.set()
        for c in clients:
            c.join(30)
        card = httpx.get(f"{server.url}/v1/models/tiny").json()
    assert not errors, errors[:3]
    check_answers(answers, top1, done, "4")
    assert [r.new_version for r in results] == ["4", "3", "4", "3", "4"] and all(r.drained for r in results)
    assert card["serving"]["version"] == "4" and card["serving"]["swaps"] == 5


def test_a_run_on_a_freed_model_is_a_503_to_retry():
    from edgeship.serve.errors import as_api_error

    err = as_api_error(BackendError("model.onnx: this ONNX Runtime session was closed"))
    assert err.status == 503 and err.headers == {"Retry-After": "1"} and "retry" in err.message
