"""``edgeship serve BUNDLE [BUNDLE ...]``: the vision REST server (and an LLM with ``--llm``)."""

from __future__ import annotations

import argparse
import sys

from ..serve.config import ServeConfig
from .args import add_config_flags, config_from_args, lazy, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve bundles over HTTP (REST /v1, KServe /v2, /metrics)",
        description=(
            "Serve vision bundles: POST /v1/models/NAME/predict (multipart 'file' or a raw image body), "
            "GET /v1/models, the KServe v2 protocol under /v2, /health/live, /health/ready and /metrics. "
            "With --llm, also an OpenAI-compatible /v1/chat/completions."
        ),
    )
    p.add_argument("bundles", metavar="BUNDLE", nargs="*", help="bundle folders, .tar files or bare .onnx")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=positive_int, default=8000, help="TCP port to listen on")
    p.add_argument("--llm", metavar="MODEL", help="also serve this GGUF model or LLM bundle (needs edgeship[llm])")
    p.add_argument("--llm-ctx", type=positive_int, default=4096, help="LLM context length in tokens")
    p.add_argument("--llm-queue-size", type=positive_int, default=8,
                   help="LLM requests waiting for the model; one more gets 503 (generation takes seconds)")
    add_config_flags(p, ServeConfig)
    p.add_argument("--max-temp", type=positive_float, default=80.0, help="CPU temperature (C) above which readiness is degraded")
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                   help="log every request (off by default: /metrics counts them)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level")
    p.set_defaults(run=lazy("edgeship.commands.serve:run"))


def build_config(args):
    import dataclasses

    from ..monitor.alerts import AlertThresholds

    return config_from_args(ServeConfig, args, alerts=dataclasses.replace(AlertThresholds(), max_cpu_temp_c=args.max_temp))


def make_llm(args, registry):
    from ..errors import MissingDependencyError

    try:
        from ..llm.openai_api import LLMService
    except ImportError as exc:
        if isinstance(exc, MissingDependencyError):
            raise
        raise MissingDependencyError(
            f"--llm needs the LLM server ({exc}); pip install 'edgeship[llm]'"
        ) from exc
    return LLMService(args.llm, n_ctx=args.llm_ctx, n_threads=args.threads, queue_size=args.llm_queue_size,
                      registry=registry)


def say(line: str) -> None:
    # plain stderr, not rich: the server would carry rich's modules (1.5 MB) for these few lines
    print(line, file=sys.stderr, flush=True)


def run(args) -> int:
    from .._deps import require
    from ..errors import InputError

    if not args.bundles and not args.llm:
        raise InputError("give at least one BUNDLE to serve, or --llm MODEL")
    uvicorn = require("uvicorn", "serve", "the REST server")
    from prometheus_client import CollectorRegistry

    from ..serve import create_app
    from ..serve.budget import start_line
    from ..serve.plan import import_server_stack

    import_server_stack()  # what uvicorn.run imports later, so that the memory plan counts it

    config = build_config(args)
    registry = CollectorRegistry(auto_describe=True)
    llm = make_llm(args, registry) if args.llm else None
    app = create_app(args.bundles, config, llm=llm, registry=registry)
    state = app.state.edgeship
    for name, served in state.models.items():
        m = served.model.bundle.manifest
        batching = f"batches up to {served.worker.capacity}" if served.model.dynamic_batch else "fixed batch"
        say(f"model {name} v{m.version} ({m.task.value}, {batching}) -> POST /v1/models/{name}/predict")
    if llm is not None:
        say(f"llm {llm.name} -> POST /v1/chat/completions")
    say(start_line(state.memory_plan, state.memory_budget, state.memory_at_start) + " -> GET /v1/budget")
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
        timeout_graceful_shutdown=int(config.shutdown_timeout_s),
        ws="none",  # no WebSocket routes: not importing a WebSocket protocol keeps its memory free
    )
    return 0
