"""``edgeship serve BUNDLE [BUNDLE ...]``: the vision REST server (and an LLM with ``--llm``)."""

from __future__ import annotations

import argparse
import sys

from ..pipeline.config import DescribeConfig
from ..serve.config import ServeConfig
from .args import add_config_flags, config_from_args, lazy, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve bundles over HTTP (REST /v1, KServe /v2, /metrics)",
        description=(
            "Serve vision bundles: POST /v1/models/NAME/predict (multipart 'file' or a raw image body), "
            "GET /v1/models, the KServe v2 protocol under /v2, /health/live, /health/ready and /metrics. "
            "With --llm, also an OpenAI-compatible /v1/chat/completions, and POST /v1/pipelines/describe: "
            "a picture in, the vision answer at once, then the LLM's description of it, streamed."
        ),
    )
    p.add_argument("bundles", metavar="BUNDLE", nargs="*", help="bundle folders, .tar files or bare .onnx")
    p.add_argument("--host", default="127.0.0.1", help=(
        "address to listen on (default 127.0.0.1: this machine only). 0.0.0.0 opens every route to the network: "
        "inference, the LLM, model listings, /metrics and /health (and /docs with --docs); set --api-key-file "
        "to require a key for all but health and metrics (docs/security.md)"))
    p.add_argument("--port", type=positive_int, default=8000, help="TCP port to listen on")
    p.add_argument("--llm", metavar="MODEL", help="also serve this GGUF model or LLM bundle (needs edgeship[llm])")
    p.add_argument("--llm-ctx", type=positive_int, default=4096, help="LLM context length in tokens")
    p.add_argument("--llm-queue-size", type=positive_int, default=8,
                   help="LLM requests waiting for the model; one more gets 503 (generation takes seconds)")
    p.add_argument("--llm-max-tokens", type=positive_int, default=1024,
                   help="most tokens one LLM request may ask for; more is a 400")
    add_config_flags(p, ServeConfig)
    add_config_flags(p, DescribeConfig)
    p.add_argument("--provider-option", action="append", default=None, metavar="KEY=VALUE",
                   help="engine option, repeatable (ORT provider options, OpenVINO properties, TensorRT max_batch/...)")
    p.add_argument("--max-temp", type=positive_float, default=80.0, help="CPU temperature (C) above which readiness is degraded")
    p.add_argument("--target", default=None,
                   help="device preset whose thermal limits apply (rpi5: the firmware throttles from 80 C; jetson-*: "
                        "the kernel's trip points); default: this host's trip points")
    p.add_argument("--governor", choices=("on", "off"), default="off",
                   help="thermal governor in the server (default off): fewer threads, then the lighter variant, then "
                        "503 for low-priority requests, then stop, as the device heats (docs/health.md)")
    p.add_argument("--governor-config", metavar="FILE.json", default=None,
                   help='the ladder and polling, e.g. {"steps": [{"action": "threads", "set_c": 70}, ...], '
                        '"poll_s": 1} (default: set points under the --target\'s throttling point)')
    p.add_argument("--variant", action="append", default=None, metavar="NAME=BUNDLE",
                   help="the lighter variant (INT8, pruned) of model NAME that the governor serves when hot; repeat")
    p.add_argument("--low-priority-rps", type=positive_float, default=1.0,
                   help="while the governor rate-limits, low-priority requests (header 'Priority: u=5' to 'u=7') "
                        "allowed per second (default 1)")
    p.add_argument("--sensors-root", default="/", help=argparse.SUPPRESS)  # tests and demos: a simulated sysfs tree
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                   help="log every request (off by default: /metrics counts them)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level")
    p.add_argument("--ota", metavar="URL", help="keep the models up to date from this TUF repository (docs/ota.md)")
    p.add_argument("--ota-store", metavar="DIR", default="edgeship-store",
                   help="device store of model versions (default ./edgeship-store); BUNDLEs not in it are installed")
    p.add_argument("--ota-root", metavar="ROOT.json", help="the repository's root.json (needed the first time)")
    p.add_argument("--ota-channel", choices=("stable", "canary"), default="stable")
    p.add_argument("--ota-interval", type=positive_float, default=300.0, help="seconds between polls (+-10%%)")
    p.add_argument("--canary-seconds", type=positive_float, default=45.0,
                   help="longest canary on live traffic before a decision (default 45)")
    p.add_argument("--canary-samples", type=positive_int, default=100,
                   help="shadowed requests a canary compares (default 100)")
    p.add_argument("--admin-token-file", metavar="FILE",
                   help="enable /admin/models/NAME/{versions,check,rollback,pin} with this bearer token (mode 600)")
    p.set_defaults(run=lazy("edgeship.commands.serve:run"))


def build_config(args):
    import dataclasses

    from ..monitor.alerts import AlertThresholds
    from ..runtime.config import parse_options

    if args.target:
        from ..targets import preset

        preset(args.target)  # an unknown target is a usage error naming the known ones
    config = config_from_args(ServeConfig, args, sensors_root=args.sensors_root, target=args.target,
                              variants=_variants(args.variant or []), low_priority_rps=args.low_priority_rps,
                              provider_options=parse_options(args.provider_option),
                              alerts=dataclasses.replace(AlertThresholds(), max_cpu_temp_c=args.max_temp))
    if args.governor == "off":
        if args.governor_config or args.variant:
            from ..errors import InputError

            raise InputError("--governor-config and --variant need --governor on")
        return config
    return dataclasses.replace(config, governor=governor_config(args.governor_config, config))


def _variants(items: list[str]) -> dict[str, str]:
    from ..errors import InputError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--variant: expected NAME=BUNDLE, got {item!r}")
        if name in out:
            raise InputError(f"--variant: model {name!r} has two variants")
        out[name] = path
    return out


