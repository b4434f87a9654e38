"""Footprint: edgeship's server against a re-creation of the article's, same model, same run.

    python bench/footprint.py                                  # EfficientNet-Lite0 and MobileNetV3-Small
    python bench/footprint.py --models efficientnet-lite0 --burst-s 2 --starts 1 --sequential 20   # smoke
    python bench/footprint.py --compare-src /work/main/src     # adds a row for another edgeship checkout

For each model, on 127.0.0.1, with one 640x480 JPEG (bench/serve_load.py's picture):

- start to first answer: from starting the process to the first 200 on a predict request (the
  server polled every 10 ms), median of ``--starts`` fresh starts taken in turns across servers;
  edgeship's modules are byte-compiled first, as ``pip install`` leaves them on a device (a
  checkout run with PYTHONDONTWRITEBYTECODE=1, as on these VMs, would otherwise compile them
  from source at every start: 0.07-0.09 s here), as the article's libraries are;
- RSS idle: one second after that first answer;
- RSS after ``--sequential`` (200) requests from one client;
- peak RSS under 16 clients: the kernel's high-water mark (VmHWM, reset before the burst through
  /proc/PID/clear_refs), over ``--burst-s`` seconds of 16 keep-alive clients, in ``--rounds``
  rounds taken in turns across servers (the VM's speed drifts; every row sees the same drift);
- req/s at 16 clients over those rounds;
- edgeship's own plan of its memory (GET /v1/budget: each part, measured or predicted) and
  ``edgeship fit``'s prediction of the server's RSS for the same bundle and settings, against the
  RSS measured after the sequential requests.

Prints tables, writes JSON. Every figure is measured in this run except the plan's and fit's,
which say what they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # serve_load's picture, bundles and clients, shared with that bench

from serve_load import _cpu_name, build_bundle, free_port, load, request_bytes, summarize, test_jpeg  # noqa: E402

from edgeship.monitor import memory  # noqa: E402

MB = 1 << 20
GOALS = {"rss_ratio": 1.15, "start_extra_s": 0.2, "fit_error": 0.10}


class Server:
    """One server process: how it starts, where it answers, its memory from /proc."""

    def __init__(self, label: str, cmd: list[str], predict_path: str, jpeg: bytes, env: dict | None = None):
        self.label = label
        self.port = free_port()
        self.cmd = [*cmd, "--port", str(self.port)]
        self.req = request_bytes(predict_path, jpeg)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    def start(self, timeout: float = 120.0) -> float:
        """Start the process; seconds until its first 200 on a predict request."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}:\n{self.log.read().decode()[-2000:]}")
            errors: list[int] = []
            lat: list[float] = []
            try:
                load(self.port, self.req, 1, 5.0, lat, errors, cap=1)
            except OSError:
                pass
            if lat and not errors:
                return time.perf_counter() - t0
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.label} did not answer within {timeout} s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int | None:
        now = memory.usage(pid=self.pid)
        return now.rss_bytes if now else None

    def peak(self) -> int | None:
        return memory.peak_rss_bytes(pid=self.pid)

    def reset_peak(self) -> bool:
        return memory.reset_peak(pid=self.pid)

    def get_json(self, path: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def servers_for(name: str, bundle: Path, jpeg: bytes, variants: list[tuple[str, list[str]]],
                compare_src: str | None) -> list[Server]:
    model_name = json.loads((bundle / "edgeship.json").read_text())["name"]
    predict = f"/v1/models/{model_name}/predict"
    edgeship = [sys.executable, "-m", "edgeship.cli", "serve", str(bundle), "--log-level", "warning"]
    out = []
    for label, flags in variants:
        cli_flags, env = split_env(flags)
        out.append(Server(label, [*edgeship, *cli_flags], predict, jpeg, env))
    for spec in compare_src or []:
        label, _, path = spec.rpartition("=")
        out.append(Server(f"edgeship@{label or 'compare'}", edgeship, predict, jpeg, env={"PYTHONPATH": path}))
    out.append(Server("article", [sys.executable, str(HERE / "article_server.py"), str(bundle / "model.onnx")],
                      "/predict", jpeg))
    return out


IMPORT_STEPS = (
    ("interpreter", ""),
    ("numpy, Pillow", "import numpy, PIL.Image"),
    ("onnxruntime", "import onnxruntime"),
    ("starlette, uvicorn (the article's server has them, under FastAPI)",
     "import starlette.applications, starlette.routing, uvicorn, multipart"),
    ("prometheus-client", "import prometheus_client"),
    ("edgeship's CLI and server modules", "import edgeship.cli; edgeship.cli.build_parser(\"serve\"); import edgeship.serve.app"),
    ("what uvicorn.run imports", "from edgeship.serve.plan import import_server_stack; import_server_stack()"),
)


def import_breakdown() -> list[dict]:
    """The RSS each group of imports adds, in one fresh interpreter, in the order the server imports them."""
    code = ("import json, sys\n"
            "def rss():\n"
            "    for line in open('/proc/self/status'):\n"
            "        if line.startswith('VmRSS'): return int(line.split()[1]) * 1024\n"
            "out = []\n"
            "for name, stmt in json.loads(sys.argv[1]):\n"
            "    exec(stmt)\n"
            "    out.append([name, rss()])\n"
            "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(IMPORT_STEPS)], capture_output=True, text=True)
    rows, before = [], 0
    for name, rss in json.loads(done.stdout):
        rows.append({"part": name, "mb": round((rss - before) / MB, 1), "rss_mb": round(rss / MB, 1)})
        before = rss
    return rows


def split_env(flags: list[str]) -> tuple[list[str], dict[str, str]]:
    """A variant's words: command-line flags, and NAME=VALUE words that set its environment."""
    env = dict(f.split("=", 1) for f in flags if "=" in f and not f.startswith("-"))
    return [f for f in flags if f.split("=", 1)[0] not in env], env


def fit_prediction(bundle: Path, flags: list[str]) -> dict | None:
    """``edgeship fit BUNDLE --target host`` for the server's settings, in a fresh process (its JSON)."""
    cli_flags, env = split_env(flags)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fit.json"
        cmd = [sys.executable, "-m", "edgeship.cli", "fit", str(bundle), "--target", "host", "--runs", "3",
               "--json", str(out), *cli_flags]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
        if done.returncode != 0 or not out.is_file():
            print(f"  fit failed ({done.returncode}): {done.stderr.strip()[-500:]}", flush=True)
            return None
        return json.loads(out.read_text()).get("server_memory")


def bench_model(name: str, work: Path, jpeg: bytes, args, variants) -> dict:
    bundle = build_bundle(name, work)
    print(f"\n== {name} ({bundle})", flush=True)
    servers = servers_for(name, bundle, jpeg, variants, args.compare_src)
    rows: dict[str, dict] = {s.label: {"start_s": []} for s in servers}
    cold = None
    try:
        # The first start on a device optimizes the model once for it and caches the result
        # (runtime/backends/ort_weights.py); every later start loads the cache. Timed, then not counted.
        first = servers[0]
        cold = round(first.start(), 3)
        first.stop()
        # Fresh starts in turns; the last start of each server stays up for the rest.
        for i in range(args.starts):
            for s in servers:
                if i:
                    s.stop()
                rows[s.label]["start_s"].append(round(s.start(), 3))
        time.sleep(1.0)
        for s in servers:
            rows[s.label]["rss_idle_mb"] = round(s.rss() / MB, 1)
        for s in servers:
            lat: list[float] = []
            errors: list[int] = []
            load(s.port, s.req, 1, 600.0, lat, errors, cap=args.sequential)
            rows[s.label]["sequential"] = {"requests": len(lat), "errors": len(errors)}
            rows[s.label]["rss_sequential_mb"] = round(s.rss() / MB, 1)
        reset = {s.label: s.reset_peak() for s in servers}
        per: dict[str, list[float]] = {s.label: [] for s in servers}
        spent = dict.fromkeys(per, 0.0)
        errs: dict[str, list[int]] = {s.label: [] for s in servers}
        samples = dict.fromkeys(per, 0)
        for r in range(args.rounds):
            for s in (servers if r % 2 == 0 else servers[::-1]):
                spent[s.label] += load(s.port, s.req, args.clients, args.burst_s / args.rounds, per[s.label], errs[s.label])
                samples[s.label] = max(samples[s.label], s.rss() or 0)
        for s in servers:
            row = rows[s.label]
            row["burst"] = summarize(per[s.label], spent[s.label], errs[s.label])
            peak = s.peak() if reset[s.label] else None
            row["peak_rss_mb"] = round((peak or samples[s.label]) / MB, 1)
            row["peak_source"] = "VmHWM (reset before the burst)" if peak else "largest RSS sampled between rounds"
            row["rss_after_burst_mb"] = round(s.rss() / MB, 1)
            row["start_s_median"] = sorted(row["start_s"])[len(row["start_s"]) // 2]
            budget = s.get_json("/v1/budget") if s.label.startswith("edgeship") else None
            if budget is not None:
                row["plan"] = budget
    finally:
        for s in servers:
            s.stop()
    result = {"bundle": str(bundle), "servers": rows, "first_start_s_cold_cache": cold}
    if not args.no_fit:
        for label, flags in variants:
            result["servers"][label]["fit"] = fit_prediction(bundle, flags)
    return result


def verdict(r: dict) -> dict:
    art = r["servers"]["article"]
    e = r["servers"]["edgeship"]
    out = {
        "rss_idle_ratio": round(e["rss_idle_mb"] / art["rss_idle_mb"], 3),
        "rss_sequential_ratio": round(e["rss_sequential_mb"] / art["rss_sequential_mb"], 3),
        "peak_rss_ratio": round(e["peak_rss_mb"] / art["peak_rss_mb"], 3),
        "start_extra_s": round(e["start_s_median"] - art["start_s_median"], 3),
    }
    goals = {
        f"RSS idle <= {GOALS['rss_ratio']}x article": out["rss_idle_ratio"] <= GOALS["rss_ratio"],
        f"RSS after sequential <= {GOALS['rss_ratio']}x article": out["rss_sequential_ratio"] <= GOALS["rss_ratio"],
        f"peak RSS at 16 clients <= {GOALS['rss_ratio']}x article": out["peak_rss_ratio"] <= GOALS["rss_ratio"],
        f"start <= article + {GOALS['start_extra_s']} s": out["start_extra_s"] <= GOALS["start_extra_s"],
    }
    fit = e.get("fit")
    if fit:
        predicted = fit["resident_bytes"] / MB
        out["fit_resident_mb"] = round(predicted, 1)
        out["fit_error"] = round(predicted / e["rss_sequential_mb"] - 1, 3)
        goals[f"fit within {GOALS['fit_error']:.0%} of RSS after sequential"] = abs(out["fit_error"]) <= GOALS["fit_error"]
        out["fit_peak_mb"] = round(fit["peak_bytes"] / MB, 1)
    out["goals"] = goals
    return out


def _variants(specs: list[str]) -> list[tuple[str, list[str]]]:
    out = [("edgeship", [])]
    for spec in specs:
        label, _, flags = spec.partition("=")
        out.append((label, flags.split()))
    return out


def byte_compile(compare_src: list[str] | None) -> None:
    """Compile edgeship's modules (this one and each --compare-src) to __pycache__, as an install does."""
    import compileall

    import edgeship

    roots = [Path(edgeship.__file__).parent] + [Path(spec.rpartition("=")[2]) / "edgeship" for spec in compare_src or []]
    for root in roots:
        if not compileall.compile_dir(str(root), quiet=1):
            raise SystemExit(f"could not byte-compile {root}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="efficientnet-lite0,mobilenet_v3_small")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=FLAGS",
                   help="another edgeship row, e.g. 'spinning-off=--spinning off' or 'arenas=MALLOC_ARENA_MAX=2' "
                        "(NAME=VALUE words set the environment; repeatable)")
    p.add_argument("--compare-src", action="append", metavar="[LABEL=]SRC",
                   help="a row for the edgeship at this src/ folder, e.g. main=/work/main/src (repeatable)")
    p.add_argument("--starts", type=int, default=3, help="fresh starts per server (median reported)")
    p.add_argument("--sequential", type=int, default=200)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--burst-s", type=float, default=24.0, help="seconds at --clients per server, over all rounds")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--no-fit", action="store_true", help="skip edgeship fit's prediction")
    p.add_argument("--imports-only", action="store_true", help="print where the imports' memory goes, and stop")
    p.add_argument("--work", help="folder for the exported bundles (default: a temp folder)")
    p.add_argument("--json", default=str(HERE / "results" / "footprint.json"))
    args = p.parse_args()
    if args.imports_only:
        for row in import_breakdown():
            print(f"{row['part']:<55} +{row['mb']:6.1f} MB  (RSS {row['rss_mb']} MB)")
        return 0
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edgeship-footprint-"))
    work.mkdir(parents=True, exist_ok=True)
    # A cache of this run's own, so the first start is a cold one (servers and fit inherit it).
    os.environ["EDGESHIP_CACHE"] = tempfile.mkdtemp(prefix="edgeship-footprint-cache-")
    jpeg = test_jpeg()
    variants = _variants(args.variant)
    byte_compile(args.compare_src)
    import onnxruntime

    from edgeship import __version__

    report: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "processor": _cpu_name(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__, "edgeship": __version__,
                    "load_average_at_start": list(os.getloadavg())},
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "work")},
        "image": {"width": 640, "height": 480, "jpeg_bytes": len(jpeg)},
        "models": {},
    }
    report["imports"] = import_breakdown()
    for name in args.models.split(","):
        r = bench_model(name, work, jpeg, args, variants)
        r["verdict"] = verdict(r)
        report["models"][name] = r
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(f"wrote {out}")
    return 0


