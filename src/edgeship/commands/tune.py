"""``edgeship tune BUNDLE``: pick the fastest way to run a bundle on this host, by measurement."""

from __future__ import annotations

from .args import add_json_flag, lazy, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "tune", help="time every backend this host has on a bundle and record the fastest as this host's choice",
        description=(
            "Load the bundle in every backend and declared variant this host can run (each passing its golden "
            "check), time them interleaved on the same input, and record the fastest (backend, provider, variant, "
            "threads) in the bundle for this class of host. predict and serve then use it here; on another CPU "
            "or GPU it is not applied, and they say so."
        ),
    )
    p.add_argument("bundle", metavar="BUNDLE_DIR")
    p.add_argument("--backends", default="all", metavar="all|LIST", help="engines to consider (default all)")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: the engine's)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per way first (default 10)")
    p.add_argument("--runs", type=positive_int, default=100, help="timed runs per way (default 100)")
    p.add_argument("--provider-option", action="append", default=None, metavar="KEY=VALUE",
                   help="engine option for the GPU providers and engines, repeatable")
    p.add_argument("--dry-run", action="store_true", help="measure and show the pick, but do not record it")
    add_json_flag(p, "the comparison and the choice")
    p.set_defaults(run=lazy("edgeship.commands.tune:run"))


def run(args) -> int:
    import dataclasses

    from ..bench.compare import CompareConfig, print_comparison
    from ..bench.tune import tune
    from ..runtime.config import parse_options
    from ..util import console as make_console
    from ..util import emit_json

    console = make_console(stderr=args.json == "-")  # --json -: stdout holds the JSON alone
    cfg = CompareConfig(backends=args.backends, threads=args.threads, warmup=args.warmup, runs=max(args.runs, 5),
                        rounds=max(1, min(20, args.runs // 10)),
                        options=parse_options(args.provider_option))
    with console.status(f"{args.bundle}: loading every backend and timing them interleaved ..."):
        result = tune(args.bundle, cfg, write=not args.dry_run)
    print_comparison(result.report, console)
    c = result.choice
    what = ", ".join(x for x in (c.backend, c.provider and f"provider {c.provider}", c.variant and f"variant {c.variant}",
                                 f"{c.threads} threads" if c.threads else "the engine's threads") if x)
    verb = "recorded" if result.written else "would record (--dry-run)"
    console.print(f"{verb} for [bold]{result.host}[/bold]: {what}", highlight=False)
    emit_json(args.json, {"host": result.host, "choice": dataclasses.asdict(c), "report": result.report},
              say=console.print)
    return 0
