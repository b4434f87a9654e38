"""``edgeship devices`` (the hardware catalog, or ``--probe`` this host) and ``edgeship fit``.

Light at import: argparse only. The work is imported when a verb runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from .args import add_config_flags, add_json_flag, lazy, positive_int

# A literal, not built from targets.CATALOG_SOURCE: importing targets here would load numpy and the
# runtime for `edgeship --help`. tests/test_devices.py keeps the two in step.
CATALOG_LABEL = "catalog figures from the article (Calò 2026), not measurements"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="the edge hardware catalog, or --probe this machine",
                              description=f"Show the edge hardware catalog ({CATALOG_LABEL}), or probe this host.")
    p.add_argument("--probe", action="store_true", help="report this machine: CPU, ISA features, RAM, runtimes, sensors")
    add_json_flag(p, "the report")
    p.set_defaults(run=lazy("edgeship.commands.devices:run_devices"))

    f = subparsers.add_parser("fit", help="PREDICT whether a bundle fits a target device and how fast it runs",
                              description="Measure the bundle on this host, then predict RAM fit and latency on "
                                          "a target from the catalog. The result is a prediction, labelled so.")
    f.add_argument("bundle", metavar="BUNDLE", help="bundle folder, .tar, or .onnx file")
    f.add_argument("--target", required=True, help="catalog id (rpi5, jetson-orin-nx, ...) or host")
    f.add_argument("--runs", type=positive_int, default=10, help="timed runs on this host (default 10)")
    add_json_flag(f, "the prediction")
    f.add_argument("--no-server", dest="server", action="store_false",
                   help="skip the prediction of `edgeship serve BUNDLE`'s memory (a start of the server, not listening)")
    from ..serve.config import ServeConfig

    # The server's settings, spelled as `edgeship serve` spells them: its memory depends on them.
    add_config_flags(f, ServeConfig)
    f.set_defaults(run=lazy("edgeship.commands.devices:run_fit"))


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value}{unit}"


def _catalog_table():
    from rich.table import Table

    from edgeship.targets import CATALOG

    table = Table(title=f"Edge hardware catalog: {CATALOG_LABEL}", caption="* vendor datasheet (the article gives none)")
    for col in ("id", "device", "CPU", "cores", "GHz", "RAM GB", "accelerator", "peak", "power W", "price $", "use case"):
        table.add_column(col, overflow="fold")
    for dev in CATALOG.values():
        mark = lambda name, text, dev=dev: f"{text}*" if name in dev.vendor_fields and text != "-" else text  # noqa: E731
        peak = [f"{dev.cpu_gflops:g} GFLOP/s CPU"] if dev.cpu_gflops else []
        peak += [f"{dev.accel_gflops:g} GFLOP/s GPU"] if dev.accel_gflops else []
        peak += [f"{dev.accel_tops} TOPS"] if dev.accel_tops else []
        ram = f"{dev.ram_gb} {dev.ram_note}".strip() if dev.ram_gb else (dev.ram_note or "-")
        table.add_row(dev.id, dev.name, _fmt(dev.cpu), mark("cores", _fmt(dev.cores)), _fmt(dev.clock_ghz), ram,
                      _fmt(dev.accelerator), ", ".join(peak) or "-", _fmt(dev.power_w), _fmt(dev.price_usd),
                      dev.use_case)
    return table


def _catalog_json() -> dict[str, Any]:
    from edgeship._config import to_dict
    from edgeship.targets import CATALOG, CATALOG_SOURCE, PRESETS

    return {
        "source": CATALOG_SOURCE,
        "label": CATALOG_LABEL,
        "devices": [{**to_dict(d), "preset": {"runtime": to_dict(PRESETS[d.id].runtime),
                                              "quant": to_dict(PRESETS[d.id].quant)}}
                    for d in CATALOG.values()],
    }


def _probe_table(info, host) -> Any:
    from rich.table import Table

    gib = lambda b: f"{b / (1 << 30):.1f} GiB" if b else "-"  # noqa: E731
    table = Table(title="This host (probed now)", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    rows = [
        ("CPU", f"{info.cpu_model} ({info.arch})"),
        ("cores", f"{info.physical_cores} physical, {info.logical_cores} logical, {info.big_cores} big"
                  + (f", {info.usable_cpus} usable here" if info.usable_cpus else "")),
        ("ISA features", ", ".join(info.features) or "none of interest"),
        ("RAM", f"{gib(info.ram_total_bytes)} total, {gib(info.ram_available_bytes)} available"),
        ("board", info.board or "-"),
        ("accelerators", ", ".join(info.accelerators) or "none found"),
        ("onnxruntime", f"{info.onnxruntime_version or 'not installed'}; providers: {', '.join(info.providers) or '-'}"),
        ("bindings", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info.bindings.items())),
        ("thermal zones", ", ".join(info.thermal_zones) or "not available"),
        ("power sensors", ", ".join(info.power_sensors) or "not available"),
        ("preset", f"threads {host.runtime.intra_op_threads}, providers {', '.join(host.runtime.providers)}"),
        ("INT8 format", f"{host.quant.activation}/{host.quant.weight}: {host.quant.why}" if host.quant else "keep float"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def run_devices(args: argparse.Namespace) -> int:
    from edgeship.util import console as make_console
    from edgeship.util import emit_json

    console = make_console(stderr=args.json == "-")  # --json -: stdout holds the JSON alone
    if args.probe:
        from edgeship.targets import host_preset, probe_host

        info = probe_host()
        host = host_preset()
        console.print(_probe_table(info, host))
        data = {**info.to_dict(), "preset": host.name, "preset_threads": host.runtime.intra_op_threads}
    else:
        console.print(_catalog_table())
        data = _catalog_json()
    emit_json(args.json, data, say=console.print)
    return 0


def _fit_table(p) -> Any:
    from rich.table import Table

    from edgeship.targets import CATALOG_SOURCE

    mib = lambda b: f"{b / (1 << 20):.1f} MiB"  # noqa: E731
    catalog = f"catalog ({CATALOG_SOURCE})"
    c = p.calibration
    table = Table(title=f"PREDICTION: {p.model} on {p.device_name} ({p.target})", show_header=True)
    for col in ("figure", "value", "kind"):
        table.add_column(col, overflow="fold")
    latency = f"{p.predicted_latency_ms:.1f} ms" if p.predicted_latency_ms is not None else "not available"
    rows = [
        ("latency", latency, "PREDICTED"),
        ("RAM need", mib(p.ram.need_bytes), "PREDICTED (from host measurements)"),
        *[(f"fits in {k}", "yes" if v else "NO", "PREDICTED") for k, v in p.ram.fits.items()],
        ("model FLOPs", f"{p.flops / 1e9:.3f} GFLOP", p.flops_source),
        ("latency here", f"{c.model_latency_ms:.2f} ms (median of {c.runs})", "measured on this host"),
        ("model rate here", f"{c.model_gflops:.1f} GFLOP/s", "measured on this host"),
        ("MatMul rate here", f"{c.matmul_gflops:.1f} GFLOP/s ({c.matmul_size}^2, {c.matmul_via})", "measured on this host"),
        ("efficiency", f"{c.efficiency:.2f}", "measured on this host"),
        ("session RSS", mib(p.ram.session_rss_bytes), "measured on this host"),
        ("activations RSS", mib(p.ram.activation_bytes), "measured on this host"),
        ("target CPU peak", f"{p.catalog_cpu_gflops:g} GFLOP/s" if p.catalog_cpu_gflops else "-", catalog),
    ]
    if p.latency_floor_ms is not None:
        rows.append(("latency floor", f"{p.latency_floor_ms:.3f} ms", f"bound at the catalog peak ({CATALOG_SOURCE})"))
    for b in p.catalog_benchmarks:
        rows.append((f"{b.model} {b.precision}", f"{b.latency_ms:g} ms", catalog))
    for row in rows:
        table.add_row(*row)
    return table


def _server_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ServeConfig fields given on the command line, JSON-safe (for the planning process)."""
    import dataclasses
    import enum

    from edgeship.serve.config import ServeConfig

    from .args import config_from_args

    config = config_from_args(ServeConfig, args)
    out = {}
    for f in dataclasses.fields(ServeConfig):
        if "cli" in f.metadata and getattr(args, f.name, None) is not None:
            value = getattr(config, f.name)
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
    return out


