"""A live update under steady load: failed requests, p99 around the swap, publish->commit, canary->rollback,
RSS during the swap, and the bytes a head-only update fetches.

    python bench/ota_swap.py --rps 20 --seconds 30          # prints a table, writes bench/results/ota_swap.json

Real parts: a TUF repository made by edgeship.ota on a Range HTTP server on 127.0.0.1, `edgeship serve
--ota` in its own process, a client thread at a fixed request rate. The model is the tests' small
classifier (a conv backbone, a 384x384 layer, a 4-class head): a head-only update changes only the
head. Figures are measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ["PYTHONPATH"] = f"{ROOT / 'src'}:{ROOT}"  # the server process runs this checkout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rps", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ota_swap.json"))
    args = ap.parse_args()
    import httpx
    import numpy as np
    import psutil

    from edgeship.ota.repo import RepoConfig, init_repo
    from tests.ota.support import make_bundle, serve
    from tests.serve.support import ServerProcess, encode, picture

    work = Path(tempfile.mkdtemp(prefix="ota-swap-"))
    v3, v4 = make_bundle(work / "v3", "3"), make_bundle(work / "v4", "4", head_seed=1)
    wrong = make_bundle(work / "v5", "5", wrong=True)
    repo = init_repo(work / "repo", RepoConfig(chunk_kib=16))
    repo.publish(v3)
    http = serve(repo.public)
    srv = ServerProcess([v3], "--ota", http.url, "--ota-store", str(work / "store"), "--ota-root", str(repo.root_file),
                        "--ota-interval", "1", "--log-level", "info").wait_live()
    proc = psutil.Process(srv.proc.pid)
    body = encode(picture(), "JPEG")
    rows, rss, stop = [], [], threading.Event()

    def traffic():
        with httpx.Client(timeout=10) as c:
            t_next = time.perf_counter()
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = c.post(f"{srv.url}/v1/models/tiny/predict", content=body, headers={"content-type": "image/jpeg"})
                    rows.append((t0, (time.perf_counter() - t0) * 1e3, r.status_code, r.json().get("version")))
                except httpx.HTTPError:
                    rows.append((t0, float("nan"), 0, None))
                t_next += 1 / args.rps
                time.sleep(max(0.0, t_next - time.perf_counter()))

    def sample_rss():
        while not stop.is_set():
            rss.append((time.perf_counter(), proc.memory_info().rss))
            time.sleep(0.05)

    card = lambda: httpx.get(f"{srv.url}/v1/models/tiny").json()  # noqa: E731
    threads = [threading.Thread(target=traffic, daemon=True), threading.Thread(target=sample_rss, daemon=True)]
    try:
        for t in threads:
            t.start()
        time.sleep(args.seconds / 3)
        t_pub = time.perf_counter()
        repo.publish(v4)
        while card()["version"] != "4" and time.perf_counter() - t_pub < 300:
            time.sleep(0.05)
        t_commit = time.perf_counter()
        if card()["version"] != "4":
            raise SystemExit(f"version 4 was not committed: {card()['update']}")
        swap_at = next((t for t, _, _, v in rows if v == "4" and t >= t_pub), t_commit)
        time.sleep(max(0.0, args.seconds * 2 / 3 - (t_commit - rows[0][0])))
        t_bad = time.perf_counter()
        repo.publish(wrong)
        while "5" not in card()["versions"]["failed"] and time.perf_counter() - t_bad < 300:
            time.sleep(0.05)
        t_rolled = time.perf_counter()
        stop.set()
        for t in threads:
            t.join(10)
        store_bytes = sum(p.stat().st_size for p in (work / "store" / "blobs").iterdir())
    finally:
        stop.set()
        srv.stop()
        http.stop()
    log = srv.output()
    steady = np.array([ms for t, ms, code, _ in rows if code == 200 and t < t_pub])
    around = np.array([ms for t, ms, code, _ in rows if code == 200 and abs(t - swap_at) <= 5])
    failed = sum(code != 200 for _, _, code, _ in rows)
    failed_swap = sum(code != 200 for t, _, code, _ in rows if abs(t - swap_at) <= 5)
    steady_rss = np.median([r for t, r in rss if t < t_pub]) if rss else float("nan")
    swap_rss = max([r for t, r in rss if t_pub <= t <= t_commit + 2] or [float("nan")])
    # bytes the head-only update fetched: the repository's new chunks for v4 over v4's bundle size
    from edgeship.ota.recipe import Recipe

    versions = {r["version"]: r for r in repo.versions("tiny")}
    targets = repo.load("targets").signed.targets
    recipe = lambda v: Recipe.from_json(repo._target_bytes(versions[v]["recipe"],  # noqa: E731
                                                           targets[versions[v]["recipe"]].hashes["sha256"]))
    old = recipe("3").chunk_set()
    new = recipe("4")
    head_bytes = sum(size for sha, size in new.chunk_set().items() if sha not in old) + versions["4"]["length"]
    result = {
        "requests": len(rows), "rps": args.rps, "seconds": args.seconds, "failed_total": failed,
        "failed_during_swap": failed_swap, "p99_steady_ms": float(np.percentile(steady, 99)),
        "p99_around_swap_ms": float(np.percentile(around, 99)) if around.size else float("nan"),
        "publish_to_commit_s": t_commit - t_pub, "failing_canary_to_rollback_s": t_rolled - t_bad,
        "rss_steady_mb": steady_rss / 1e6, "rss_peak_swap_mb": swap_rss / 1e6,
        "head_only_fetch_bytes": head_bytes, "bundle_bytes": new.total_bytes, "store_bytes": store_bytes,
        "swaps_logged": log.count('"event": "ota_swap"'),
        "load_average": os.getloadavg(),
        "requests_around_swap": [[round(t - swap_at, 3), round(ms, 2), code] for t, ms, code, _ in rows
                                 if abs(t - swap_at) <= 10],
    }
    result["p99_ratio"] = result["p99_around_swap_ms"] / result["p99_steady_ms"]
    result["rss_ratio"] = result["rss_peak_swap_mb"] / result["rss_steady_mb"]
    result["head_only_share"] = head_bytes / new.total_bytes
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"{'figure':<44}{'measured':>14}  goal")
    for label, value, goal in [
        ("requests (all answered 200?)", f"{len(rows)} ({failed} failed)", ""),
        ("failed requests within 5 s of the swap", f"{failed_swap}", "0"),
        ("p99 within 5 s of the swap / steady p99", f"{result['p99_ratio']:.2f}x "
         f"({result['p99_around_swap_ms']:.1f}/{result['p99_steady_ms']:.1f} ms)", "<= 2x"),
        ("publish -> committed (poll 1 s, canary)", f"{result['publish_to_commit_s']:.1f} s", ""),
        ("failing canary: publish -> rolled back", f"{result['failing_canary_to_rollback_s']:.1f} s", "<= 60 s"),
        ("peak RSS during swap / steady RSS", f"{result['rss_ratio']:.2f}x", ""),
        ("head-only update: fetched / bundle bytes", f"{result['head_only_share']:.1%}", "<= 20%"),
    ]:
        print(f"{label:<44}{value:>14}  {goal}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
