"""The app factory: models in, a FastAPI app out (vision /v1, KServe /v2, health, metrics, LLM).

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

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from .. import __version__
from ..bundle import Bundle
from ..errors import InputError
from ..runtime.backends import backend_class
from ..runtime.model import Model
from ..util import trim_heap
from ..monitor.memory import usage
from .batching import ModelWorker
from .budget import Budget, BudgetCollector, Planner, create_budget_router, measured_now, start_line
from .config import ServeConfig, Spinning, runtime_config
from .errors import install_handlers
from .health import READY, HealthChecker, check_model
from .kserve import create_kserve_router
from .metrics import RequestCounter, ServeMetrics
from .pool import HotThreadPool
from .state import ServedModel, ServerState
from .vision import create_vision_router

log = logging.getLogger("edgeship.serve")

ModelSource = Union[str, os.PathLike, Bundle, Model]


def load_models(sources: Sequence[ModelSource], config: ServeConfig, planner: Planner | None = None) -> list[Model]:
    """Models from bundle paths (loaded with the server's settings) or as given, names checked unique.

    A Model given loaded keeps its own settings and pixel limit; every upload is held to
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
            models.append(Model.load(s, runtime, max_pixels=config.max_pixels))
            continue
        with planner.measure(f"{s}: session", "what the load made resident, the weights apart") as step:
            model = Model.load(s, runtime, max_pixels=config.max_pixels)
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


def _warm_up(planner: Planner, name: str, worker: ModelWorker) -> None:
    """Run the model once before the server listens (golden input, else zeros): the first request does
    not pay the arena's growth, and the plan gets it. The twin draws from the same arena."""
    with planner.measure(f"{name}: first run", "activations of one row") as step:
        check_model(worker.model)
    planner.add_load_peaks(name, worker.model, worker.capacity, worker.in_flight, step.bytes or 0)


def _warm_decoders(pool: HotThreadPool, model: Model, threads: int) -> None:
    """Each decode thread decodes a 640x480 JPEG (a camera frame) twice before the server listens:
    what its allocator keeps after a few requests is in place, and in the plan, from the start."""
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
        for _ in range(2):
            model.prepare(frame)

    for f in [pool.submit(work) for _ in range(threads)]:
        f.result()


def create_app(models: Sequence[ModelSource], config: Union[ServeConfig, None] = None, llm: Any = None,
               registry: Any = None) -> FastAPI:
    """A FastAPI app serving ``models`` (bundle paths, Bundles or loaded Models) and, optionally, an LLMService.

    ``registry``: the prometheus CollectorRegistry to fill (one is made when None); give the same
    one to the LLMService so /metrics shows both.
    """
    config = config or ServeConfig()
    backend_class(runtime_config(config).backend).import_engine()  # its imports are not a model's memory
    planner = Planner(config)
    loaded = load_models(models, config, planner)
    try:
        if llm is not None and llm.name in {m.name for m in loaded}:
            raise InputError(f"the LLM and a vision model are both named {llm.name!r}; rename one")
        with planner.measure("server: metrics, decode threads, health"):
            metrics = ServeMetrics(config.sensors_root, config.disk_path, registry)
            prep_pool = HotThreadPool(config.prep_threads, "edgeship-decode")
        served = {}
        for m in loaded:
            mm = metrics.for_model(m.name, m)
            twin = config.spinning is Spinning.AUTO
            with planner.measure(f"{m.name}: twin session", "the spinning twin: its session, weights shared") \
                    if twin else contextlib.nullcontext():
                worker = ModelWorker(m, config, mm, prep_pool)
            served[m.name] = ServedModel(m, worker, mm)
            _warm_up(planner, m.name, worker)
        pictures = [m for m in loaded if m.takes_images]
        if pictures:
            with planner.measure("decode threads: a 640x480 picture each", "their allocators' high-water mark"):
                _warm_decoders(prep_pool, pictures[0], config.prep_threads)
            planner.add_decodes()
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
    state.memory_at_start = measured_now()
    metrics.registry.register(BudgetCollector(state))
    log.info("%s", start_line(state.memory_plan, budget, state.memory_at_start))
    for name, s in served.items():
        s.metrics.queue_depth.set_function(lambda name=name: state.pending(name))  # across swaps too

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for s in served.values():
            s.worker.start()
        if llm is not None:
            before = usage()
            await llm.start()
            after = usage()
            if before and after:  # what loading the LLM took, beside what the plan said
                state.memory_llm_loaded = after.rss_bytes - before.rss_bytes
        try:
            yield
        finally:
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

    app = FastAPI(title="edgeship", version=__version__, lifespan=lifespan)
    app.state.edgeship = state
    install_handlers(app)
    app.add_middleware(RequestCounter, metrics=metrics)

    @app.get("/health/live")
    async def live() -> JSONResponse:
        return JSONResponse({"status": "live", "uptime_s": round(time.time() - metrics.started, 3)})

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        report = await health.check()
        return JSONResponse(report, status_code=200 if report["status"] == READY else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        # Sensor reads (sysfs, vcgencmd) must not run on the event loop.
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.include_router(create_budget_router(state))
    app.include_router(create_vision_router(state))
    app.include_router(create_kserve_router(state))
    if llm is not None:
        from ..llm.openai_api import create_llm_router

        app.include_router(create_llm_router(llm))
    return app
