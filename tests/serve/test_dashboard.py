"""The live dashboard in a real headless Chromium against a real `edgeship serve` on 127.0.0.1,
its sensors a simulated Raspberry Pi 5 that the test heats while the page is open."""

from __future__ import annotations

import json
import shutil
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from edgeship.monitor.plant import PI5_BARE, ThermalPlant  # noqa: E402
from tests.serve.support import ServerProcess  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        pytest.skip("Debian packages chromium and chromium-driver are not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {script!r} (last value {value!r})")


DRAWN = """
return Array.from(document.querySelectorAll('#chart-latency canvas, #chart-throughput canvas, #chart-heat canvas'))
  .map(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; });
"""


@pytest.fixture(scope="module")
def pi_server(classifier_bundle, tmp_path_factory):
    """A real server whose sensors are a simulated bare Pi 5 (50 C, 2.4 GHz, no flags to start)."""
    root = tmp_path_factory.mktemp("pi")
    plant = ThermalPlant(PI5_BARE, root)
    server = ServerProcess([classifier_bundle], "--sensors-root", str(root), "--spinning", "off",
                           "--target", "rpi5").wait_live()
    yield server, plant
    server.stop()


def test_dashboard_loads_draws_and_follows_the_server(browser, pi_server, jpeg, tmp_path, capsys):
    server, plant = pi_server
    plant.temp_c = 50.0
    plant.step(0.0, 0.0)
    if True:
        for _ in range(5):
            r = httpx.post(f"{server.url}/v1/models/tiny/predict", content=jpeg, timeout=30)
            assert r.status_code == 200
        browser.get(server.url + "/")
        assert browser.title == "edgeship"
        wait_for(browser, "return window.edgeshipDashboard && window.edgeshipDashboard.updates >= 2")
        # The page shows the device and the model with its version.
        wait_for(browser, "return document.getElementById('temp').textContent === '50.0 °C'")
        assert browser.find_element("id", "clock").text == "2400 MHz"
        row = browser.find_element("css selector", "tr[data-model='tiny']")
        assert row.text.split()[:2] == ["tiny", "3"]
        # The charts draw: three uPlot canvases with pixels on them, fed with more than one point.
        drawn = wait_for(browser, DRAWN.replace("return Array", "const n = Array") + "; return n.length === 3 && n.every(x => x > 0) && n")
        assert len(drawn) == 3
        assert browser.execute_script("return window.edgeshipDashboard.charts['chart-heat'].data[0].length") >= 2
        # The server's state changes: the board heats past the firmware's limit; the page follows.
        plant.temp_c = 83.0
        plant.step(0.0, 1.0)
        wait_for(browser, "return document.getElementById('temp').textContent === '83.0 °C'")
        wait_for(browser, "const c = document.querySelector(\"[data-flag='soft_temp_limit']\"); return c && c.dataset.on === 'true'")
        assert browser.find_element("id", "clock").text != "2400 MHz"
        assert browser.find_element("id", "thermal-status").text == "severe"
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        with capsys.disabled():  # shown in a plain `pytest -q` run too
            print(f"\ndashboard screenshot: {shot}")
        # No console errors (favicon, scripts, fetches) over the whole session.
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors


def test_monitor_shows_the_same_live_view_in_a_terminal(pi_server, jpeg, capsys, tmp_path):
    from edgeship.cli import main

    server, plant = pi_server
    plant.temp_c = 76.5
    plant.step(0.0, 0.0)
    for _ in range(3):
        assert httpx.post(f"{server.url}/v1/models/tiny/predict", content=jpeg, timeout=30).status_code == 200
    time.sleep(1.2)  # one more point of the live view
    assert main(["monitor", server.url, "--once"]) == 0
    out = capsys.readouterr().out
    assert "76.5 °C" in out and "2400 MHz" in out and "tiny" in out and "last minutes" in out
    assert "soft temp limit" in out and "moderate" in out  # flags shown, status from the Pi's limits
    assert main(["monitor", server.url, "--json", "-"]) == 0
    assert '"temp_c": 76.5' in capsys.readouterr().out
    snapshot = tmp_path / "status.json"
    assert main(["monitor", server.url, "--json", str(snapshot)]) == 0  # --json PATH: a file, as in every verb
    assert json.loads(snapshot.read_text()) and "76.5" in snapshot.read_text()


def test_monitor_says_what_is_wrong(capsys):
    from edgeship.cli import main
    from tests.serve.support import free_port

    assert main(["monitor", f"http://127.0.0.1:{free_port()}", "--once"]) == 1
    assert "cannot reach http://127.0.0.1:" in capsys.readouterr().err
    assert main(["monitor", "pi.local:8000", "--once"]) == 2
    assert "expected http://HOST:PORT" in capsys.readouterr().err


def test_docs_page_draws_every_operation_from_the_device(browser, classifier_bundle):
    """Swagger UI at /docs (--docs), in Chromium: every operation of /docs/openapi.json is drawn, from
    files the server serves itself, with no error in the browser's console."""
    pytest.importorskip("swagger_ui_bundle")
    server = ServerProcess([classifier_bundle], "--docs", "--spinning", "off").wait_live()
    try:
        schema = httpx.get(f"{server.url}/docs/openapi.json", timeout=10).json()
        operations = sum(len(ops) for ops in schema["paths"].values())
        browser.get(f"{server.url}/docs")
        drawn = wait_for(browser, f"const n = document.querySelectorAll('.opblock').length; "
                                  f"return n >= {operations} ? n : 0;")
        assert drawn == operations > 20
        assert browser.execute_script("return !!document.querySelector('#operations-vision-predict')")
        requested = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert requested and all(u.startswith(server.url) for u in requested), requested
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        server.stop()


def test_dashboard_assets_are_served_locally(classifier_bundle, tmp_path):
    from starlette.testclient import TestClient  # noqa: F401  (starlette's client needs httpx only)

    from edgeship.serve import create_app
    from edgeship.serve.config import ServeConfig

    app = create_app([classifier_bundle], ServeConfig(sensors_root=str(tmp_path), spinning="off"))
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and "uPlot.iife.min.js" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # no CDN
        js = client.get("/static/uplot/uPlot.iife.min.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "MIT" in client.get("/static/uplot/LICENSE").text
        assert client.get("/static/uplot/..%2Fdashboard.html").status_code == 404
        status = client.get("/status?history=1").json()
        assert status["models"][0]["name"] == "tiny" and status["device"] is None and "history" in status
