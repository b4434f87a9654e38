"""``edgeship serve BUNDLE [BUNDLE ...]``: the vision REST server (and an LLM with ``--llm``)."""

from __future__ import annotations

import argparse

from ..cli import lazy, non_negative_float, positive_float, positive_int


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
    p.add_argument("--port", type=positive_int, default=8000)
    p.add_argument("--llm", metavar="MODEL", help="also serve this GGUF model or LLM bundle (needs edgeship[llm])")
    p.add_argument("--llm-ctx", type=positive_int, default=4096, help="LLM context length in tokens")
    p.add_argument("--llm-queue-size", type=positive_int, default=8,
                   help="LLM requests waiting for the model; one more gets 503 (generation takes seconds)")
    p.add_argument("--max-batch", type=positive_int, default=8, help="rows per model run, for dynamic-batch models")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=2.0,
                   help="how long a batch waits for requests still being decoded (a lone request never waits)")
    p.add_argument("--queue-size", type=positive_int, default=64,
                   help="requests in flight per model; one more gets 503 with Retry-After")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads per model (default: one per core)")
    p.add_argument("--prep-threads", type=positive_int, default=None, help="image decode threads (default: one per core, at most 4)")
    p.add_argument("--max-upload-mb", type=positive_float, default=10.0, help="largest accepted request body")
    p.add_argument("--max-pixels", type=positive_int, default=25_000_000, help="largest accepted image, in pixels")
    p.add_argument("--spinning", choices=("auto", "off", "run", "on"), default="auto",
                   help="ONNX Runtime threads busy-wait for work: auto (default: a lone request that comes within "
                        "40 ms of the one before runs on a second session of the model whose threads spin, at "
                        "the lowest priority; batches and sparse requests on one that sleeps; a second copy of "
                        "the model in memory), off (never), run (only while a run is in progress) or on (ONNX "
                        "Runtime's default)")
    p.add_argument("--max-temp", type=positive_float, default=80.0, help="CPU temperature (C) above which readiness is degraded")
    p.add_argument("--target", default=None,
                   help="device preset whose thermal limits apply (rpi5: the firmware throttles from 80 C; jetson-*: "
                        "the kernel's trip points); default: this host's trip points")
    p.add_argument("--sensors-root", default="/", help=argparse.SUPPRESS)  # tests and demos: a simulated sysfs tree
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False,
                   help="log every request (off by default: /metrics counts them)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(run=lazy("edgeship.commands.serve:run"))


def build_config(args):
    import dataclasses

    from ..monitor.alerts import AlertThresholds
    from ..serve.config import ServeConfig

    extra = {"prep_threads": args.prep_threads} if args.prep_threads else {}
    if args.target:
        from ..devices import preset

        preset(args.target)  # an unknown target is a usage error naming the known ones
    return ServeConfig(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
        queue_size=args.queue_size, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
        threads=args.threads, spinning=args.spinning, sensors_root=args.sensors_root, target=args.target,
        alerts=dataclasses.replace(AlertThresholds(), max_cpu_temp_c=args.max_temp), **extra,
    )


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


def run(args) -> int:
    from .._deps import require
    from ..errors import InputError

    if not args.bundles and not args.llm:
        raise InputError("give at least one BUNDLE to serve, or --llm MODEL")
    uvicorn = require("uvicorn", "serve", "the REST server")
    from prometheus_client import CollectorRegistry
    from rich.console import Console

    from ..serve import create_app

    console = Console(stderr=True)
    config = build_config(args)
    registry = CollectorRegistry(auto_describe=True)
    llm = make_llm(args, registry) if args.llm else None
    app = create_app(args.bundles, config, llm=llm, registry=registry)
    state = app.state.edgeship
    for name, served in state.models.items():
        m = served.model.bundle.manifest
        batching = f"batches up to {served.worker.capacity}" if served.model.dynamic_batch else "fixed batch"
        console.print(f"model [bold]{name}[/bold] v{m.version} ({m.task.value}, {batching}) "
                      f"-> POST /v1/models/{name}/predict", highlight=False)
    if llm is not None:
        console.print(f"llm [bold]{llm.name}[/bold] -> POST /v1/chat/completions", highlight=False)
    uvicorn.run(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
        timeout_graceful_shutdown=int(config.shutdown_timeout_s),
    )
    return 0
