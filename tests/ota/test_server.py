"""`edgeship serve --ota`: a real server process takes a new version under traffic, rolls a wrong one back,
and answers the admin API only with the token."""

from __future__ import annotations

import os
import threading
import time

import pytest

pytestmark = pytest.mark.slow
httpx = pytest.importorskip("httpx")


def wait_for(fn, timeout: float = 60.0, what: str = "", show=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {show() if show else ''}")


def test_server_updates_under_traffic_rolls_back_a_wrong_model_and_guards_admin(tmp_path, bundles):
    from edgeship.ota.repo import RepoConfig, init_repo
    from tests.ota.support import make_bundle, serve
    from tests.serve.support import ServerProcess, encode, picture

    repo = init_repo(tmp_path / "repo", RepoConfig(chunk_kib=4))
    repo.publish(bundles["3"])
    http = serve(repo.public)
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    os.chmod(token, 0o600)
    srv = ServerProcess([bundles["3"]], "--ota", http.url, "--ota-store", str(tmp_path / "store"),
                        "--ota-root", str(repo.root_file), "--ota-interval", "0.5", "--canary-samples", "30",
                        "--canary-seconds", "20", "--admin-token-file", str(token), "--log-level", "info")
    failures, answers, stop = [], [], threading.Event()

    def traffic():
        body = encode(picture(), "JPEG")
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post(f"{srv.url}/v1/models/tiny/predict", content=body, headers={"content-type": "image/jpeg"})
                    (answers if r.status_code == 200 else failures).append(r.status_code)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                time.sleep(0.02)

    try:
        srv.wait_live()
        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        card = lambda: httpx.get(f"{srv.url}/v1/models/tiny").json()  # noqa: E731
        assert card()["versions"]["committed"] == "3"
        repo.publish(bundles["4"])
        # the server swaps before the record says committed: wait for both, not just the served version
        wait_for(lambda: (c := card())["version"] == "4" and c["update"]["state"] == "committed", 90,
                 "version 4 to be served and committed", card)
        assert card()["versions"]["previous"] == "3"
        wrong = make_bundle(tmp_path / "wrong", "5", wrong=True)  # loads, passes golden, answers other classes
        repo.publish(wrong)
        wait_for(lambda: "5" in card()["versions"]["failed"], 90, "version 5 to be rolled back")
        c = card()
        assert c["version"] == "4" and "top-1 agreement" in c["update"]["last_result"]["reason"]
        assert "< 90%" in c["update"]["last_result"]["reason"]
        repo.publish(make_bundle(tmp_path / "slow", "6", heavy=8))  # same answers, 8x the work
        wait_for(lambda: "6" in card()["versions"]["failed"], 90, "version 6 to be rolled back", card)
        c = card()
        assert c["version"] == "4" and "> 2.0x" in c["update"]["last_result"]["reason"], c["update"]
        stop.set()
        t.join(15)
        assert failures == [], failures[:5]
        assert len(answers) > 50
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert 'edgeship_update_rollbacks_total{model="tiny"} 2.0' in metrics
        assert 'edgeship_update_state{edgeship_update_state="failed",model="tiny"} 1.0' in metrics
        assert 'model="tiny",sha256=' in metrics and 'version="4"' in metrics and 'version="3"' not in metrics

        url = f"{srv.url}/admin/models/tiny/versions"
        r = httpx.get(url)
        assert r.status_code == 401 and r.json()["error"]["message"].startswith("missing bearer token")
        r = httpx.get(url, headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert r.status_code == 403 and "wrong admin token" in r.json()["error"]["message"]
        auth = {"Authorization": "Bearer s3cret-token-0123456789"}
        assert httpx.get(url, headers=auth).json()["versions"]["committed"] == "4"
        r = httpx.post(f"{srv.url}/admin/models/tiny/rollback", headers=auth, timeout=60)
        assert r.status_code == 200, r.text
        wait_for(lambda: card()["version"] == "3", 30, "the rollback to 3")
        r = httpx.post(f"{srv.url}/admin/models/tiny/pin", headers=auth, json={})
        assert r.json()["versions"]["pinned"] == "3"
        assert httpx.post(f"{srv.url}/admin/models/tiny/check", headers=auth, timeout=60).json()["result"] == "pinned to 3"
    finally:
        stop.set()
        srv.stop()
        http.stop()
    log = srv.output()
    assert '"to": "canary"' in log and '"event": "ota_swap"' in log, log[-3000:]


def test_server_started_after_three_crashes_serves_the_committed_version(tmp_path, bundles):
    from edgeship.ota.agent import Agent
    from edgeship.ota.repo import RepoConfig, init_repo
    from edgeship.ota.state import UpdateState
    from edgeship.ota.store import Store
    from tests.ota.support import serve
    from tests.serve.support import ServerProcess

    repo = init_repo(tmp_path / "repo", RepoConfig(chunk_kib=4))
    repo.publish(bundles["3"])
    http = serve(repo.public)
    store = Store(tmp_path / "store")
    store.install_local(bundles["3"])
    Agent(store, None).install_bundle(bundles["4"], commit=False)
    store.save(store.record("tiny").replace(state=UpdateState.SWITCHING, attempts=3))
    srv = ServerProcess([], "--ota", http.url, "--ota-store", str(tmp_path / "store"),
                        "--ota-root", str(repo.root_file), "--ota-interval", "60")
    try:
        srv.wait_live()
        card = httpx.get(f"{srv.url}/v1/models/tiny").json()
        assert card["version"] == "3" and card["update"]["state"] == "failed"
        assert "3 times" in card["update"]["last_result"]["reason"]
    finally:
        srv.stop()
        http.stop()


def test_admin_endpoints_are_off_without_a_token_and_need_one_with_it(bundles, tmp_path):
    import asyncio

    from edgeship.serve import create_app
    from edgeship.serve.admin import read_token

    async def get(app, path, headers=None, method="GET"):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.request(method, path, headers=headers or {})

    off = create_app([bundles["3"]])
    r = asyncio.run(get(off, "/admin/models/tiny/rollback", method="POST"))
    assert r.status_code == 404 and "admin API is off" in r.json()["error"]["message"]
    on = create_app([bundles["3"]], admin_token="0123456789abcdef-token")
    r = asyncio.run(get(on, "/admin/models/tiny/rollback", {"Authorization": "Basic abc"}, "POST"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = asyncio.run(get(on, "/admin/models/tiny/rollback", {"Authorization": "Bearer 0123456789abcdef-tokeX"}, "POST"))
    assert r.status_code == 403
    r = asyncio.run(get(on, "/admin/models/tiny/rollback", {"Authorization": "Bearer 0123456789abcdef-token"}, "POST"))
    assert r.status_code == 409 and "--ota" in r.json()["error"]["message"]  # authorized, but updates are off
    loose = tmp_path / "token"
    loose.write_text("0123456789abcdef-token")
    loose.chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        read_token(loose)
    loose.chmod(0o600)
    assert read_token(loose) == "0123456789abcdef-token"