def print_tables(report: dict) -> None:
    print("\nWhere the process before models goes (a fresh interpreter, measured):")
    print("| imports | adds MB | RSS MB |")
    print("|---|---|---|")
    for row in report.get("imports", []):
        print(f"| {row['part']} | {row['mb']} | {row['rss_mb']} |")
    print(f"\n| model | server | start → first answer s | RSS idle MB | RSS after {report['settings']['sequential']} "
          f"sequential MB | peak RSS at {report['settings']['clients']} clients MB | req/s at "
          f"{report['settings']['clients']} clients | fit's prediction MB (resident / peak) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in report["models"].items():
        for label, row in r["servers"].items():
            fit = row.get("fit")
            fit_s = f"{fit['resident_bytes'] / MB:.1f} / {fit['peak_bytes'] / MB:.1f} (PREDICTION)" if fit else ""
            print(f"| {name} | {label} | {row['start_s_median']:.2f} | {row['rss_idle_mb']} | {row['rss_sequential_mb']} | "
                  f"{row['peak_rss_mb']} | {row['burst']['throughput']} | {fit_s} |")
    for name, r in report["models"].items():
        for label, row in r["servers"].items():
            plan = row.get("plan")
            if not plan:
                continue
            print(f"\n{name} / {label}: the server's memory plan (GET /v1/budget) after the burst")
            print("| part | MB | source | when |")
            print("|---|---|---|---|")
            for part in plan["parts"]:
                print(f"| {part['name']} | {part['bytes'] / MB:.1f} | {part['source']} | {part['when']} |")
            print(f"| planned resident / peak | {plan['resident_bytes'] / MB:.1f} / {plan['peak_bytes'] / MB:.1f} | | |")
            print(f"| measured RSS now / peak | {plan['measured']['rss_bytes'] / MB:.1f} / "
                  f"{(plan['measured'].get('peak_rss_bytes') or 0) / MB:.1f} | measured | |")
    for name, r in report["models"].items():
        print(f"{name}: first start with a cold cache (optimizes and caches the model once): "
              f"{r['first_start_s_cold_cache']} s")
        print(f"{name}: {json.dumps(r['verdict'])}")


if __name__ == "__main__":
    sys.exit(main())
