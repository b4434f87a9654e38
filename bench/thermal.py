"""The thermal governor in a closed loop on a simulated bare Raspberry Pi 5: governor off vs on.

    python bench/thermal.py [--duration 180] [--time-scale 4] [--clients 4] [--low-clients 1]
                            [--work /tmp/edgeship-thermal] [--out bench/results/thermal.json]

A real `edgeship serve` process serves ResNet-18 (torchvision architecture, random weights: timing
does not depend on them) exported by edgeship, with its INT8 form made by `edgeship quantize`
declared as the lighter variant. Its sensors are a fake sysfs tree written by
``edgeship.monitor.plant``: a first-order thermal model of a Pi 5 without a cooler, heated by the
server's measured CPU use, whose firmware model cuts the clock from 2.4 to 1.5 GHz between 80 and
85 C; the server is slowed accordingly (SIGSTOP/SIGCONT for the clock's share of each 50 ms).

``--time-scale`` runs the thermal model that many times faster than the wall clock, so a few
minutes of real load cover the board's heating (its time constant is 160 s); the governor's poll
and dwell are scaled alike. CPU use, requests and latencies are real time.

Calibration: the server is first loaded for ``--calibrate`` seconds at full clock with the plant
frozen; the CPU it uses then is what counts as "all four Pi cores busy" (``load_cores``).
Then two runs from an idle board (50 C), the same load (closed-loop clients posting one photo;
``--low-clients`` of them send ``Priority: u=7``, and every client honours Retry-After):
governor off, governor on. Printed side by side: requests served, p50/p99 of the served ones,
503s, time above the firmware's limit (80 C) and time throttled (clock below 2.4 GHz), in
simulated seconds. Goals (issue 16): with the governor the firmware never throttles, and it
serves at least 1.3x the requests of the ungoverned run over the same time.
Timed runs take flock /tmp/edgeship-bench.lock; on a shared machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def prepare(work: Path, console) -> tuple[Path, Path]:
    """The FP32 bundle and its INT8 variant, made once and kept in ``work``."""
    from edgeship.cli import main

    fp32, int8 = work / "resnet18", work / "resnet18-int8"
    if not (fp32 / "edgeship.json").exists():
        console.print("exporting ResNet-18 (torchvision, random weights) ...")
        if main(["export", "resnet18", "-o", str(fp32), "--dynamic-batch", "--force"]) != 0:
            raise SystemExit("export failed")
    if not (int8 / "edgeship.json").exists():
        console.print("quantizing it to INT8 (edgeship quantize, u8/s8 on x86) ...")
        # Random weights: top-1 agreement with FP32 means little, so only the speed gate decides here.
        if main(["quantize", str(fp32), "-o", str(int8), "--layouts", "int8-chain", "--min-agreement", "0",
                 "--calibration-samples", "32", "--eval-samples", "50", "--timing-runs", "30", "--force"]) != 0:
            raise SystemExit("quantize failed")
    return fp32, int8


def photo_jpeg() -> bytes:
    import io

    from PIL import Image

    from edgeship.photos import photos

    found = photos()
    img = Image.open(found.get("chelsea") or next(iter(found.values()))).convert("RGB").resize((320, 240))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, bundle: Path, root: Path, log: Path, *flags: str):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        cmd = [sys.executable, "-m", "edgeship.cli", "serve", str(bundle), "--port", str(self.port),
               "--sensors-root", str(root), "--target", "rpi5", "--log-level", "warning", *flags]
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited {self.proc.returncode}; see {log}")
            try:
                if httpx.get(self.url + "/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"server did not start; see {log}")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # in case the plant left it stopped
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def load(url: str, body: bytes, seconds: float, clients: int, low_clients: int) -> list[tuple]:
    """Closed-loop clients; each record: (t_end, status, latency_s, low_priority)."""
    import httpx

    records: list[tuple] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(low: bool) -> None:
        headers = {"Content-Type": "image/jpeg", **({"Priority": "u=7"} if low else {})}
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                try:
                    r = http.post(f"{url}/v1/models/resnet18/predict", content=body, headers=headers)
                    status, retry = r.status_code, r.headers.get("Retry-After")
                except httpx.HTTPError:
                    status, retry = 0, None
                t1 = time.monotonic()
                with lock:
                    records.append((t1, status, t1 - t0, low))
                if status == 503 and retry:
                    time.sleep(min(float(retry), max(0.0, deadline - time.monotonic())))

    threads = [threading.Thread(target=client, args=(i < low_clients,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return records


def run_mode(name: str, args, bundles, body: bytes, load_cores: float, work: Path, console) -> dict:
    import httpx

    from edgeship.monitor.plant import PI5_BARE, PlantDriver, ThermalPlant

    root = work / f"sys-{name}"
    if root.exists():
        import shutil

        shutil.rmtree(root)
    plant = ThermalPlant(PI5_BARE, root)
    flags = ["--threads", str(args.threads), "--spinning", "off"]
    if name == "governor on":
        cfg = work / "governor.json"
        scale = args.time_scale
        steps = [{"action": "threads", "set_c": 70.0}, {"action": "variant", "set_c": 74.0},
                 {"action": "rate_limit", "set_c": 77.0}, {"action": "stop", "set_c": 85.0}]
        cfg.write_text(json.dumps({"steps": [{**s, "min_dwell_s": 30.0 / scale} for s in steps],
                                   "poll_s": 1.0 / scale, "sensor_timeout_s": 30.0 / scale}))
        flags += ["--governor", "on", "--governor-config", str(cfg), "--variant", f"resnet18={bundles[1]}",
                  "--low-priority-rps", str(args.low_priority_rps)]
    server = Server(bundles[0], root, work / f"server-{name.replace(' ', '-')}.log", *flags)
    try:
        driver = PlantDriver(plant, server.proc.pid, load_cores=load_cores, time_scale=args.time_scale).start()
        t0 = time.monotonic()
        records = load(server.url, body, args.duration, args.clients, args.low_clients)
        elapsed = time.monotonic() - t0
        driver.stop()
        status = httpx.get(server.url + "/status", timeout=10).json()
    finally:
        server.stop()
    served = [r for r in records if r[1] == 200]
    lat = np.array([r[2] for r in served]) * 1e3 if served else np.array([np.nan])
    plant_summary = driver.summary()
    gov = status.get("governor") or {}
    return {
        "mode": name,
        "seconds": elapsed,
        "requests_served": len(served),
        "served_per_s": len(served) / elapsed,
        "low_priority_served": sum(1 for r in served if r[3]),
        "refused_503": sum(1 for r in records if r[1] == 503),
        "failed_other": sum(1 for r in records if r[1] not in (200, 503)),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "time_above_limit_sim_s": plant_summary["time_above_limit_s"] * args.time_scale,
        "time_throttled_sim_s": plant_summary["time_throttled_s"] * args.time_scale,
        "plant": plant_summary,
        "final_state": gov.get("state", "off"),
        "decisions": gov.get("decisions", []),
        "trace": [{"wall_s": round(p.wall_s, 2), "temp_c": round(p.temp_c, 2), "clock_mhz": p.clock_khz // 1000,
                   "util": round(p.util, 3)} for p in driver.trace[:: max(1, len(driver.trace) // 600)]],
    }


def calibrate(args, bundle: Path, body: bytes, work: Path) -> float:
    from edgeship.monitor.plant import PI5_BARE, PlantDriver, ThermalPlant

    plant = ThermalPlant(PI5_BARE, work / "sys-calibrate")
    server = Server(bundle, work / "sys-calibrate", work / "server-calibrate.log",
                    "--threads", str(args.threads), "--spinning", "off")
    try:
        load(server.url, body, 3.0, args.clients, 0)  # warm up
        driver = PlantDriver(plant, server.proc.pid, load_cores=1.0, frozen=True).start()
        t0 = time.monotonic()
        load(server.url, body, args.calibrate, args.clients, 0)
        driver.stop()
        return driver.cpu_s / (time.monotonic() - t0)
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=180.0, help="seconds of load per run (default 180)")
    ap.add_argument("--time-scale", type=float, default=4.0, help="simulated seconds per wall second (default 4)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--low-clients", type=int, default=1, help="clients sending Priority: u=7 (default 1)")
    ap.add_argument("--low-priority-rps", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of the served model (default 2)")
    ap.add_argument("--calibrate", type=float, default=10.0, help="seconds of the calibration load (default 10)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "edgeship-thermal"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "thermal.json"))
    args = ap.parse_args()

    from rich.table import Table

    from edgeship.bench.env import describe, environment
    from edgeship.monitor.plant import PI5_BARE
    from edgeship.util import console, write_json

    con = console()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundles = prepare(work, con)
    body = photo_jpeg()
    with con.status(f"calibrating: {args.calibrate:g} s of load at full clock ..."):
        load_cores = calibrate(args, bundles[0], body, work)
    con.print(f"the server uses {load_cores:.2f} cores at saturation: that is the simulated Pi fully loaded",
              highlight=False)
    runs = []
    for mode in ("governor off", "governor on"):
        with con.status(f"{mode}: {args.duration:g} s of load ({args.duration * args.time_scale:g} s of the Pi) ..."):
            runs.append(run_mode(mode, args, bundles, body, load_cores, work, con))
    off, on = runs
    ratio = on["requests_served"] / max(1, off["requests_served"])
    env = environment(args.threads)
    table = Table(title=f"Simulated Pi 5 without a cooler, {args.duration:g} s of load, thermal model x{args.time_scale:g} "
                        "(measured in this run)", caption=describe(env))
    table.add_column("")
    for r in runs:
        table.add_column(r["mode"], justify="right")
    rows = [
        ("requests served", lambda r: f"{r['requests_served']}"),
        ("served per second", lambda r: f"{r['served_per_s']:.1f}"),
        ("of them low priority", lambda r: f"{r['low_priority_served']}"),
        ("refused (503)", lambda r: f"{r['refused_503']}"),
        ("p50 ms (served)", lambda r: f"{r['p50_ms']:.0f}"),
        ("p99 ms (served)", lambda r: f"{r['p99_ms']:.0f}"),
        ("time above 80 C (simulated s)", lambda r: f"{r['time_above_limit_sim_s']:.0f}"),
        ("time throttled (simulated s)", lambda r: f"{r['time_throttled_sim_s']:.0f}"),
        ("peak temperature", lambda r: f"{r['plant']['peak_temp_c']:.1f} C"),
        ("lowest clock", lambda r: f"{r['plant']['min_clock_khz'] / 1000:.0f} MHz"),
        ("governor state at the end", lambda r: r["final_state"]),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in runs))
    con.print(table)
    never = on["time_throttled_sim_s"] == 0
    con.print(f"governed / ungoverned requests served: {ratio:.2f}x (goal >= 1.3: "
              f"{'met' if ratio >= 1.3 else 'not met'}); the firmware throttled the governed run for "
              f"{on['time_throttled_sim_s']:.0f} simulated s (goal 0: {'met' if never else 'not met'})", highlight=False)
    for d in on["decisions"]:
        con.print(f"  governor: {d['from']} -> {d['to']} ({d['trigger']}): {d['reason']}", highlight=False)
    write_json(args.out, {"runs": runs, "ratio_served": ratio, "goal_ratio_met": ratio >= 1.3,
                          "goal_never_throttled_met": never, "load_cores": load_cores, "plant": PI5_BARE.source,
                          "args": vars(args), "env": env})
    con.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
