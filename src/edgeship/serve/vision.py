"""The /v1 vision routes: predict on an uploaded picture, list the models (OpenAI list shape).

    curl -F file=@cat.jpg http://127.0.0.1:8000/v1/models/mobilenet/predict
    curl --data-binary @cat.jpg http://127.0.0.1:8000/v1/models/mobilenet/predict?top_k=3
"""

from __future__ import annotations

import time
from typing import Any, Union

from starlette.requests import Request
from starlette.responses import JSONResponse

from .._config import to_dict
from .._routes import Routes
from .errors import ApiError
from .openapi import predict_operation
from .upload import check_image, image_bytes, read_body


def model_card(served, created: int, swaps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One entry of GET /v1/models: an OpenAI model object plus what a vision client needs.

    ``serving`` says what answers requests now: the version and the backend as it runs (engine,
    providers, threads), since when, and the last live swap when there was one.
    """
    model = served.model
    m = model.bundle.manifest
    inputs = [to_dict(s) for s in m.inputs] or [
        {"name": s.name, "shape": [d if isinstance(d, int) else None for d in s.shape], "dtype": s.dtype}
        for s in model.inputs
    ]
    swaps = swaps or []
    return {
        "id": served.name,
        "object": "model",
        "created": created,
        "owned_by": "edgeship",
        "version": m.version,
        "task": m.task.value,
        "format": m.format.value,
        "sha256": m.files.get(m.model),
        "inputs": inputs,
        "dynamic_batch": model.dynamic_batch,
        "labels": len(model.bundle.labels or []),
        "serving": {
            "version": model.version,
            "backend": model.describe(),
            "since": round(served.since, 3),
            "swaps": len(swaps),
            "last_swap": swaps[-1] if swaps else None,
        },
    }


def image_job(served, body: bytes, content_type: Union[str, None], top_k: Union[int, None], config):
    """The work of one upload, run in the decode pool: validate, decode, preprocess."""
    model = served.model
    max_pixels, max_parts = config.max_pixels, config.max_multipart_parts

    def prepare():
        t0 = time.perf_counter()
        data = image_bytes(body, content_type, max_parts=max_parts)
        check_image(data, max_pixels)
        checked_ms = (time.perf_counter() - t0) * 1e3
        x, meta, timing = model.prepare(data)
        timing["decode"] = timing.get("decode", 0.0) + checked_ms

        def finish(outputs):
            return model.finish([o[0] for o in outputs], meta, top_k)

        return x[None], finish, timing

    return prepare


def _top_k(raw: Union[str, None]) -> Union[int, None]:
    if raw is None:
        return None
    value = int(raw) if raw.isascii() and raw.isdigit() else 0
    if not 1 <= value <= 1000:
        raise ApiError(422, f"top_k: expected an integer from 1 to 1000, got {raw!r}")
    return value


def create_vision_router(state) -> Routes:
    router = Routes(tag="vision")

    @router.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        created = int(state.metrics.started)
        data = [model_card(s, created, state.history(n)) for n, s in state.models.items()]
        if state.llm is not None:
            data.append(state.llm.model_card())
        return JSONResponse({"object": "list", "data": data})

    @router.get("/v1/models/{name}")
    async def get_model(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if state.llm is not None and name == state.llm.name:
            return JSONResponse(state.llm.model_card())
        if state.llm is None and name not in state.models:  # an OpenAI client asking for a language model
            from ..llm.refusals import not_loaded

            served = ", ".join(state.models) or "none"
            err = not_loaded(f"there is no model '{name[:100]}' here (vision models served: {served})")
            err.param = "model"
            raise err
        card = model_card(state.lookup(name), int(state.metrics.started), state.history(name))
        if getattr(state, "ota", None) is not None:
            card.update(state.ota.card(name))
        return JSONResponse(card)

    @router.post("/v1/models/{name}/predict", operation=predict_operation())
    async def predict(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        name = request.path_params["name"]
        top_k = _top_k(request.query_params.get("top_k"))
        if not state.lookup(name).model.takes_images:  # 404 / 400 before a byte of the body is read
            raise ApiError(400, f"model {name!r} takes tensors, not pictures; use POST /v2/models/{name}/infer")
        # The body is read whole (bounded in size and time by the Guard) before the request takes
        # a queue place: a client that stalls mid-upload holds a connection, never a model's queue.
        body = await read_body(request, state.config.max_upload_bytes)
        with state.admit(name) as served:  # the model this request runs on, even if a swap comes
            if not served.model.takes_images:
                raise ApiError(400, f"model {name!r} takes tensors, not pictures; use POST /v2/models/{name}/infer")
            job = image_job(served, body, request.headers.get("content-type"), top_k, state.config)
            output, timing = await served.worker.submit(job)
        total = time.perf_counter() - t0
        served.metrics.total.observe(total)
        timing["total"] = total * 1e3
        batch = timing.pop("batch_size", 1)
        return JSONResponse({
            "model": name,
            "version": served.model.version,
            "task": served.model.task.value,
            **output,
            "batch_size": batch,
            "timing_ms": {k: round(v, 3) for k, v in timing.items()},
        })

    return router
