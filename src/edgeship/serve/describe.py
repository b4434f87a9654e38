"""``POST /v1/pipelines/describe``: a picture in; the vision answer at once, then the LLM's description.

    curl -N --data-binary @cat.jpg http://127.0.0.1:8000/v1/pipelines/describe
    event: vision
    data: {"model":"efficientnet-lite0","task":"classify","classes":[{"label":"Egyptian cat",...}],...}

    event: token
    data: {"text":"The"}
    ...
    event: done
    data: {"description":"The photo of a cat ...","degraded":null,"finish_reason":"stop",
           "usage":{...},"timing_ms":{"vision":..,"queue":..,"prompt":..,"first_token":..,"generation":..,"total":..}}

With ``"stream": false`` (or ``?stream=false``) the answer is one JSON: the ``done`` data plus ``vision``.

The vision part runs like ``/v1/models/NAME/predict`` (same worker, same batching: it never waits
for the LLM). Then, instead of an error, the answer degrades to the vision result with
``"description": null`` and ``"degraded": {"reason", "message"}``, status 200, when the server
runs no LLM (``llm_absent``), the LLM is not loaded (``llm_unavailable``), the device is hot
(``device_hot``, serve/heat.py) or the LLM's queue is full (``llm_queue_full``). A client that
disconnects frees its place in the LLM's queue at once; a running generation stops after its
current token. ``max_tokens`` beyond the server's ``--llm-max-tokens`` is a 400.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from .._routes import Routes
from ..bundle import Task
from ..errors import InputError
from ..pipeline.describe import Clock, Event, Pipeline, done_event, vision_answer
from ..pipeline.prompt import placeholders
from .describe_input import options, split_body
from .errors import ApiError
from .heat import HeatGate
from .upload import check_image, image_bytes, read_body

log = logging.getLogger("edgeship.serve")

STAGES = ("vision", "queue", "prompt", "first_token", "generation", "total")
REASONS = ("llm_absent", "llm_unavailable", "device_hot", "llm_queue_full")
# Seconds: a 5 ms vision answer to a minute-long description on a throttled board.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PipelineMetrics:
    """edgeship_pipeline_*: the time of each stage, degraded answers by reason, prompt tokens reused."""

    def __init__(self, registry):
        from prometheus_client import Counter, Histogram

        self.seconds = Histogram("edgeship_pipeline_seconds", "Describe requests: time of each stage (vision, queue "
                                 "for the LLM, prompt, first token from arrival, generation, total)", ["stage"],
                                 buckets=BUCKETS, registry=registry)
        self.degraded = Counter("edgeship_pipeline_degraded", "Describe answers without a description, by reason",
                                ["reason"], registry=registry)
        self.outcomes = Counter("edgeship_pipeline_requests", "Describe requests by outcome", ["outcome"],
                                registry=registry)
        self.prompt_tokens = Counter("edgeship_pipeline_prompt_tokens", "Describe prompt tokens: reused from the "
                                     "prefix cache, or evaluated", ["kind"], registry=registry)
        for r in REASONS:
            self.degraded.labels(r)
        for kind in ("reused", "evaluated"):
            self.prompt_tokens.labels(kind)

    def observe(self, timing_ms: dict[str, float]) -> None:
        for stage in STAGES:
            if stage in timing_ms:
                self.seconds.labels(stage).observe(timing_ms[stage] / 1e3)


def describe_job(model, body: bytes, content_type: str | None, top_k: int | None, max_pixels: int):
    """Like vision.image_job, but the answer also carries the picture's size (for positions in the prompt)."""

    def prepare():
        t0 = time.perf_counter()
        data = image_bytes(body, content_type)
        check_image(data, max_pixels)
        checked_ms = (time.perf_counter() - t0) * 1e3
        x, meta, timing = model.prepare(data)
        timing["decode"] = timing.get("decode", 0.0) + checked_ms
        size = (meta.width, meta.height) if meta is not None else None
        return x[None], lambda outputs: (model.finish([o[0] for o in outputs], meta, top_k), size), timing

    return prepare


