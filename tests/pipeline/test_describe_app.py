"""POST /v1/pipelines/describe in-process (httpx.ASGITransport, the app's lifespan): a tiny ONNX classifier
and the tiny random GGUF through the real LLMService, llama.cpp and ONNX Runtime."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import threading

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
prometheus_client = pytest.importorskip("prometheus_client")

from edgeship.errors import InputError  # noqa: E402
from edgeship.pipeline import DescribeConfig  # noqa: E402
from edgeship.serve import ServeConfig, create_app  # noqa: E402
from tests.pipeline.conftest import DESCRIBE_CTX  # noqa: E402
from tests.support import jpeg_bytes, tree  # noqa: E402

URL = "/v1/pipelines/describe"
LIMIT = 64


def serve(vision_bundle, gguf, fn, *, llm=True, queue_size=2, hot=None, describe=None, sharing="priority", threads=1):
    """Run ``fn(client, app, llm_service)`` against a started app; returns what it returns."""
    from edgeship.llm.openai_api import LLMService

    async def main():
        registry = prometheus_client.CollectorRegistry()
        service = LLMService(gguf, n_ctx=DESCRIBE_CTX, n_threads=threads, queue_size=queue_size, registry=registry,
                             max_tokens=LIMIT) if llm else None
        app = create_app([vision_bundle], ServeConfig(prep_threads=1, llm_sharing=sharing), llm=service,
                         registry=registry, describe=describe or DescribeConfig(max_tokens=16), hot=hot)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                return await fn(client, app, service)

    return asyncio.run(main())


def events(resp) -> list[tuple[str, dict]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    out = []
    for block in resp.text.split("\n\n"):
        if block.strip():
            kind, data = block.split("\n", 1)
            assert kind.startswith("event: ") and data.startswith("data: ")
            out.append((kind[7:], json.loads(data[6:])))
    return out


def metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_streamed_description_follows_the_vision_answer(vision_bundle, describe_gguf):
    img = jpeg_bytes()

    async def fn(client, app, llm):
        stream = await client.post(URL, content=img)
        predict = await client.post("/v1/models/tiny/predict", content=img)
        whole = await client.post(URL + "?stream=false", content=img)
        as_json = await client.post(URL, json={"image": base64.b64encode(img).decode(), "stream": False})
        form = await client.post(URL, files={"file": ("a.jpg", img, "image/jpeg")}, data={"stream": "false"})
        head = len(app.state.describe.pipeline.head_tokens)
        return stream, predict.json(), whole, as_json, form, head, (await client.get("/metrics")).text

    stream, predict, whole, as_json, form, head, text = serve(vision_bundle, describe_gguf, fn)
    evs = events(stream)
    kinds = [k for k, _ in evs]
    assert kinds[0] == "vision" and kinds[-1] == "done" and set(kinds[1:-1]) == {"token"} and len(kinds) > 2
    vision, done = evs[0][1], evs[-1][1]
    assert vision["model"] == "tiny" and vision["task"] == "classify"
    assert [c["index"] for c in vision["classes"]] == [c["index"] for c in predict["classes"]]
    assert done["description"] == "".join(d["text"] for k, d in evs if k == "token").strip()
    assert done["degraded"] is None and done["finish_reason"] in ("stop", "length")
    assert set(done["timing_ms"]) == {"vision", "queue", "prompt", "first_token", "generation", "total"}
    t = done["timing_ms"]
    assert t["vision"] <= t["first_token"] <= t["total"]
    u = done["usage"]
    assert u["reused_prompt_tokens"] == head > 0 and u["evaluated_prompt_tokens"] == u["prompt_tokens"] - head
    # One JSON, in all three shapes of request; greedy, so the same words.
    for r in (whole, as_json, form):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["description"] == done["description"] and body["vision"]["classes"] == vision["classes"]
        assert body["degraded"] is None
    assert metric(text, "edgeship_pipeline_seconds_count", stage="first_token") == 4
    assert metric(text, "edgeship_pipeline_seconds_count", stage="vision") == 4
    assert metric(text, "edgeship_pipeline_prompt_tokens_total", kind="reused") == 4 * head
    assert metric(text, "edgeship_llm_requests_total", endpoint="describe", outcome="described") == 4
    assert metric(text, "edgeship_llm_queue_depth") == 0


def test_a_detection_bundle_is_described_from_counts_and_positions(detection_bundle, describe_gguf):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 150)).save(buf, "PNG")
    template = "The camera sees {count} objects: {summary}. Where: {positions}. One sentence about it."

    async def fn(client, app, llm):
        return (await client.post(URL + "?stream=false&top_k=1", content=buf.getvalue())).json()

    body = serve(detection_bundle, describe_gguf, fn, describe=DescribeConfig(prompt_template=template, max_tokens=4))
    assert [d["label"] for d in body["vision"]["detections"]] == ["dog"]  # the answer shows top_k
    # ... while the prompt counted all three (top left, centre, bottom right of the 64x64 picture).
    assert body["prompt"] == ("The camera sees 3 objects: 2 dogs (top left, centre) and 1 cat (bottom right). "
                              "Where: dog at top left (95%), cat at bottom right (90%), dog at centre (80%). "
                              "One sentence about it.")
    assert body["description"] is not None


def test_bad_input_gets_a_clear_error_and_the_next_request_is_served(vision_bundle, describe_gguf):
    img = jpeg_bytes()

    async def fn(client, app, llm):
        out = {
            "text": await client.post(URL, content=b"this is not a picture"),
            "over_limit": await client.post(URL + f"?max_tokens={LIMIT + 1}", content=img),
            "over_limit_json": await client.post(URL, json={"image": base64.b64encode(img).decode(),
                                                            "max_tokens": 10_000}),
            "bad_stream": await client.post(URL + "?stream=maybe", content=img),
            "bad_base64": await client.post(URL, json={"image": "not base64!"}),
            "unknown_member": await client.post(URL, json={"image": "", "colour": "red"}),
            "no_file_field": await client.post(URL, files={"photo": ("a.jpg", img, "image/jpeg")}),
            "unknown_model": await client.post(URL + "?model=nope", content=img),
            "chat_over_limit": await client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": LIMIT + 1}),
            "ok": await client.post(URL + "?stream=false&max_tokens=4", content=img),
        }
        return {k: (r.status_code, r.json()) for k, r in out.items()}

    r = serve(vision_bundle, describe_gguf, fn)
    assert r["text"][0] == 415 and "not an image" in r["text"][1]["error"]["message"]
    for key in ("over_limit", "over_limit_json"):
        status, body = r[key]
        assert status == 400 and f"over this server's limit of {LIMIT}" in body["error"]["message"], body
    assert r["bad_stream"][0] == 400 and "stream: expected true or false" in r["bad_stream"][1]["error"]["message"]
    assert r["bad_base64"][0] == 400 and "not valid base64" in r["bad_base64"][1]["error"]["message"]
    assert r["unknown_member"][0] == 400 and "'colour'" in r["unknown_member"][1]["error"]["message"]
    assert r["no_file_field"][0] == 422 and "'photo'" in r["no_file_field"][1]["error"]["message"]
    assert r["unknown_model"][0] == 404
    status, body = r["chat_over_limit"]
    assert status == 400 and body["error"]["code"] == "max_tokens_over_limit" and body["error"]["param"] == "max_tokens"
    status, body = r["ok"]
    assert status == 200 and body["usage"]["completion_tokens"] <= 4 and body["description"] is not None


def test_degraded_answers_keep_the_vision_result(vision_bundle, describe_gguf, tmp_path):
    img = jpeg_bytes()

    async def absent(client, app, llm):
        return (await client.post(URL + "?stream=false", content=img), await client.post(URL, content=img),
                (await client.get("/metrics")).text)

    whole, stream, text = serve(vision_bundle, describe_gguf, absent, llm=False)
    assert whole.status_code == 200
    body = whole.json()
    assert body["description"] is None and body["degraded"]["reason"] == "llm_absent"
    assert body["vision"]["classes"] and "--llm" in body["degraded"]["message"]
    assert [k for k, _ in events(stream)] == ["vision", "done"]
    assert metric(text, "edgeship_pipeline_degraded_total", reason="llm_absent") == 2

    async def hot_and_busy(client, app, llm):
        hot = (await client.post(URL + "?stream=false", content=img)).json()
        predict = await client.post("/v1/models/tiny/predict", content=img)
        return hot, predict.status_code, (await client.get("/metrics")).text

    hot, predicted, text = serve(vision_bundle, describe_gguf, hot_and_busy, hot=lambda: "CPU at 90 C")
    assert hot["description"] is None and hot["degraded"] == {"reason": "device_hot", "message": "CPU at 90 C"}
    assert predicted == 200  # plain predict is never affected
    assert metric(text, "edgeship_llm_completion_tokens_total") == 0  # the LLM was left alone

    async def full_queue(client, app, llm):
        await llm._acquire()  # the model is busy with another request, and the queue (size 0) is full
        llm._busy = True
        busy = await client.post(URL, content=img)
        llm._busy = False
        llm._lock.release()
        free = (await client.post(URL + "?stream=false", content=img)).json()
        return busy, free, (await client.get("/metrics")).text

    busy, free, text = serve(vision_bundle, describe_gguf, full_queue, queue_size=0)
    evs = events(busy)
    assert [k for k, _ in evs] == ["vision", "done"]
    assert evs[-1][1]["degraded"]["reason"] == "llm_queue_full" and evs[-1][1]["description"] is None
    assert free["degraded"] is None and free["description"] is not None
    assert metric(text, "edgeship_pipeline_degraded_total", reason="llm_queue_full") == 1

    # The default heat check is the thermal status of monitor/thermal.py (a fake sysfs here, a Pi's limits).
    from edgeship.monitor.thermal import limits_for
    from edgeship.serve.heat import ThermalHeat

    zone = "sys/class/thermal/thermal_zone0/temp"
    tree(tmp_path, {"sys/class/thermal/thermal_zone0/type": "cpu-thermal", zone: 76000})
    heat = ThermalHeat(str(tmp_path), limits_for("rpi5"))
    assert heat() is None  # 76 C: moderate on a Pi 5, below where the firmware throttles
    tree(tmp_path, {zone: 81500})
    reason = heat()
    assert reason.startswith("thermal status severe: 81.5 C") and "below 80 C" in reason


def test_a_template_the_served_task_cannot_fill_fails_at_start(vision_bundle):
    with pytest.raises(InputError, match=r"\{objects\} is filled only for detect bundles.*model 'tiny'"):
        create_app([vision_bundle], describe=DescribeConfig(prompt_template="Seen: {objects}."))


def test_a_client_that_leaves_the_queue_frees_its_place_at_once(describe_gguf):
    from edgeship.bundle import Task
    from edgeship.llm.openai_api import LLMService
    from edgeship.llm.queueing import acquire_or_gone, run_streamed
    from edgeship.pipeline import Pipeline

    class Leaving:
        def __init__(self):
            self.calls = 0

        async def is_disconnected(self):
            self.calls += 1
            return self.calls >= 3

    async def main():
        llm = LLMService(describe_gguf, n_ctx=DESCRIBE_CTX, n_threads=1, queue_size=4,
                         registry=prometheus_client.CollectorRegistry())
        await llm.start()
        await llm._acquire()  # another request holds the model
        left = await acquire_or_gone(llm, Leaving())
        waiting_after_leave = llm._waiting
        gen = Pipeline(llm.engine, DescribeConfig(max_tokens=4)).generation(Task.CLASSIFY, {"classes": []})
        task = asyncio.ensure_future(run_streamed(llm, gen).__anext__())
        await asyncio.sleep(0.05)
        waiting_streamed = llm._waiting
        task.cancel()  # what Starlette does to a streamed response whose client went away
        await asyncio.gather(task, return_exceptions=True)
        waiting_after_cancel = llm._waiting
        llm._lock.release()
        await asyncio.wait_for(llm._acquire(), 5)  # the model is free for the next one at once
        llm._lock.release()
        await llm.stop()
        return left, waiting_after_leave, waiting_streamed, waiting_after_cancel, gen.cancel.is_set()

    left, after_leave, streamed, after_cancel, cancelled = asyncio.run(main())
    assert left is False and after_leave == 0
    assert streamed == 1 and after_cancel == 0 and cancelled


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are Linux's")
def test_llm_sharing_settings(vision_bundle, describe_gguf):
    from edgeship.serve.sharing import COMPUTE_THREAD_NAME, LLM_NICE, VisionActivity

    def nice(tid: int) -> int:
        return os.getpriority(os.PRIO_PROCESS, tid)

    def compute_threads() -> list[int]:
        out = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    if f.read().strip() == COMPUTE_THREAD_NAME:
                        out.append(nice(int(tid)))
            except OSError:
                pass
        return out

    async def probe(client, app, llm):
        own = llm._executor.submit(lambda: nice(threading.get_native_id())).result()
        r = await client.post(URL + "?stream=false&max_tokens=4", content=jpeg_bytes())
        assert r.status_code == 200 and r.json()["description"] is not None
        return own, compute_threads(), llm.engine.pace is not None

    base = nice(threading.get_native_id())
    # 2 threads: the LLM's own and one OpenMP worker, both at nice 19 unless sharing is off.
    assert serve(vision_bundle, describe_gguf, probe, sharing="pause", threads=2) == (LLM_NICE, [LLM_NICE], True)
    assert serve(vision_bundle, describe_gguf, probe, sharing="priority", threads=2) == (LLM_NICE, [LLM_NICE], False)
    assert serve(vision_bundle, describe_gguf, probe, sharing="off", threads=2) == (base, [], False)

    activity = VisionActivity()
    assert activity.wait_idle(0.01) is True  # idle: no wait at all
    activity.enter()
    assert activity.wait_idle(0.01) is False  # busy: waits, at most the timeout
    release = threading.Timer(0.05, activity.leave)
    release.start()
    assert activity.wait_idle(5.0) is True and activity.busy == 0 and activity.pauses == 2
    release.join()
