"""The app in-process (httpx.ASGITransport): batching, /v2 errors, readiness with alerts, LLM wiring."""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import types

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from edgeship.errors import InputError  # noqa: E402
from edgeship.monitor.alerts import AlertThresholds, Snapshot, evaluate  # noqa: E402
from edgeship.serve import ServeConfig, create_app  # noqa: E402
from tests.serve.support import encode, picture  # noqa: E402


def run(app, fn):
    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
                return await fn(client)

    return asyncio.run(main())


def test_concurrent_requests_are_micro_batched(classifier_bundle):
    app = create_app([classifier_bundle], ServeConfig(max_batch=4, max_wait_ms=20, prep_threads=2))
    data = [encode(picture(64, 48, s), "JPEG") for s in range(12)]

    async def fn(client):
        single = [(await client.post("/v1/models/tiny/predict", content=d)).json() for d in data]
        many = await asyncio.gather(*(client.post("/v1/models/tiny/predict", content=d) for d in data))
        return single, [r.json() for r in many]

    single, many = run(app, fn)
    assert all(s["batch_size"] == 1 for s in single)  # a lone request never waits for company
    sizes = [m["batch_size"] for m in many]
    assert max(sizes) > 1 and max(sizes) <= 4
    for s, m in zip(single, many):  # batching does not change answers
        assert s["classes"][0]["index"] == m["classes"][0]["index"]
        assert s["classes"][0]["score"] == pytest.approx(m["classes"][0]["score"], abs=1e-5)


def test_v2_json_infer_and_errors(classifier_bundle):
    app = create_app([classifier_bundle])
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    req = {"id": "r1", "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}

    async def fn(client):
        ok = await client.post("/v2/models/tiny/infer", json=req)
        versioned = await client.post("/v2/models/tiny/versions/3/infer", content=gzip.compress(json.dumps(req).encode()),
                                      headers={"content-encoding": "gzip"})
        wrong_version = await client.post("/v2/models/tiny/versions/9/infer", json=req)
        bad_json = await client.post("/v2/models/tiny/infer", content=b"{nope")
        bad_dtype = await client.post("/v2/models/tiny/infer", json={"inputs": [{**req["inputs"][0], "datatype": "INT64"}]})
        short = await client.post("/v2/models/tiny/infer", json={"inputs": [{**req["inputs"][0], "data": [1.0, 2.0]}]})
        ready = await client.get("/v2/models/tiny/ready")
        server = await client.get("/v2")
        return ok, versioned, wrong_version, bad_json, bad_dtype, short, ready, server

    ok, versioned, wrong_version, bad_json, bad_dtype, short, ready, server = run(app, fn)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["id"] == "r1" and body["model_version"] == "3"
    out = body["outputs"][0]
    assert out["name"] == "logits" and out["shape"] == [3, 10] and out["datatype"] == "FP32"
    assert versioned.status_code == 200 and versioned.json()["outputs"][0]["data"] == pytest.approx(out["data"])
    for r, status in ((wrong_version, 404), (bad_json, 400), (bad_dtype, 400), (short, 400)):
        assert r.status_code == status and isinstance(r.json()["error"], str)  # the protocol's error shape
    assert ready.json() == {"name": "tiny", "ready": True}
    assert "binary_tensor_data" in server.json()["extensions"]


def _hot_tree(root, celsius: float):
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text(f"{int(celsius * 1000)}\n")
    return root


def test_alerts_turn_readiness_degraded(classifier_bundle, tmp_path):
    root = _hot_tree(tmp_path, 91.5)
    app = create_app([classifier_bundle], ServeConfig(sensors_root=str(root)))

    async def fn(client):
        return await client.get("/health/ready"), await client.get("/v2/health/ready"), await client.get("/metrics")

    ready, v2, metrics = run(app, fn)
    assert ready.status_code == 503
    report = ready.json()
    assert report["status"] == "degraded" and report["models"]["tiny"]["ok"]
    assert any("91.5 C is above 80.0 C" in r for r in report["reasons"])
    assert v2.status_code == 503 and v2.json()["ready"] is False
    assert 'edgeship_cpu_temperature_celsius{source="thermal_zone0 (cpu-thermal)"} 91.5' in metrics.text
    assert 'edgeship_readiness{edgeship_readiness="degraded"} 1.0' in metrics.text
    assert 'edgeship_readiness{edgeship_readiness="ready"} 0.0' in metrics.text
    assert 'node_thermal_zone_temp{type="cpu-thermal",zone="0"} 91.5' in metrics.text
    assert 'edgeship_thermal_status{edgeship_thermal_status="severe"} 1.0' in metrics.text  # generic limits: 85 C


def test_alert_rules():
    t = AlertThresholds(max_cpu_temp_c=80, min_available_memory_mb=64, min_disk_free_mb=100)
    assert evaluate(Snapshot(), t) == []  # no sample is not a bad sample
    names = {a.name for a in evaluate(Snapshot(cpu_temp_c=81, throttled_now=True, available_memory_bytes=10 << 20,
                                                disk_free_bytes=50 << 20), t)}
    assert names == {"cpu_temperature", "throttling", "memory", "disk"}
    assert evaluate(Snapshot(cpu_temp_c=81), AlertThresholds(max_cpu_temp_c=None)) == []
    with pytest.raises(InputError):
        AlertThresholds(max_cpu_temp_c=-1)


def test_failed_golden_check_is_not_ready(classifier_bundle, tmp_path):
    import shutil

    from edgeship.bundle import open_bundle

    copy = tmp_path / "b"
    shutil.copytree(classifier_bundle, copy)
    with np.load(copy / "golden.npz") as g:
        x, y = g["input"], g["output"]
    np.savez(copy / "golden.npz", input=x, output=y + 1.0)
    app = create_app([open_bundle(copy, verify=False)])

    async def fn(client):
        return await client.get("/health/ready")

    r = run(app, fn)
    assert r.status_code == 503 and r.json()["status"] == "not_ready"
    assert "golden output differs" in r.json()["models"]["tiny"]["reason"]


def test_duplicate_model_names_are_refused(classifier_bundle):
    with pytest.raises(InputError, match="two models are named 'tiny'"):
        create_app([classifier_bundle, classifier_bundle])


class FakeLLM:
    name = "tiny-llm"

    def __init__(self):
        self.started = self.stopped = False

    def model_card(self):
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "edgeship", "task": "generate"}

    async def start(self):
        self.started = True

    async def stop(self):
        self.stopped = True

    def ready(self):
        return False, "model still loading"


