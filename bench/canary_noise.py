"""What a busy CPU does to the live canary's latency verdict: the median against the lower quartile.

    python bench/canary_noise.py [--loads 0 2 4] [--trials 5] [--samples 100]

The server's canary (``edgeship.serve.ota.Shadow``) runs sampled live inputs on the committed model
and the candidate, alternating order, on one thread at nice 10. This script feeds that same Shadow
from a loop (one input every 20 ms, as steady traffic would) while ``--loads`` busy Python loops
keep the CPU busy, for two candidates of the tests' small classifier (a conv backbone, a 384x384
layer, a 4-class head):

- ``same``: a retrained head, the same work: a latency gate must pass it;
- ``3x``: the same answers with 3x the work (two more 384x384 MatMuls): it must fail.

Each trial's timings are judged by ``edgeship.ota.gate.judge`` (the lower quartile rule) and by the
median rule it replaced (fail when the median ratio is over 2.0x, or p99 is over 2.0x with the median
over 1.5x, differences under 1 ms never failing). Printed as a table, written as JSON: per load and
candidate, how many trials each rule failed, and the range of the median and lower-quartile ratios.
Figures are measured in this run on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]
from serve_load import _cpu_name  # noqa: E402


def median_rule(cand_ms: list[float], base_ms: list[float], limit: float = 2.0, floor_ms: float = 1.0) -> bool:
    """The verdict before the lower quartile: True when the candidate fails on latency."""
    import numpy as np

    mc, mb = float(np.median(cand_ms)), float(np.median(base_ms))
    tc, tb = float(np.percentile(cand_ms, 99)), float(np.percentile(base_ms, 99))
    return (mc / mb > limit and mc - mb > floor_ms) or (
        tc / tb > limit and mc / mb > 1 + (limit - 1) / 2 and tc - tb > floor_ms)


def trial(committed, candidate, samples: int) -> tuple[list[float], list[float]]:
    import numpy as np

    from edgeship.ota.gate import CanaryConfig
    from edgeship.serve.ota import Shadow

    shadow = Shadow(committed, candidate, CanaryConfig(min_samples=samples))
    rng = np.random.default_rng(0)
    deadline = time.monotonic() + 120
    try:
        while shadow.samples < samples and time.monotonic() < deadline:
            shadow.offer(rng.standard_normal((1, *committed.input_shape[1:])).astype(np.float32))
            time.sleep(0.02)
    finally:
        shadow.stop(wait_s=10)  # its sessions closed before the next trial (and before exit)
    return list(shadow.cand_ms), list(shadow.base_ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, nargs="+", default=[0, 2, 4], help="busy loops beside the canary")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--samples", type=int, default=100, help="shadow samples per trial (the canary's default)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "canary_noise.json"))
    args = ap.parse_args()
    import numpy as np

    from edgeship.ota.gate import CanaryConfig, judge, quantile
    from edgeship.runtime.model import Model
    from tests.ota.support import make_bundle

    work = Path(tempfile.mkdtemp(prefix="canary-noise-"))
    committed = Model.load(make_bundle(work / "v3", "3"))
    candidates = {"same": Model.load(make_bundle(work / "v4", "4", head_seed=1)),
                  "3x": Model.load(make_bundle(work / "v5", "5", heavy=3))}
    rows = []
    for load in args.loads:
        loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
        try:
            time.sleep(1)
            for name, cand in candidates.items():
                runs = [trial(committed, cand, args.samples) for _ in range(args.trials)]
                ratio = lambda c, b, q: quantile(c, q) / quantile(b, q)  # noqa: E731
                rows.append({
                    "load": load, "candidate": name, "trials": len(runs),
                    "samples": [len(c) for c, _ in runs],
                    "median_ratio": [round(ratio(c, b, 50), 2) for c, b in runs],
                    "lower_quartile_ratio": [round(ratio(c, b, 25), 2) for c, b in runs],
                    "committed_median_ms": [round(float(np.median(b)), 2) for _, b in runs],
                    "failed_by_median_rule": sum(median_rule(c, b) for c, b in runs),
                    "failed_by_judge": sum(not judge(CanaryConfig(), len(c), None, 0, c, b)[0] for c, b in runs),
                })
        finally:
            for p in loops:
                p.kill()
                p.wait()
    cpu = _cpu_name()
    print(f"{cpu}, {args.trials} trials of {args.samples} shadow samples each")
    print(f"{'busy loops':>10} {'candidate':>9} {'median ratio':>14} {'lower quartile':>15} {'median rule fails':>18} "
          f"{'judge fails':>12}")
    for r in rows:
        rng = lambda v: f"{min(v):.2f}-{max(v):.2f}x"  # noqa: E731
        print(f"{r['load']:>10} {r['candidate']:>9} {rng(r['median_ratio']):>14} {rng(r['lower_quartile_ratio']):>15} "
              f"{r['failed_by_median_rule']:>11}/{r['trials']:<6} {r['failed_by_judge']:>5}/{r['trials']:<6}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "trials": args.trials, "samples": args.samples,
                               "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