def _server_table(memory: dict, ram: dict[str, int]) -> Any:
    from rich.table import Table

    mib = lambda b: f"{b / (1 << 20):.1f} MiB"  # noqa: E731
    table = Table(title="PREDICTION: `edgeship serve` memory for this bundle and these settings", show_header=True)
    for col in ("part", "size", "kind", "when", "note"):
        table.add_column(col, overflow="fold")
    for p in memory["parts"]:
        table.add_row(p["name"], mib(p["bytes"]), f"{p['source']} (here)" if p["source"] == "measured" else p["source"],
                      p["when"], p["note"])
    table.add_row("server RSS while serving", mib(memory["resident_bytes"]), "PREDICTED", "resident", "the resident parts")
    table.add_row("server peak", mib(memory["peak_bytes"]), "PREDICTED", "peak", "every part, work in flight included")
    for name, size in ram.items():
        table.add_row(f"fits in {name}", "yes" if memory["peak_bytes"] <= size else "NO", "PREDICTED", "peak", "")
    return table


def run_fit(args: argparse.Namespace) -> int:
    from edgeship.targets import preset
    from edgeship.targets.fit import fit
    from edgeship.util import console as make_console
    from edgeship.util import emit_json

    console = make_console(stderr=args.json == "-")  # --json -: stdout holds the JSON alone
    preset(args.target)  # an unknown target fails before any measuring
    fields = _server_fields(args)  # a bad setting fails before any measuring too
    with console.status("measuring the model and a MatMul on this host ..."):
        prediction = fit(args.bundle, args.target, host_runs=args.runs)
    console.print(_fit_table(prediction))
    for note in prediction.notes:
        console.print(f"note: {note}", highlight=False)
    data = prediction.to_dict()
    if args.server:
        from edgeship.serve.plan import predict_server_memory

        with console.status("starting the server (not listening) to plan its memory ..."):
            memory = predict_server_memory([str(args.bundle)], fields)
        memory = {"kind": "PREDICTION", **memory}
        console.print(_server_table(memory, prediction.ram.ram_bytes))
        console.print("note: the server's RSS is predicted from parts measured as this host starts it; another "
                      "device's differs by its own imports and allocator.", highlight=False)
        data["server_memory"] = memory
    emit_json(args.json, data, say=console.print)
    return 0
