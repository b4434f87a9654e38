"""The `make demo` section of OTA: publish a second version of the default model, watch the running server
take it, publish a broken one, watch it roll back (well under a minute).

>>> SECTIONS["ota"] = ota_section     # in edgeship.demo, after "vision" (it reuses that bundle)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any


def _version(src: Path, out: Path, version: str, break_golden: bool = False) -> Path:
    from ..bundle import open_bundle, write_bundle

    b = open_bundle(src)
    x, y = b.golden()
    write_bundle(out, dataclasses.replace(b.manifest, version=version, files={}), b.model_path, labels=b.labels,
                 golden=(x, y + 1.0 if break_golden else y), overwrite=True)
    return out


def ota_section(out: Path, console, quick: bool, bundle: Path | None = None) -> dict[str, Any]:
    import os
    import shutil
    import sys

    import httpx

    from .httpd import RepoServer
    from .repo import init_repo

    src = bundle or out / "bundles" / "efficientnet-lite0"
    if not (src / "edgeship.json").is_file():
        from ..errors import InputError

        raise InputError(f"{src}: the ota section updates the bundle the vision section exports; run that first")
    work = out / "ota"
    shutil.rmtree(work, ignore_errors=True)
    v1 = _version(src, work / "v1", "1")
    repo = init_repo(work / "repo")
    repo.publish(v1)
    http = RepoServer(repo.public).start()
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "edgeship.cli", "serve", str(v1), "--port", str(port), "--ota", http.url,
           "--ota-store", str(work / "store"), "--ota-root", str(repo.root_file), "--ota-interval", "1",
           "--canary-samples", "20", "--canary-seconds", "8", "--log-level", "warning"]
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    events: dict[str, Any] = {}
    stop = False
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        import threading

        from ..photos import photos

        photo = next(iter(photos().values()), None)
        data = Path(photo).read_bytes() if photo else None
        name = repo.versions()[0]["model"]
        card = lambda: httpx.get(f"{url}/v1/models/{name}").json()  # noqa: E731

        def traffic():  # a steady trickle so the canary has live requests to shadow
            with httpx.Client(timeout=10) as c:
                while not stop and data:
                    c.post(f"{url}/v1/models/{name}/predict", content=data)
                    time.sleep(0.05)

        threading.Thread(target=traffic, daemon=True).start()
        for version, broken in (("2", False), ("3", True)):
            t0 = time.perf_counter()
            repo.publish(_version(src, work / f"v{version}", version, break_golden=broken))
            console.print(f"published {name} {version}{' (golden output broken)' if broken else ''}", highlight=False)
            while time.perf_counter() - t0 < 90:
                c = card()
                if c["version"] == version or version in c["versions"]["failed"]:
                    break
                time.sleep(0.1)
            c = card()
            took = time.perf_counter() - t0
            what = "serving" if c["version"] == version else f"rolled back ({c['update']['last_result']['reason'][:80]})"
            console.print(f"  {what}: server on {c['version']} after {took:.1f} s", highlight=False)
            events[version] = {"served": c["version"], "seconds": round(took, 2),
                               "last_result": c["update"]["last_result"]}
    finally:
        stop = True
        proc.terminate()
        proc.wait(30)
        log.close()
        http.stop()
    md = ["## Over-the-air update", "", "| version | outcome | seconds |", "|---|---|---|",
          *[f"| {v} | {'served' if e['served'] == v else 'rolled back'} | {e['seconds']} |" for v, e in events.items()]]
    return {"events": events, "markdown": "\n".join(md)}
