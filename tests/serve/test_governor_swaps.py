"""The governor's threads and variant steps swap the served model live, under load, with no failed request."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from edgeship.bundle import open_bundle, write_bundle  # noqa: E402
from edgeship.monitor.governor import Action, GovernorConfig, GovernorState, Step  # noqa: E402
from edgeship.monitor.plant import PI5_BARE, ThermalPlant  # noqa: E402
from edgeship.serve import ServeConfig, create_app  # noqa: E402
from tests.serve.support import encode, picture  # noqa: E402


@pytest.fixture(scope="module")
def lighter_variant(classifier_bundle, tmp_path_factory):
    """The same graph under another version: what the variant step serves (a real INT8 form in bench/thermal.py)."""
    b = open_bundle(classifier_bundle)
    out = tmp_path_factory.mktemp("variant") / "tiny-lite"
    manifest = dataclasses.replace(b.manifest, version="3-lite")
    write_bundle(out, manifest, b.model_path, labels=b.labels, golden=b.golden())
    return out


def test_threads_then_variant_then_back_under_load(classifier_bundle, lighter_variant, tmp_path):
    plant = ThermalPlant(PI5_BARE, tmp_path)
    steps = (Step(Action.THREADS, 70.0, min_dwell_s=0), Step(Action.VARIANT, 74.0, min_dwell_s=0),
             Step(Action.STOP, 85.0, min_dwell_s=0))
    cfg = ServeConfig(sensors_root=str(tmp_path), target="rpi5", spinning="off", threads=2,
                      governor=GovernorConfig(steps=steps, poll_s=3600.0), variants={"tiny": str(lighter_variant)})
    app = create_app([classifier_bundle], cfg)
    jpeg = encode(picture(64, 48, 2), "JPEG")

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                service = app.state.governor
                while service.loop.polls < 1:
                    await asyncio.sleep(0.01)
                answers, stop = [], asyncio.Event()

                async def hammer():
                    while not stop.is_set():
                        r = await client.post("/v1/models/tiny/predict", content=jpeg)
                        answers.append((r.status_code, r.json().get("version")))

                async def card():
                    return (await client.get("/v1/models/tiny")).json()["serving"]

                clients = [asyncio.create_task(hammer()) for _ in range(4)]
                seen = []
                for celsius in (62.0, 71.0, 75.0, 68.0, 64.0):
                    plant.temp_c = celsius
                    plant.step(0.0, 0.0)
                    d = await asyncio.to_thread(service.loop.poll_once)
                    seen.append((d.after if d else None, await card(), d.notes if d else ()))
                    await asyncio.sleep(0.2)
                stop.set()
                await asyncio.gather(*clients)
                return seen, answers

    seen, answers = asyncio.run(go())
    states = [s[0] for s in seen]
    assert states == [None, GovernorState.THREADS, GovernorState.VARIANT, GovernorState.THREADS, GovernorState.NORMAL]
    threads = [s[1]["backend"]["intra_op_threads"] for s in seen]
    versions = [s[1]["version"] for s in seen]
    assert threads == [2, 1, 1, 1, 2]  # half the threads while hot; the variant runs with them too
    assert versions == ["3", "3", "3-lite", "3", "3"]
    assert "intra-op threads 2 -> 1" in seen[1][2][0] and "version 3 -> 3-lite" in seen[2][2][0]
    assert answers and all(code == 200 for code, _ in answers)  # no request failed across four swaps
    assert {v for _, v in answers} == {"3", "3-lite"}


def test_an_update_committed_while_the_variant_serves_waits_for_the_step_back(
        classifier_bundle, classifier_bundle_v4, lighter_variant, tmp_path):
    # The update and the governor share one rule (ServerState.primary/held): an update that commits while
    # the governor holds its lighter variant moves what the name returns to, and does not undo the variant.
    from edgeship.runtime.model import Model
    from edgeship.serve.ota import ServerGate

    steps = (Step(Action.VARIANT, 74.0, min_dwell_s=0), Step(Action.STOP, 85.0, min_dwell_s=0))
    cfg = ServeConfig(sensors_root=str(tmp_path), spinning="off", governor=GovernorConfig(steps=steps, poll_s=3600.0),
                      variants={"tiny": str(lighter_variant)})
    app = create_app([classifier_bundle], cfg)
    state = app.state.edgeship

    class _OTA:  # what ServerGate uses of the server's updater
        def __init__(self, state, loop):
            self.state, self.loop = state, loop

        def call_soon(self, coro):
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def go():
        async with app.router.lifespan_context(app):
            actuator = app.state.governor.actuator
            await asyncio.to_thread(actuator.engage, Action.VARIANT)
            assert state.models["tiny"].model.version == "3-lite" and "tiny" in state.held
            gate = ServerGate(_OTA(state, asyncio.get_running_loop()))
            gate.candidates["tiny"] = Model.load(classifier_bundle_v4)
            await asyncio.to_thread(gate.commit, "tiny", classifier_bundle_v4)
            during = state.models["tiny"].model.version
            await asyncio.to_thread(actuator.release, Action.VARIANT)
            return during, state.models["tiny"].model.version, dict(state.held)

    during, after, held = asyncio.run(go())
    assert during == "3-lite"  # the commit did not undo the variant
    assert after == "4" and held == {}  # stepping back serves the committed update, not the start bundle
