"""The app factory: models in, a Starlette app out (vision /v1, KServe /v2, health, metrics, LLM).

>>> app = create_app(["mobilenet/", "yolo.tar"], ServeConfig(max_batch=8))
>>> uvicorn.run(app, host="127.0.0.1", port=8000)

Models load here, before the server listens, so a broken bundle fails at start, not on the
first request. Inference threads start in the lifespan; on shutdown new requests get 503,
what is in flight finishes (up to ``shutdown_timeout_s``), then the threads stop. While it runs,
``app.state.edgeship.swap(name, model)`` replaces the model a name serves (serve/state.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, Sequence, Union

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute

from .. import __version__
from .._routes import Routes
from ..bundle import Bundle
from ..errors import InputError
from ..monitor.memory import usage
from ..runtime.backends import BackendKind, backend_class
from ..runtime.model import Model
from ..util import trim_heap
from .batching import ModelWorker
from .budget import Budget, BudgetCollector, Planner, create_budget_router, measured_now, start_line
from .config import DecodePriority, ServeConfig, Spinning, runtime_config, runtime_given, thermal_limits
from .dashboard import create_dashboard_router
from .errors import install_handlers
from .guard import Guard, load_api_keys
from .health import READY, HealthChecker, check_model
from .kserve import create_kserve_router
from .live import LiveStats
from .metrics import RequestCounter, ServeMetrics
from .pool import HotThreadPool
from .state import ServedModel, ServerState
from .triton import create_triton_router
from .vision import create_vision_router

log = logging.getLogger("edgeship.serve")

ModelSource = Union[str, os.PathLike, Bundle, Model]


def load_models(sources: Sequence[ModelSource], config: ServeConfig, planner: Planner | None = None) -> list[Model]:
    """Models from bundle paths (loaded with the server's settings) or as given, names checked unique.

    A Model given loaded keeps its own settings and picture limits; every upload is held to
    ``config.max_pixels`` before decoding anyway (serve/upload.py). With a ``planner``, the memory
    each load adds is measured into the plan.
    """
    runtime = runtime_config(config)
    models = []
    for s in sources:
        if isinstance(s, Model):
            models.append(s)  # loaded by the caller: its memory is in "process before models"
            continue
        if planner is None:
            models.append(_load(s, runtime, config))
            continue
        with planner.measure(f"{s}: session", "what the load made resident, the weights apart") as step:
            model = _load(s, runtime, config)
            step.name = f"{model.name}: session"
            planner.add_weights(model.name, model)
            trim_heap()  # what loading left free (the file's bytes, the graph's) goes back to the system
        models.append(model)
    seen: set[str] = set()
    for m in models:
        if m.name in seen:
            raise InputError(f"two models are named {m.name!r}; rename one bundle (its manifest's name) to serve both")
        seen.add(m.name)
    return models


async def share_cores(llm, activity, sharing) -> None:
    """Set up how the loaded LLM leaves the cores to vision requests (serve/sharing.py)."""
    from .config import LLMSharing
    from .sharing import lower_llm_threads

    engine = getattr(llm, "engine", None)
    if engine is None:  # not loaded (or not an LLMService)
        return
    if sharing is not LLMSharing.OFF:
        from ..llm.queueing import on_model_thread

        reniced = await on_model_thread(llm, lambda: lower_llm_threads(engine))
        log.info("llm: its thread and %d compute threads at nice 19 (--llm-sharing %s)", len(reniced), sharing.value)
    engine.pace = activity.pacer(sharing)


def _load(source, runtime, config: ServeConfig) -> Model:
    """A bundle loaded with the server's settings; without engine flags, as ``edgeship tune`` recorded
    for this host (a choice for another host is logged and not applied)."""
    from ..bundle import open_bundle
    from ..targets.choice import recorded_runtime

    bundle = source if isinstance(source, Bundle) else open_bundle(source)
    if not runtime_given(config):
        recorded = recorded_runtime(bundle, runtime)
        if recorded.note:
            log.warning("%s: %s", bundle.name, recorded.note)
        if recorded.config is not None:
            runtime = recorded.config
    return Model(bundle, runtime, max_pixels=config.max_pixels, max_decode_bytes=config.max_decode_bytes)


def check_variants(config: ServeConfig, served: dict) -> None:
    """Each declared variant names a served model and is a bundle that opens (files checked)."""
    from ..bundle import open_bundle

    for name, source in config.variants.items():
        if name not in served:
            known = ", ".join(sorted(served)) or "none"
            raise InputError(f"--variant {name}=...: no model named {name!r} is served (serving: {known})")
        try:
            open_bundle(source)
        except Exception as exc:
            raise InputError(f"--variant {name}={source}: not a usable bundle: {exc}") from exc


LOW_DECODE_NICE = 10  # --decode-priority low


def _warm_up(planner: Planner, name: str, worker: ModelWorker) -> None:
    """Run the model before the server listens, once on one row (golden input, else zeros), then once on
    a full batch of zeros: the first requests do not pay the arena's growth, and the plan measures it.
    The twin draws from the same arena. A model whose row is large gets fewer rows per run
    (``--max-batch-mb``).

    The full batch runs at start because an arena grown under load, batch by batch, may end larger:
    EfficientNet-Lite0 with its twin, 300 runs of 1 to 4 rows in 8 orders, held 31.5 MB over one row's
    run in 5 of them and 38.6 or 45.8 MB in 3, and 31.4-31.5 MB in all 8 after a batch of 4 at start
    (bench/arena_growth.py)."""
    with planner.measure(f"{name}: first run", "activations of one row") as step:
        check_model(worker.model)
    asked, cap = worker.capacity, worker.config.max_batch_bytes
    if cap and step.bytes and worker.limit_rows(cap // step.bytes) < asked:
        log.info("%s: %d rows per run, not %d: one row's activations measured %.1f MB (--max-batch-mb %g)",
                 name, worker.capacity, asked, step.bytes / 2**20, cap / 2**20)
    rows, model = worker.capacity, worker.model
    if model.dynamic_batch and rows > 1:
        with planner.measure(f"{name}: batch of {rows}", "a full batch's activations, run once at start"):
            model.run(model.blank_input(rows))
    planner.add_load_peaks(name, model, rows, worker.in_flight)


def _warm_decoders(pool: HotThreadPool, model: Model, threads: int) -> None:
    """Each decode thread decodes a 640x480 JPEG (a camera frame) before the server listens: what its
    allocator keeps after a few requests is in place, and in the plan, from the start (one decode each
    measured 7.1 MB for Lite0's two threads, two decodes 7.3 MB, at half the start-up time)."""
    import io
    import threading

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 90, 60)).save(buf, "JPEG", quality=90)
    frame = buf.getvalue()
    together = threading.Barrier(threads)  # one task per thread: each waits until all have started

    def work() -> None:
        try:
            together.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        model.prepare(frame)

    for f in [pool.submit(work) for _ in range(threads)]:
        f.result()


