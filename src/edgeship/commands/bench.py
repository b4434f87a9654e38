"""``edgeship bench BUNDLE [BUNDLE ...]``."""

from __future__ import annotations

import argparse

from ..bench.config import BenchConfig
from .args import add_config_flags, add_json_flag, add_runtime_flags, lazy


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure latency, throughput, memory (and temperature, energy) of bundles",
        description=(
            "Benchmark bundles side by side: load and first-inference time, latency mean/std/p50/p90/p95/p99 "
            "and throughput per batch size, RSS; CPU temperature, throttling and energy per inference where "
            "the host has sensors. Temperature, the actual clock and the firmware's throttle flags are sampled "
            "during the run; a run whose clock fell more than 5% or that the firmware throttled is marked "
            "thermally unstable. With --target, the device preset's threads are capped to this host's usable "
            "cores and its GPU providers this host lacks are named: the JSON records what actually ran. Every "
            "figure is measured in this run."
        ),
    )
    p.add_argument("bundles", metavar="BUNDLE", nargs="+")
    add_config_flags(p, BenchConfig)
    p.add_argument("--target", default=None, help="runtime preset of a device (see `edgeship devices`)")
    p.add_argument("--backends", default=None, metavar="all|LIST",
                   help="time every backend and declared variant this host can run (all), or those listed "
                        "(onnxruntime,openvino,litert,tensorrt), interleaved on the same input, and show the pick")
    add_runtime_flags(p)
    p.add_argument("--sensors-root", default="/", help=argparse.SUPPRESS)  # tests: a fake sysfs tree
    add_json_flag(p, "the full report")
    p.set_defaults(run=lazy("edgeship.commands.bench:run"))


def run(args) -> int:
    if args.backends:
        return _compare(args)
    import dataclasses

    from ..bench.report import print_report
    from ..bench.runner import bench_bundles
    from ..bench.target import fit_to_host
    from ..runtime.config import RuntimeConfig
    from ..util import console as make_console
    from .args import config_from_args, emit_json, json_to_stdout, runtime_from_args, runtime_given

    cfg = config_from_args(BenchConfig, args, sensors_root=args.sensors_root)
    runtime = RuntimeConfig()
    if args.target:
        from ..targets import preset

        runtime = preset(args.target).runtime
    if runtime_given(args):
        runtime = runtime_from_args(args, runtime)
    fitted = fit_to_host(args.target, runtime, cfg.threads)
    cfg = dataclasses.replace(cfg, runtime=fitted.runtime, threads=fitted.runtime.intra_op_threads)
    console = make_console(stderr=json_to_stdout(args))
    for note in fitted.notes:
        console.print(f"note: {note}", style="yellow", highlight=False)
    report = bench_bundles(args.bundles, cfg, show_progress=console.is_terminal)
    report["config"]["host_fit"] = fitted.record
    print_report(report, console)
    emit_json(args.json, report, say=console.print)
    return 0


def _compare(args) -> int:
    from ..bench.compare import CompareConfig, compare_backends, print_comparison
    from ..errors import InputError
    from ..runtime.config import parse_options
    from ..util import console as make_console
    from .args import config_from_args, emit_json, json_to_stdout

    if args.backend or args.provider or args.bundle_variant or args.vs_torch or args.target:
        raise InputError("--backends compares every way this host runs the bundle; it does not take --backend, "
                         "--provider, --bundle-variant, --target or --vs-torch")
    bench = config_from_args(BenchConfig, args)
    console = make_console(stderr=json_to_stdout(args))
    reports = []
    for path in args.bundles:
        for batch in bench.batches:
            cfg = CompareConfig(backends=args.backends, threads=bench.threads, batch=batch, warmup=bench.warmup,
                                runs=max(bench.runs, 5), rounds=max(1, min(20, bench.runs // 10)),
                                options=parse_options(args.provider_option))
            with console.status(f"{path}: loading every backend and timing them interleaved ..."):
                report = compare_backends(path, cfg)
            print_comparison(report, console)
            reports.append(report)
    emit_json(args.json, {"comparisons": reports}, say=console.print)
    return 0
