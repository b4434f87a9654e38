"""How much ONNX Runtime's arena holds after a burst of mixed batch sizes: grown under load, or sized at start.

    python bench/arena_growth.py BUNDLE [--rows 4] [--runs 300] [--seeds 3]
    python bench/arena_growth.py /tmp/fp/efficientnet_lite0      # a bundle bench/footprint.py --work exported

The model loads as ``edgeship serve`` loads it (one shared arena, no memory pattern, and the
spinning twin that runs lone requests), runs one row (the server's first run), then:

- ``grown``: 200 one-row runs on the twin (sequential requests), then ``--runs`` runs of 1 to
  ``--rows`` rows drawn at random (a full batch half the time; one run in ten a lone row on the
  twin), as batches come under load;
- ``sized``: first one run of ``--rows`` rows (what the server does at start), then the same runs.

Each case in a fresh process, the cases in turns for each seed. Printed and written as JSON: the RSS
after the one-row run, after the sized run, at the end, and the high-water mark (VmHWM), in MB, and
what each holds over the one-row run. Memory only: no timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import _cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

CHILD = r"""
import json, random, sys
from edgeship.bundle import open_bundle
from edgeship.monitor.memory import peak_rss_bytes, rss_bytes
from edgeship.runtime.model import Model
from edgeship.serve.batching import TWIN_CHANGES
from edgeship.serve.config import ServeConfig, runtime_config

bundle, case, rows, runs, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def mb(n):
    return n / 2**20

model = Model(open_bundle(bundle), runtime_config(ServeConfig()))
twin = model.derive(**TWIN_CHANGES)
model.run(model.blank_input(1))
one = mb(rss_bytes())
if case == "sized":
    model.run(model.blank_input(rows))
sized = mb(rss_bytes())
for _ in range(200):
    twin.run(twin.blank_input(1))
draw = random.Random(seed)
for _ in range(runs):
    if draw.random() < 0.1:
        twin.run(twin.blank_input(1))
        continue
    n = rows if draw.random() < 0.5 else draw.randint(1, rows)
    model.run(model.blank_input(n))
end, hwm = mb(rss_bytes()), mb(peak_rss_bytes())
print(json.dumps({"case": case, "seed": seed, "one_row_mb": round(one, 1), "after_sized_mb": round(sized, 1),
                  "end_mb": round(end, 1), "hwm_mb": round(hwm, 1), "over_one_row_mb": round(hwm - one, 1)}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bundle")
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", default=str(RESULTS / "arena_growth.json"))
    args = p.parse_args(argv)
    rows = []
    for seed in range(1, args.seeds + 1):
        for case in ("grown", "sized"):
            done = subprocess.run([sys.executable, "-c", CHILD, args.bundle, case, str(args.rows), str(args.runs),
                                   str(seed)], capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{args.bundle}: {args.runs} runs of 1-{args.rows} rows after one row's run ({_cpu_name()})")
    print("| case | seed | RSS after one row MB | after the sized run | at the end | high-water mark | over one row |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['seed']} | {r['one_row_mb']} | {r['after_sized_mb']} | {r['end_mb']} | "
              f"{r['hwm_mb']} | {r['over_one_row_mb']} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "processor": _cpu_name()}
    Path(args.json).write_text(json.dumps({"bundle": args.bundle, "rows": args.rows, "runs": args.runs,
                                           "machine": machine, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
