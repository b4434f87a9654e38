"""Kill -9 at every step of an update; after each restart the device must serve v3 or v4, pass its golden
check and hold no partial files.

    python bench/ota_kill9.py --runs 10            # 8 points x 10 = 80 runs (the figure in docs/ota.md)

Each run: a fresh store with v3 installed, a real TUF repository (made by edgeship.ota) on a real
HTTP server on 127.0.0.1 (5 ms per request, a slow link), `edgeship ota agent --once` in a child
process, SIGKILL inside one step, then the agent started again to recover. Long steps (download,
verify, switch, canary) are killed from outside at a uniform random time inside the step, timed by a
calibration run; short ones (after download, staging, commit, rollback: microseconds each) stop
themselves at a random one of their durable operations (EDGESHIP_OTA_CRASH, see edgeship.ota.faults).
The rollback point updates to a version whose golden check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

EXTERNAL = ("download", "verify", "switch", "canary")
INTERNAL = ("after_download", "staging", "commit", "rollback")
POINTS = ("download", "after_download", "verify", "staging", "switch", "canary", "commit", "rollback")


def _agent(store: Path, url: str, root: Path, trace: Path, crash: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "EDGESHIP_OTA_TRACE": str(trace), "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    env.pop("EDGESHIP_OTA_CRASH", None)
    if crash:
        env["EDGESHIP_OTA_CRASH"] = crash
    cmd = [sys.executable, "-m", "edgeship.cli", "ota", "agent", "--store", str(store), "--repo-url", url,
           "--root", str(root), "--once"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _events(trace: Path) -> list[tuple[float, str, str, int]]:
    out = []
    if trace.exists():
        for line in trace.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4:
                out.append((float(parts[0]), parts[2], parts[3], int(parts[4]) if len(parts) > 4 else 0))
    return out


class Lab:
    """Bundles, two repositories (good v4, bad v5) and their servers; a template store with v3."""

    def __init__(self, work: Path):
        from edgeship.ota.httpd import RangeHandler, RepoServer
        from edgeship.ota.repo import RepoConfig, init_repo
        from edgeship.ota.store import Store
        from tests.ota.support import make_bundle

        class SlowLink(RangeHandler):
            def send_head(self):
                time.sleep(0.005)
                return super().send_head()

        self.work = work
        b = work / "bundles"
        b.mkdir(parents=True, exist_ok=True)
        v3 = make_bundle(b / "v3", "3")
        v4 = make_bundle(b / "v4", "4", body_seed=1, head_seed=1)  # new weights throughout: a full download
        v5 = make_bundle(b / "v5", "5", bad_golden=True, body_seed=2)
        self.repos, self.servers = {}, {}
        for key, new in (("good", v4), ("bad", v5)):
            repo = init_repo(work / f"repo-{key}", RepoConfig(chunk_kib=4))
            repo.publish(v3)
            repo.publish(new)
            self.repos[key] = repo
            self.servers[key] = RepoServer(repo.public, handler=SlowLink).start()
        self.template = work / "template"
        Store(self.template).install_local(v3)

    def fresh_store(self, name: str) -> Path:
        store = self.work / name
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(self.template, store, symlinks=True)
        return store

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()


def check_device(store_dir: Path) -> tuple[bool, str, str]:
    """(ok, served version, what is wrong) for a store at rest."""
    from edgeship.bundle import open_bundle
    from edgeship.ota.state import REST
    from edgeship.ota.store import Store
    from edgeship.runtime import Model

    store = Store(store_dir)
    rec = store.record("tiny")
    current = store.current("tiny")
    problems = []
    if rec.state not in REST:
        problems.append(f"state {rec.state.value} after recovery")
    if current is None:
        return False, "-", "no current model"
    bundle = open_bundle(current)
    version = bundle.manifest.version
    if version not in ("3", "4"):
        problems.append(f"serves {version}")
    if rec.committed is None or rec.committed.version != version:
        problems.append(f"current {version} is not the committed {rec.committed}")
    golden = Model.load(bundle).check_golden()
    if golden is None or not golden.ok:
        problems.append("golden check fails")
    partial = store.partial_files() + list((store.root / "downloads").iterdir())
    if partial:
        problems.append(f"partial files: {[p.name for p in partial][:3]}")
    last = rec.last_result or {}
    return not problems, version, "; ".join(problems) or f"{last.get('result')}: {last.get('reason', '')}"[:200]


def calibrate(lab: Lab) -> dict[str, tuple[float, int]]:
    """Duration (s) and durable-operation count of every step, from one clean update each way."""
    found: dict[str, tuple[float, int]] = {}
    for key in ("good", "bad"):
        store = lab.fresh_store(f"calibrate-{key}")
        trace = lab.work / f"calibrate-{key}.trace"
        trace.unlink(missing_ok=True)
        _agent(store, lab.servers[key].url, lab.repos[key].root_file, trace).wait(300)
        begins = {}
        for t, kind, step, n in _events(trace):
            if kind == "begin":
                begins[step] = t
            elif kind == "end" and step in begins:
                found.setdefault(step, (t - begins[step], n))
    return found


def one_run(lab: Lab, point: str, i: int, timing: dict, rng: random.Random) -> dict:
    key = "bad" if point == "rollback" else "good"
    store = lab.fresh_store(f"run-{point}-{i}")
    trace = lab.work / f"run-{point}-{i}.trace"
    trace.unlink(missing_ok=True)
    url, root = lab.servers[key].url, lab.repos[key].root_file
    duration, ops = timing.get(point, (0.0, 1))
    crash = None
    if point in INTERNAL:
        crash = f"{point}:{rng.randint(1, max(1, ops))}"
    proc = _agent(store, url, root, trace, crash)
    inside = None
    if point in EXTERNAL:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(kind == "begin" and step == point for _, kind, step, _ in _events(trace)):
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0, duration))
        proc.send_signal(signal.SIGKILL)
    code = proc.wait(300)
    ev = _events(trace)
    began = any(k == "begin" and s == point for _, k, s, _ in ev)
    ended = any(k == "end" and s == point for _, k, s, _ in ev)
    crashed = any(k == "crash" for _, k, _, _ in ev)
    inside = began and (crashed or not ended) and code == -signal.SIGKILL
    # after the kill, before any restart: whatever `current` points at must be complete and verify
    from edgeship.bundle import open_bundle
    from edgeship.ota.store import Store

    before_ok = Store(store).current("tiny") is not None and open_bundle(Store(store).current("tiny")) is not None
    restart = _agent(store, url, root, lab.work / f"run-{point}-{i}.after.trace")
    restart.wait(300)
    ok, version, problem = check_device(store)  # problem: what is wrong, or the last result
    shutil.rmtree(store, ignore_errors=True)
    return {"point": point, "run": i, "killed": code == -signal.SIGKILL, "inside_step": inside,
            "crash": crash, "ok": ok and before_ok, "serves": version, "detail": problem}


def run_harness(runs: int, work: Path | None = None, seed: int = 0, points=POINTS) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ota-kill9-")) if work is None else work
    lab = Lab(tmp)
    rng = random.Random(seed)
    try:
        timing = calibrate(lab)
        rows = [one_run(lab, p, i, timing, rng) for i in range(runs) for p in points]
    finally:
        lab.stop()
        if work is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"runs": len(rows), "bad": sum(not r["ok"] for r in rows),
            "killed_inside_step": sum(bool(r["inside_step"]) for r in rows),
            "timing_s": {k: v[0] for k, v in timing.items()}, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="runs per point (8 points)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ota_kill9.json"))
    args = ap.parse_args()
    t0 = time.time()
    result = run_harness(args.runs, seed=args.seed)
    result["seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"{'point':<16}{'runs':>6}{'killed inside':>15}{'bad':>6}  serves after restart")
    for p in POINTS:
        rows = [r for r in result["rows"] if r["point"] == p]
        serves = {v: sum(r["serves"] == v for r in rows) for v in ("3", "4")}
        print(f"{p:<16}{len(rows):>6}{sum(bool(r['inside_step']) for r in rows):>15}"
              f"{sum(not r['ok'] for r in rows):>6}  v3 {serves['3']}, v4 {serves['4']}")
    print(f"{result['runs']} runs, {result['bad']} bad outcomes, {result['killed_inside_step']} killed inside the "
          f"step, {result['seconds']} s; wrote {args.out}")
    for r in result["rows"]:
        if not r["ok"] or (r["point"] != "rollback" and r["serves"] == "3"):
            print("BAD" if not r["ok"] else "old version kept:", r)
    return 1 if result["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
