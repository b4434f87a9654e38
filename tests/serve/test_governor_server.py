"""The thermal governor in the server, in-process: rate limiting of low-priority requests, stop at
critical, readiness, metrics, bad sensors while serving, bad configuration at start. The sensors
are a simulated Pi 5 tree; the test drives the governor's polls itself."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from edgeship.cli import main  # noqa: E402
from edgeship.monitor.governor import Action, GovernorConfig, GovernorState, Step  # noqa: E402
from edgeship.monitor.plant import PI5_BARE, ThermalPlant  # noqa: E402
from edgeship.serve import ServeConfig, create_app  # noqa: E402
from edgeship.serve.governor import TokenBucket, is_low_priority  # noqa: E402
from tests.serve.support import encode, picture  # noqa: E402

LOW = {"Priority": "u=7"}


def ladder(*actions: Action, dwell: float = 0.0) -> GovernorConfig:
    points = {Action.THREADS: 70.0, Action.VARIANT: 74.0, Action.RATE_LIMIT: 77.0, Action.STOP: 85.0}
    # poll_s: the loop's own thread waits an hour between polls; the test polls by hand.
    return GovernorConfig(steps=tuple(Step(a, points[a], min_dwell_s=dwell) for a in actions), poll_s=3600.0)


def heat(plant: ThermalPlant, celsius: float) -> None:
    plant.temp_c = celsius
    plant.step(0.0, 0.0)


def run(app, fn):
    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                service = app.state.governor
                while service.loop.polls < 1:  # the loop's own first poll, at start, comes first
                    await asyncio.sleep(0.01)
                return await fn(client, service)

    return asyncio.run(go())


async def poll(service):
    return await asyncio.to_thread(service.loop.poll_once)


@pytest.fixture
def jpeg_small():
    return encode(picture(64, 48, 1), "JPEG")


def test_rate_limit_then_stop_then_recover(classifier_bundle, tmp_path, jpeg_small):
    plant = ThermalPlant(PI5_BARE, tmp_path)  # 50 C
    cfg = ServeConfig(sensors_root=str(tmp_path), target="rpi5", spinning="off", low_priority_rps=0.5,
                      governor=ladder(Action.RATE_LIMIT, Action.STOP))
    app = create_app([classifier_bundle], cfg)

    async def fn(client, service):
        post = lambda **kw: client.post("/v1/models/tiny/predict", content=jpeg_small, **kw)  # noqa: E731
        out = {"cool": (await post(headers=LOW)).status_code}
        for celsius in (62.0, 70.0, 78.0):  # a realistic rise: the spike filter holds back +20 C jumps
            heat(plant, celsius)
            d = await poll(service)
        out["engaged"] = (d.after, d.trigger)
        low = [await post(headers=LOW) for _ in range(3)]
        out["low"] = [r.status_code for r in low]
        out["low_refused"] = next(r for r in low if r.status_code == 503)
        out["normal"] = [(await post()).status_code for _ in range(3)]
        out["v2_low"] = await client.post("/v2/models/tiny/infer", headers=LOW, json={"inputs": []})
        heat(plant, 86.0)
        out["stop"] = (await poll(service)).after
        out["stopped_normal"] = await post()
        out["ready"] = await client.get("/health/ready")
        out["live"] = (await client.get("/health/live")).status_code
        out["status"] = (await client.get("/status")).json()
        out["metrics"] = (await client.get("/metrics")).text
        out["release"] = []
        for celsius in (75.0, 68.0):  # below stop's release (80), then below rate_limit's (72)
            heat(plant, celsius)
            out["release"].append((await poll(service)).after)
        out["after"] = (await post(headers=LOW)).status_code
        out["ready_after"] = (await client.get("/health/ready")).status_code
        return out

    out = run(app, fn)
    assert out["cool"] == 200
    assert out["engaged"] == (GovernorState.RATE_LIMIT, "temperature")
    assert out["low"][0] == 200 and 503 in out["low"]  # one token of burst, then 0.5/s
    refused = out["low_refused"]
    assert int(refused.headers["Retry-After"]) >= 1 and "low-priority" in refused.json()["error"]["message"]
    assert out["normal"] == [200, 200, 200]  # normal traffic is not limited
    assert out["v2_low"].status_code == 503 and "error" in out["v2_low"].json()  # the /v2 error shape
    assert out["stop"] is GovernorState.STOPPED
    stopped = out["stopped_normal"]
    assert stopped.status_code == 503 and stopped.headers["Retry-After"] == "1"  # the stop step's dwell (0) or 1 s
    assert "stopped accepting work" in stopped.json()["error"]["message"]
    assert out["ready"].status_code == 503 and out["ready"].json()["status"] == "not_ready"
    assert "too hot at 86.0 C" in out["ready"].json()["reasons"][0]
    assert out["live"] == 200
    gov = out["status"]["governor"]
    assert gov["state"] == "stopped" and gov["stopped"] and [d["to"] for d in gov["decisions"]] == ["rate_limit", "stopped"]
    text = out["metrics"]
    assert 'edgeship_governor_state{edgeship_governor_state="stopped"} 1.0' in text
    assert 'edgeship_governor_transitions_total{from="normal",to="rate_limit",trigger="temperature"} 1.0' in text
    assert 'edgeship_governor_rejected_total{reason="rate_limit"}' in text
    assert 'edgeship_governor_rejected_total{reason="stopped"} 1.0' in text
    assert 'status="503"' in text and 'model="tiny"' in text
    assert out["release"] == [GovernorState.RATE_LIMIT, GovernorState.NORMAL]
    assert out["after"] == 200 and out["ready_after"] == 200
    # Every series a hot Pi and the governor add passes promtool's lint.
    for series in ('edgeship_firmware_throttled{flag="soft_temp_limit"} 1.0', 'node_cpu_scaling_frequency_hertz{cpu="0"}',
                   'edgeship_thermal_status{edgeship_thermal_status="critical"} 1.0', "edgeship_thermal_headroom ",
                   'node_thermal_zone_temp{type="cpu-thermal",zone="0"} 86.0'):
        assert series in text, series
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_the_server_keeps_serving_through_sensor_faults(classifier_bundle, tmp_path, jpeg_small):
    plant = ThermalPlant(PI5_BARE, tmp_path, temp_c=71.0)
    zone = tmp_path / "sys/class/thermal/thermal_zone0/temp"
    cfg = ServeConfig(sensors_root=str(tmp_path), target="rpi5", spinning="off",
                      governor=ladder(Action.RATE_LIMIT, Action.STOP))

    async def fn(client, service):
        codes = []
        for fault in ("vanish", "garbage", "jump", "back"):
            if fault == "vanish":
                zone.unlink()
            elif fault == "garbage":
                zone.write_text("\x00garbage\n")
            elif fault == "jump":
                zone.write_text("121000\n")  # +50 C in one sample: held back, not acted on
            else:
                heat(plant, 71.5)
            await poll(service)
            codes.append((await client.post("/v1/models/tiny/predict", content=jpeg_small)).status_code)
            codes.append((await client.get("/metrics")).status_code)
            codes.append((await client.get("/status")).status_code)
        return codes, service.governor.state, service.governor.tracker.rejected

    codes, state, rejected = run(create_app([classifier_bundle], cfg), fn)
    assert codes == [200] * 12
    assert state is GovernorState.NORMAL and rejected == 1


def test_bad_governor_configuration_is_a_clear_error_at_start(classifier_bundle, tmp_path, capsys):
    bad = tmp_path / "ladder.json"
    bad.write_text(json.dumps({"steps": [{"action": "threads", "set_c": 74}, {"action": "rate_limit", "set_c": 72}]}))
    argv = ["serve", str(classifier_bundle), "--port", "1"]
    assert main([*argv, "--governor", "on", "--governor-config", str(bad)]) == 2
    assert "set points overlap: step 'rate_limit' (set 72 C" in capsys.readouterr().err
    assert main([*argv, "--variant", "tiny=x"]) == 2
    assert "need --governor on" in capsys.readouterr().err
    assert main([*argv, "--governor", "on", "--variant", "tiny"]) == 2
    assert "expected NAME=BUNDLE" in capsys.readouterr().err
    assert main([*argv, "--governor", "on", "--variant", f"other={classifier_bundle}"]) == 2
    assert "no model named 'other' is served" in capsys.readouterr().err
    assert main([*argv, "--governor", "on", "--variant", f"tiny={tmp_path / 'missing'}"]) == 2
    assert "not a usable bundle" in capsys.readouterr().err
    bad.write_text("{not json")
    assert main([*argv, "--governor", "on", "--governor-config", str(bad)]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_priority_header_and_token_bucket():
    assert is_low_priority([(b"priority", b"u=7")]) and is_low_priority([(b"Priority", b"i, u=5")])
    assert not is_low_priority([(b"priority", b"u=3")]) and not is_low_priority([(b"priority", b"u=9")])
    assert not is_low_priority([(b"priority", b"garbage")]) and not is_low_priority([])
    now = [0.0]
    bucket = TokenBucket(2.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    now[0] = 0.5
    assert bucket.take() == 0.0