def test_llm_service_is_wired_in(classifier_bundle, monkeypatch):
    from starlette.responses import JSONResponse

    from edgeship._routes import Routes

    fake = types.ModuleType("edgeship.llm.openai_api")

    def create_llm_router(service):
        router = Routes()

        @router.post("/v1/chat/completions")
        async def chat(request):
            return JSONResponse({"object": "chat.completion", "model": service.name})

        return router

    fake.create_llm_router = create_llm_router
    monkeypatch.setitem(sys.modules, "edgeship.llm.openai_api", fake)
    llm = FakeLLM()
    app = create_app([classifier_bundle], llm=llm)

    async def fn(client):
        assert llm.started
        return (await client.get("/v1/models"), await client.post("/v1/chat/completions"),
                await client.get("/health/ready"), await client.get("/v1/models/tiny-llm"))

    models, chat, ready, card = run(app, fn)
    assert llm.stopped
    assert [m["id"] for m in models.json()["data"]] == ["tiny", "tiny-llm"]
    assert chat.json()["model"] == "tiny-llm" and card.json()["task"] == "generate"
    assert ready.status_code == 503 and ready.json()["llm"] == {"name": "tiny-llm", "ok": False, "reason": "model still loading"}


def test_serve_verb_flags():
    import argparse

    from edgeship.commands import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "b1", "b2", "--max-batch", "16", "--max-wait-ms", "0", "--queue-size", "5",
                              "--threads", "2", "--spinning", "run", "--max-upload-mb", "0.5", "--max-temp", "70"])
    cfg = serve.build_config(args)
    assert args.bundles == ["b1", "b2"] and cfg.max_batch == 16 and cfg.max_wait_ms == 0 and cfg.queue_size == 5
    assert cfg.threads == 2 and cfg.spinning == "run" and cfg.max_upload_bytes == 512 * 1024 and cfg.alerts.max_cpu_temp_c == 70
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "b", "--max-batch", "0"])
    with pytest.raises(InputError):
        args.run(parser.parse_args(["serve"]))


def test_the_server_imports_neither_fastapi_nor_pydantic(classifier_bundle):
    """The server stands on Starlette alone: FastAPI's import (pydantic's OpenAPI models) is 16 MB of RSS."""
    import subprocess

    code = ("import sys\n"
            "from edgeship.serve.plan import import_server_stack\n"
            "import_server_stack()\n"
            "from edgeship.serve import ServeConfig, create_app\n"
            "app = create_app([sys.argv[1]], ServeConfig(prep_threads=1, docs=True))\n"
            "assert any(getattr(r, 'path', '') == '/v1/models/{name}/predict' for r in app.routes)\n"
            "print(sorted(m for m in ('fastapi', 'pydantic') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code, str(classifier_bundle)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[]"