def create_app(models: Sequence[ModelSource], config: Union[ServeConfig, None] = None, llm: Any = None,
               registry: Any = None, ota: Any = None, admin_token: Union[str, None] = None,
               describe: Any = None, hot: Any = None) -> Starlette:
    """A Starlette app serving ``models`` (bundle paths, Bundles or loaded Models) and, optionally, an LLMService.

    ``registry``: the prometheus CollectorRegistry to fill (one is made when None); give the same
    one to the LLMService so /metrics shows both. ``ota``: a factory ``state -> ServerOTA``
    (serve/ota.py, ``--ota``); ``admin_token``: turns the admin API on (serve/admin.py).
    ``describe``: the pipeline.DescribeConfig of ``POST /v1/pipelines/describe`` (None: the
    defaults). ``hot``: a callable returning why the device is too hot to start a description, or
    None (default: serve/heat.ThermalHeat, the thermal status).
    """
    from ..pipeline.config import DescribeConfig
    from .describe import DescribeService, create_describe_router
    from .heat import ThermalHeat
    from .sharing import VisionActivity

    config = config or ServeConfig()
    # The engine's imports are not a model's memory (ONNX Runtime unless --backend names another;
    # a bundle whose recorded choice is another engine counts that engine's imports in its load).
    backend_class(runtime_config(config).backend or BackendKind.ONNXRUNTIME).import_engine()
    planner = Planner(config)
    loaded = load_models(models, config, planner)
    try:
        if llm is not None and llm.name in {m.name for m in loaded}:
            raise InputError(f"the LLM and a vision model are both named {llm.name!r}; rename one")
        limits = thermal_limits(config)
        with planner.measure("server: metrics, decode threads, health"):
            metrics = ServeMetrics(config.sensors_root, config.disk_path, registry, limits=limits)
            prep_pool = HotThreadPool(config.prep_threads, "edgeship-decode")
        activity = VisionActivity()  # what the LLM yields to (serve/sharing.py)
        served = {}
        for m in loaded:
            mm = metrics.for_model(m.name, m)
            twin = config.spinning is Spinning.AUTO
            with planner.measure(f"{m.name}: twin session", "the spinning twin: its session, weights shared") \
                    if twin else contextlib.nullcontext():
                worker = ModelWorker(m, config, mm, prep_pool, activity=activity)
            served[m.name] = ServedModel(m, worker, mm)
            _warm_up(planner, m.name, worker)
        pictures = [m for m in loaded if m.takes_images]
        if pictures:
            with planner.measure("decode threads: a 640x480 picture each", "their allocators' high-water mark"):
                _warm_decoders(prep_pool, pictures[0], config.prep_threads)
            planner.add_decodes()
        decoding = None
        if config.decode_priority is DecodePriority.LOW:
            decoding = (f"{config.prep_threads} threads at nice {LOW_DECODE_NICE} (--decode-priority low)"
                        if prep_pool.renice(LOW_DECODE_NICE) else
                        "--decode-priority low: this system sets no thread's priority; decoding keeps the process's")
        if llm is not None:
            planner.add_llm(llm)
        budget = Budget.resolve(config.memory_budget)
        budget.check(planner.plan)
    except BaseException:
        for m in loaded:
            if m not in models:  # loaded here: free it; a caller's model stays the caller's
                m.close()
        raise
    health = HealthChecker(served, config, metrics, llm)
    state = ServerState(served, config, metrics, prep_pool, health, llm)
    state.memory_plan, state.memory_budget = planner.plan, budget
    state.decoding = decoding
    state.memory_at_start = measured_now()
    metrics.registry.register(BudgetCollector(state))
    log.info("%s", start_line(state.memory_plan, budget, state.memory_at_start))
    state.primary.update({name: s.model.bundle for name, s in served.items()})
    state.ota = ota(state) if ota is not None else None  # the updater of serve/ota.py, or none
    for name, s in served.items():
        s.metrics.queue_depth.set_function(lambda name=name: state.pending(name))  # across swaps too
    from ..monitor.thermal import read_sample

    live_stats = LiveStats(lambda: state.models, heat=lambda: read_sample(config.sensors_root),
                           llm=(lambda: llm.model_card()) if llm is not None else (lambda: None),
                           started=metrics.started, limits=limits)
    governor = None
    if config.governor is not None:
        from .governor import GovernorService

        check_variants(config, served)
        governor = GovernorService(state, config, limits, metrics, live_stats)
        # The live view shows what the governor read, instead of reading the sensors a second time.
        live_stats.heat = lambda: governor.governor.last_sample
        live_stats.governor = governor.snapshot
    hot = hot if hot is not None else ThermalHeat(config.sensors_root, limits)
    describer = DescribeService(state, describe or DescribeConfig(), llm, hot, metrics.registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        for s in served.values():
            s.worker.start()
        if llm is not None:
            before = usage()
            await llm.start()
            after = usage()
            if before and after:  # what loading the LLM took, beside what the plan said
                state.memory_llm_loaded = after.rss_bytes - before.rss_bytes
            await share_cores(llm, activity, config.llm_sharing)
            await describer.start()
        if state.ota is not None:
            state.ota.start(asyncio.get_running_loop())
        live_stats.start()
        if governor is not None:
            governor.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            if state.ota is not None:
                state.ota.stop()
            if governor is not None:
                governor.stop()
            live_stats.stop()
            state.closing = True  # a swap under way finishes; no new one starts
            for s in served.values():
                s.worker.close()
            drained = await asyncio.gather(*(s.worker.drain(config.shutdown_timeout_s) for s in served.values()))
            if not all(drained):
                log.warning("shutdown: requests still in flight after %.0f s", config.shutdown_timeout_s)
            for s in served.values():
                s.worker.stop()
            if llm is not None:
                await llm.stop()
            prep_pool.shutdown(wait=False, cancel_futures=True)

    server = Routes(tag="server")

    @server.get("/health/live")
    async def live(request: Request) -> JSONResponse:
        """Answers while the process runs."""
        return JSONResponse({"status": "live", "uptime_s": round(time.time() - metrics.started, 3)})

    @server.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        """200 when every model (and the LLM) answers its check, else 503 with the reasons."""
        report = await health.check()
        return JSONResponse(report, status_code=200 if report["status"] == READY else 503)

    @server.get("/metrics")
    async def prometheus(request: Request) -> Response:
        """Prometheus' text format: requests, latency, batches, queue, memory, heat."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        # Sensor reads (sysfs, vcgencmd) must not run on the event loop.
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    from .admin import create_admin_router

    routes: list[BaseRoute] = [
        *server, *create_admin_router(state, admin_token), *create_budget_router(state),
        *create_dashboard_router(live_stats), *create_vision_router(state),
        *create_triton_router(state),  # first: /v2/models/stats is not a model named "stats"
        *create_kserve_router(state), *create_describe_router(describer),
    ]
    if llm is not None:
        from ..llm.openai_api import create_llm_router

        routes += create_llm_router(llm)
    else:  # an OpenAI client pointed here gets OpenAI's error shape saying how to load a model, not a bare 404
        from ..llm.refusals import create_no_llm_router

        routes += create_no_llm_router()
    if config.docs:
        routes += docs_routes(routes)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.edgeship = state
    app.state.describe = describer
    app.state.live = live_stats
    app.state.governor = governor
    install_handlers(app)
    known = lambda: (*served, *([llm.name] if llm is not None else []))  # noqa: E731
    if governor is not None:
        from .governor import GovernorGate

        app.add_middleware(GovernorGate, service=governor)  # inside the counter: its 503s are counted
    keys = load_api_keys(config.api_key_file) if config.api_key_file else ()
    # Outside the governor's gate, inside the counter: a request without the key is refused before
    # anything else looks at it, and the refusal is counted.
    app.add_middleware(Guard, config=config, keys=keys)
    app.add_middleware(RequestCounter, metrics=metrics, known=known, live=live_stats)
    return app


def docs_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    """/docs (Swagger UI, its JavaScript and CSS from the installed swagger-ui-bundle package: an
    offline device cannot reach a CDN) and /docs/openapi.json, the document of ``routes``."""
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from .._deps import require
    from .openapi import document, swagger_page

    bundle = require("swagger_ui_bundle", "serve", "--docs (Swagger UI served from the device)")
    docs = Routes()
    schema: dict[str, Any] = {}

    @docs.get("/docs/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        if not schema:  # written once, on the first request
            schema.update(document(routes, "edgeship", __version__))
        return JSONResponse(schema)

    @docs.get("/docs", include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(swagger_page("/docs/openapi.json", "/docs/assets", "edgeship API"))

    return [*docs, Mount("/docs/assets", StaticFiles(directory=bundle.swagger_ui_path), name="docs-assets")]
