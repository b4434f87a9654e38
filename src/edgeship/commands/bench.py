"""``edgeship bench BUNDLE [BUNDLE ...]``."""

from __future__ import annotations

from .args import csv_ints, lazy, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure latency, throughput, memory (and temperature, energy) of bundles",
        description=(
            "Benchmark bundles side by side: load and first-inference time, latency mean/std/p50/p90/p95/p99 "
            "and throughput per batch size, RSS; CPU temperature, throttling and energy per inference where "
            "the host has sensors. Temperature, the actual clock and the firmware's throttle flags are sampled "
            "during the run; a run whose clock fell more than 5%% or that the firmware throttled is marked "
            "thermally unstable. Every figure is measured in this run."
        ),
    )
    p.add_argument("bundles", metavar="BUNDLE", nargs="+")
    p.add_argument("--batch", type=csv_ints, default=[1], metavar="1,8", help="batch sizes (default 1)")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: the target's)")
    p.add_argument("--target", default=None, help="runtime preset of a device (see `edgeship devices`)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--runs", type=positive_int, default=100, help="timed runs per batch size (default 100)")
    p.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                   help="a sustained run: time each batch size for this long instead of --runs times; the JSON "
                        "gets the throughput of every --window with the temperature and clock")
    p.add_argument("--window", type=positive_float, default=1.0, metavar="SECONDS",
                   help="throughput windows of a sustained run (default 1 s)")
    p.add_argument("--vs-torch", action="store_true", help="time the source PyTorch model beside it")
    p.add_argument("--sensors-root", default="/", help=_hidden())
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    p.set_defaults(run=lazy("edgeship.commands.bench:run"))


def _hidden() -> str:  # a flag for tests that point the sensors at a fake sysfs tree
    import argparse

    return argparse.SUPPRESS


def run(args) -> int:
    from ..util import console as make_console

    from ..bench.report import print_report
    from ..bench.runner import BenchConfig, bench_bundles
    from ..util import write_json

    runtime = None
    if args.target:
        from ..targets import preset

        runtime = preset(args.target).runtime
    cfg = BenchConfig(batches=tuple(args.batch), threads=args.threads, warmup=args.warmup, runs=args.runs,
                      vs_torch=args.vs_torch, sensors_root=args.sensors_root, runtime=runtime,
                      duration_s=args.duration, window_s=args.window)
    console = make_console()
    report = bench_bundles(args.bundles, cfg, show_progress=console.is_terminal)
    print_report(report, console)
    if args.json:
        write_json(args.json, report)
        console.print(f"wrote {args.json}")
    return 0