def governor_config(path, config):
    """The ladder from a JSON file, or the default one under the target's throttling point."""
    import json

    from ..errors import InputError
    from ..monitor.governor import Action, GovernorConfig
    from ..serve.config import thermal_limits

    if path is None:
        actions = [a for a in Action if a is not Action.VARIANT or config.variants]
        return GovernorConfig.for_limits(thermal_limits(config), actions=actions)
    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except OSError as exc:
        raise InputError(f"--governor-config {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InputError(f"--governor-config {path}: not JSON ({exc})") from None
    return GovernorConfig.from_dict(data)


def _log_to_stderr(level: str) -> None:
    """edgeship's own log lines (governor decisions, swaps) go to stderr beside uvicorn's."""
    import logging
    import sys

    logger = logging.getLogger("edgeship")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level.upper())


def make_llm(args, registry, config=None):
    from ..errors import MissingDependencyError

    try:
        from ..llm.openai_api import LLMService
    except ImportError as exc:
        if isinstance(exc, MissingDependencyError):
            raise
        raise MissingDependencyError(
            f"--llm needs the LLM server ({exc}); pip install 'edgeship[llm]'"
        ) from exc
    from ..llm.openai_protocol import RequestLimits

    config = config or build_config(args)
    limits = RequestLimits(max_messages=config.llm_max_messages, max_json_depth=config.max_json_depth)
    return LLMService(args.llm, n_ctx=args.llm_ctx, n_threads=args.threads, queue_size=args.llm_queue_size,
                      registry=registry, max_tokens=args.llm_max_tokens, limits=limits)


def say(line: str) -> None:
    # plain stderr, not rich: the server would carry rich's modules (1.5 MB) for these few lines
    print(line, file=sys.stderr, flush=True)


def ota_setup(args, bundles):
    """Install BUNDLEs missing from the store, serve the store's committed versions, and the agent factory."""
    import logging

    from ..bundle import open_bundle
    from ..errors import InputError
    from ..ota.agent import Agent, AgentConfig
    from ..ota.client import read_root
    from ..ota.gate import CanaryConfig
    from ..ota.store import Store

    logging.getLogger("edgeship.ota").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    store = Store(args.ota_store)
    store.lock().__enter__()  # held for the life of the server process: one updater per store
    for b in bundles:
        name = open_bundle(b).manifest.name
        if store.record(name).committed is None:
            store.install_local(b)
    names = store.models()
    if not names:
        raise InputError(f"{store.root}: the store has no model yet; give a BUNDLE to install first")
    for name in names:  # before serving: finish a commit or rollback, drop a candidate that crashed 3 times
        Agent(store, None).recover(name, resume=False)
    cfg = AgentConfig(args.ota, tuple(names), args.ota_channel, args.ota_interval,
                      canary=CanaryConfig(max_duration_s=args.canary_seconds, min_samples=args.canary_samples))
    root = read_root(args.ota_root)

    def factory(state):
        from ..serve.ota import ServerOTA

        return ServerOTA(state, store, cfg, root)

    return [store.current(n) for n in names], factory


def run(args) -> int:
    from .._deps import require
    from ..errors import InputError

    if not args.bundles and not args.llm and not args.ota:
        raise InputError("give at least one BUNDLE to serve, --llm MODEL, or --ota URL with a store that has models")
    require("uvicorn", "serve", "the REST server")
    from prometheus_client import CollectorRegistry

    from ..serve import create_app
    from ..serve.budget import start_line
    from ..serve.plan import import_server_stack

    import_server_stack()  # what uvicorn.run imports later, so that the memory plan counts it

    config = build_config(args)
    describe = config_from_args(DescribeConfig, args)  # a bad prompt template fails here, before any load
    registry = CollectorRegistry(auto_describe=True)
    llm = make_llm(args, registry, config) if args.llm else None
    bundles, ota = list(args.bundles), None
    if args.ota:
        bundles, ota = ota_setup(args, bundles)
    from ..serve.admin import read_token

    token = read_token(args.admin_token_file) if args.admin_token_file else None
    app = create_app(bundles, config, llm=llm, registry=registry, ota=ota, admin_token=token,
                     describe=describe)
    state = app.state.edgeship
    for name, served in state.models.items():
        m = served.model.bundle.manifest
        batching = f"batches up to {served.worker.capacity}" if served.model.dynamic_batch else "fixed batch"
        say(f"model {name} v{m.version} ({m.task.value}, {batching}) -> POST /v1/models/{name}/predict")
        say(f"  runs on {served.model.describe_short()}")
    if llm is not None:
        say(f"llm {llm.name} -> POST /v1/chat/completions")
    if state.models:
        say(f"describe -> POST /v1/pipelines/describe{'' if len(state.models) == 1 else '?model=NAME'} "
            f"({'with ' + llm.name if llm is not None else 'no LLM: vision answers only'})")
    if state.decoding is not None:
        say(f"decode: {state.decoding}")
    say(start_line(state.memory_plan, state.memory_budget, state.memory_at_start) + " -> GET /v1/budget")
    _log_to_stderr(args.log_level)
    governor = app.state.governor
    if governor is not None:
        ladder = ", ".join(f"{s.action.value} at {s.set_c:g} C" for s in config.governor.steps)
        say(f"thermal governor on ({governor.governor.limits.source}): {ladder}")
    say(f"dashboard: http://{args.host}:{args.port}/")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not config.api_key_file:
        say(f"WARNING: listening on {args.host} without --api-key-file: anyone who reaches this port can "
            "run the models (docs/security.md)")
    from ..serve.server import run_server

    run_server(app, config, args.host, args.port, log_level=args.log_level, access_log=args.access_log)
    return 0