class DescribeService:
    """The describe route's state: the Pipeline (made once the LLM has loaded), the heat gate, metrics."""

    def __init__(self, state: Any, config: Any, llm: Any = None, hot: Any = None, registry: Any = None) -> None:
        self.state = state
        self.config = config  # pipeline.DescribeConfig
        self.llm = llm
        self.heat = HeatGate(hot) if hot is not None else None
        self.metrics = PipelineMetrics(registry if registry is not None else state.metrics.registry)
        self.pipeline: Pipeline | None = None
        self.error: str | None = None
        template = config.template()
        for name, served in state.models.items():
            if served.model.task in (Task.CLASSIFY, Task.DETECT):
                try:
                    template.check(served.model.task)
                except InputError as exc:
                    raise InputError(f"{exc} (model {name!r})") from None

    async def start(self) -> None:
        """Make the Pipeline on the LLM's thread and evaluate the prompt's head there, before any request."""
        llm = self.llm
        tasks = sorted({s.model.task for s in self.state.models.values()} & {Task.CLASSIFY, Task.DETECT},
                       key=lambda t: t.value)
        if llm is None or not tasks or not llm.ready()[0]:
            return  # no LLM, or nothing to describe: the route answers vision-only or 4xx, chat serves as ever

        def build() -> Pipeline:
            pipe = Pipeline(llm.engine, self.config, tasks=tasks)
            pipe.warm()
            return pipe

        from ..llm.queueing import on_model_thread

        try:
            self.pipeline = await on_model_thread(llm, build)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001  describe degrades; the rest of the server serves
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("describe pipeline could not start: %s", self.error)
        if self.pipeline is not None and self.pipeline.prefix is not None:
            p = self.pipeline.prefix
            log.info("describe: prompt head of %d tokens cached (%.0f ms, %d KB)", len(p), p.warm_ms or 0, p.bytes >> 10)

    # -- the request -------------------------------------------------------------------------------

    def _model_name(self, asked: str | None) -> str:
        if asked:
            return asked
        names = sorted(self.state.models)
        if len(names) == 1:
            return names[0]
        raise ApiError(400, f"name the vision model with ?model=NAME (loaded: {', '.join(names) or 'none'})")

    def _check_max_tokens(self, asked: int | None) -> int | None:
        limit = getattr(self.llm, "max_tokens", None)
        if asked is not None and limit is not None and asked > limit:
            raise ApiError(400, f"max_tokens: {asked} is over this server's limit of {limit} tokens per request "
                                "(serve --llm-max-tokens); ask for fewer", "invalid_request")
        return asked

    async def _degraded(self) -> dict[str, str] | None:
        """Why no description will be made now, or None. Ends with the queue check: no await after it."""
        from ..llm.queueing import busy_reason

        llm = self.llm
        if llm is None:
            return {"reason": "llm_absent", "message": "this server runs no LLM (edgeship serve BUNDLE --llm MODEL)"}
        ok, why = llm.ready()
        if not ok or self.pipeline is None:
            return {"reason": "llm_unavailable", "message": f"the LLM is not available ({self.error or why})"}
        hot = await self.heat.reason() if self.heat is not None else None
        if hot:
            return {"reason": "device_hot", "message": hot}
        busy = busy_reason(llm)
        if busy:
            return {"reason": "llm_queue_full", "message": busy}
        return None

    async def handle(self, request: Request):
        clock = Clock()
        q = request.query_params
        opts = options({k: q.get(k) for k in ("stream", "max_tokens", "top_k")})
        self._check_max_tokens(opts.max_tokens)
        name = self._model_name(q.get("model"))
        config = self.state.config
        # The body is read whole (bounded in size and time by the Guard) before the request takes a
        # queue place: a client that stalls mid-upload holds a connection, never a model's queue.
        body = await read_body(request, config.max_upload_bytes)
        image, opts = split_body(body, request.headers.get("content-type"), opts,
                                 max_parts=config.max_multipart_parts, max_depth=config.max_json_depth)
        self._check_max_tokens(opts.max_tokens)
        with self.state.admit(name) as served:  # the model this request runs on, even if a swap comes
            model = served.model
            if model.task not in (Task.CLASSIFY, Task.DETECT):
                placeholders(model.task)  # InputError naming the tasks describe handles -> 400
            # Every detection counts in the prompt ({count}, {objects}); classes: what the prompt lists.
            top_k = None if model.task is Task.DETECT else max(
                opts.top_k or model.bundle.manifest.postprocessing.top_k, self.config.listed)
            job = describe_job(model, image, "application/octet-stream", top_k, self.state.config.max_pixels)
            (output, size), timing = await served.worker.submit(job)
        clock.vision = time.perf_counter()
        timing.pop("batch_size", None)
        timing["total"] = (clock.vision - clock.arrival) * 1e3
        vision = vision_answer(model, name, output, timing)
        if opts.top_k is not None:  # the prompt saw `listed`; the answer shows what was asked for
            for key in ("classes", "detections"):
                if key in vision:
                    vision[key] = vision[key][: opts.top_k]
        work = (model.task, name, output, size, opts)
        if opts.stream:
            return StreamingResponse(self._events(clock, vision, work), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await self._whole(request, clock, vision, work)

    def _generation(self, work):
        """The request's generation; InputError when its prompt cannot be made (a swap changed the task,
        a prompt that does not fit the context)."""
        task, name, output, size, opts = work
        self.pipeline.template.check(task)
        return self.pipeline.generation(task, output, size, model=name, max_tokens=opts.max_tokens)

    def _finish(self, event: Event, gen=None, outcome: str = "described") -> Event:
        d = event.data
        self.metrics.observe(d["timing_ms"])
        if d["degraded"]:
            self.metrics.degraded.labels(d["degraded"]["reason"]).inc()
            outcome = "degraded"
        if gen is not None:
            self.metrics.prompt_tokens.labels("reused").inc(gen.reused_tokens)
            self.metrics.prompt_tokens.labels("evaluated").inc(gen.evaluated_tokens)
        self.metrics.outcomes.labels(outcome).inc()
        if self.llm is not None:
            self.llm.metrics.request("describe", outcome)
        return event

    async def _events(self, clock: Clock, vision: dict, work):
        from ..llm.openai_protocol import OpenAIError
        from ..llm.queueing import GenerationFailed, run_streamed

        yield Event("vision", vision).sse()
        degraded = await self._degraded()
        if degraded:
            clock.end = time.perf_counter()
            yield self._finish(done_event(clock, None, None, degraded)).sse()
            return
        try:
            gen = self._generation(work)
        except InputError as exc:
            clock.end = time.perf_counter()
            self._finish(done_event(clock), outcome="failed")
            yield Event("error", {"error": {"message": str(exc), "type": "invalid_request", "code": 400}}).sse()
            return
        parts: list[str] = []
        try:
            async for piece in run_streamed(self.llm, gen):  # the queue check above and this wait: no await between
                parts.append(piece)
                yield Event("token", {"text": piece}).sse()
        except (asyncio.CancelledError, GeneratorExit):  # the client went away: run_streamed freed the LLM
            self.metrics.outcomes.labels("cancelled").inc()
            if self.llm is not None:
                self.llm.metrics.request("describe", "cancelled")
            raise
        except OpenAIError as exc:  # the LLM began stopping while this request waited
            clock.end = time.perf_counter()
            yield self._finish(done_event(clock, None, None, {"reason": "llm_unavailable", "message": exc.message})).sse()
            return
        except GenerationFailed as exc:
            self._finish(done_event(clock, gen), gen, "failed")
            yield Event("error", {"error": {"message": str(exc), "type": "internal_error", "code": 500}}).sse()
            return
        clock.end = time.perf_counter()
        yield self._finish(done_event(clock, gen, "".join(parts).strip()), gen).sse()

    async def _whole(self, request: Request, clock: Clock, vision: dict, work) -> JSONResponse:
        from ..llm.openai_protocol import OpenAIError
        from ..llm.queueing import acquire_or_gone

        degraded = await self._degraded()
        if degraded:
            clock.end = time.perf_counter()
            return JSONResponse({"vision": vision, **self._finish(done_event(clock, None, None, degraded)).data})
        gen = self._generation(work)
        if not await acquire_or_gone(self.llm, request):
            self.metrics.outcomes.labels("cancelled").inc()
            return JSONResponse({}, status_code=499)
        try:
            fut = self.llm._submit(gen)
        except OpenAIError as exc:
            clock.end = time.perf_counter()
            degraded = {"reason": "llm_unavailable", "message": exc.message}
            return JSONResponse({"vision": vision, **self._finish(done_event(clock, None, None, degraded)).data})
        try:
            text = await self.llm._until_done_or_gone(fut, request, gen.cancel)
        except Exception as exc:  # llama.cpp failed mid-generation
            self._finish(done_event(clock, gen), gen, "failed")
            raise ApiError(500, f"generation failed: {exc}") from exc
        clock.end = time.perf_counter()
        return JSONResponse({"vision": vision, **self._finish(done_event(clock, gen, text.strip()), gen).data})


def create_describe_router(service: DescribeService) -> Routes:
    router = Routes(tag="pipelines")

    @router.post("/v1/pipelines/describe")
    async def describe(request: Request) -> Any:
        """Classify or detect on a picture, then have the LLM describe what the vision model saw."""
        return await service.handle(request)

    return router


__all__ = ["DescribeService", "PipelineMetrics", "create_describe_router", "describe_job"]
