"""Triton's extensions of the KServe v2 protocol that its tools ask for before they infer.

    GET  /v2/models/{name}[/versions/{v}]/config   the model configuration (Triton's JSON of ModelConfig)
    GET  /v2/models[/{name}[/versions/{v}]]/stats  the statistics extension, from counters kept here
    POST /v2/repository/index                      every served model: name, version, state

>>> tritonclient.http.InferenceServerClient("127.0.0.1:8000").get_model_config("mobilenet")
{'name': 'mobilenet', 'platform': 'onnxruntime_onnx', 'max_batch_size': 4, 'input': [...], ...}

``perf_analyzer`` reads the configuration first ("failed to get model config" otherwise):
``max_batch_size`` is the most rows one run of the model takes (``--max-batch``, or 0 for a graph
exported with a fixed batch, whose dims then include the batch axis, as Triton's do).

The statistics are what the model's worker measured (serve/batching.py), per version, since the
server started, in Triton's units: a request's ``queue`` is its wait for a decode thread and then
for a batch; ``compute_input`` its decode and preprocessing; ``compute_infer`` the run of the batch
it was in; ``compute_output`` its postprocessing; ``success``/``fail`` the whole, from submission
to answer. ``execution_count`` counts model runs (a batch is one), ``inference_count`` rows.
"""

from __future__ import annotations

import json
from typing import Any, Union

from starlette.requests import Request
from starlette.responses import JSONResponse

from .._routes import Routes
from .errors import ApiError
from .kserve import _PLATFORMS, _v2_datatype, named
from .stats import ModelStats, VersionStats
from .upload import read_body

_FORMATS = {"NCHW": "FORMAT_NCHW", "NHWC": "FORMAT_NHWC"}
MAX_INDEX_BODY = 4096  # {"ready": true} and little else


def model_config(name: str, model, max_batch: int, max_wait_ms: float) -> dict[str, Any]:
    """Triton's model configuration (the JSON form of its ModelConfig message) of a served model."""
    layouts = {s.name: s.layout for s in model.bundle.manifest.inputs}
    dynamic = model.dynamic_batch
    skip = 1 if dynamic else 0  # with max_batch_size > 0, Triton's dims leave out the batch axis

    def dims(spec) -> list[int]:
        return [d if isinstance(d, int) else -1 for d in spec.shape[skip:]]

    def dtype(spec) -> str:
        v2 = _v2_datatype(spec.dtype)
        return "TYPE_STRING" if v2 == "BYTES" else f"TYPE_{v2}"

    backend = model.backend.value
    described = json.dumps(model.describe()).lower()
    gpu = backend == "tensorrt" or "cuda" in described or "tensorrt" in described
    config: dict[str, Any] = {
        "name": name,
        "platform": _PLATFORMS.get(backend, backend),
        "backend": backend,
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": max_batch if dynamic else 0,
        "input": [{"name": s.name, "data_type": dtype(s), "format": _FORMATS.get(layouts.get(s.name) or "", "FORMAT_NONE"),
                   "dims": dims(s), "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False}
                  for s in model.inputs],
        "output": [{"name": s.name, "data_type": dtype(s), "dims": dims(s), "label_filename": "",
                    "is_shape_tensor": False} for s in model.outputs],
        "instance_group": [{"name": name, "kind": "KIND_GPU" if gpu else "KIND_CPU", "count": 1}],
        "default_model_filename": model.bundle.manifest.model,
        "model_transaction_policy": {"decoupled": False},
        "parameters": {},
    }
    if dynamic:
        config["dynamic_batching"] = {"preferred_batch_size": [max_batch],
                                      "max_queue_delay_microseconds": int(max_wait_ms * 1000)}
    return config


def create_triton_router(state) -> Routes:
    """The routes above; list them before the KServe routes (``/v2/models/stats`` before ``{name}``)."""
    router = Routes(tag="kserve")

    def served_at(name: str, version: Union[str, None]):
        served = state.lookup(name)
        if version is not None and version != served.model.version:
            raise ApiError(404, f"model {name!r} has version {served.model.version!r}, not {version!r}")
        return served

    def stats_of(name: str) -> list[VersionStats]:
        served = state.lookup(name)
        stats: ModelStats | None = getattr(served.metrics, "stats", None)
        if stats is None:
            return []
        stats.version(served.model.version)  # the version serving now is listed before its first request
        return stats.versions()

    @router.get("/v2/models/stats")
    async def all_stats(request: Request) -> JSONResponse:
        return JSONResponse({"model_stats": [v.to_json() for name in state.models for v in stats_of(name)]})

    @router.get("/v2/models/{name}/stats")
    @router.get("/v2/models/{name}/versions/{version}/stats")
    async def model_stats(request: Request) -> JSONResponse:
        name, version = named(request)
        found = [v for v in stats_of(name) if version is None or v.version == version]
        if not found:
            raise ApiError(404, f"model {name!r} has served no version {version!r}")
        return JSONResponse({"model_stats": [v.to_json() for v in found]})

    @router.get("/v2/models/{name}/config")
    @router.get("/v2/models/{name}/versions/{version}/config")
    async def config(request: Request) -> JSONResponse:
        served = served_at(*named(request))
        c = state.config
        return JSONResponse(model_config(served.name, served.model, served.worker.capacity, c.max_wait_ms))

    @router.post("/v2/repository/index")
    async def index(request: Request) -> JSONResponse:
        body = await read_body(request, MAX_INDEX_BODY)
        ready_only = False
        if body.strip():
            try:
                req = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, f"repository index request is not valid JSON ({str(exc)[:200]})") from None
            if not isinstance(req, dict) or not isinstance(req.get("ready", False), bool):
                raise ApiError(400, 'repository index request must be an object like {"ready": true}')
            ready_only = req.get("ready", False)
        out = []
        report = await state.health.check()
        for name, served in list(state.models.items()):
            ok = bool(report["models"].get(name, {}).get("ok"))
            if ready_only and not ok:
                continue
            entry = {"name": name, "version": served.model.version, "state": "READY" if ok else "UNAVAILABLE"}
            if not ok:
                entry["reason"] = "the model's readiness check fails (see GET /health/ready)"
            out.append(entry)
        return JSONResponse(out)

    return router


__all__ = ["create_triton_router", "model_config"]
