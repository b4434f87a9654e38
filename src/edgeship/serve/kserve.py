"""KServe v2 / Open Inference Protocol REST, so Triton's and KServe's clients work unchanged.

    GET  /v2                      GET /v2/health/live      GET /v2/health/ready
    GET  /v2/models/{name}[/versions/{v}]          model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer    JSON tensors, or Triton's binary tensor extension

Triton's model configuration, statistics and repository index: serve/triton.py.

The tensors are the model's raw input and outputs (no image decoding); they go through the same
bounded queue and micro-batches as /v1. Supported extensions: ``binary_tensor_data`` (the
``Inference-Header-Content-Length`` split), ``classification`` (top-k as BYTES "score:index:label")
and gzip/deflate request bodies.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
import zlib
from typing import Any, Union

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import __version__
from .._routes import Routes
from ..util import json_depth
from .errors import ApiError
from .upload import read_body

DATATYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
_NUMPY_TO_V2 = {np.dtype(v): k for k, v in DATATYPES.items()}
# KServe's platform names (Triton's spelling) of each backend; others answer the backend's name.
_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "litert": "tensorflow_lite",
              "openvino": "openvino"}
HEADER_LENGTH = "inference-header-content-length"


def _v2_datatype(dtype: str) -> str:
    try:
        return _NUMPY_TO_V2.get(np.dtype(dtype), dtype)
    except TypeError:  # a type numpy has no name for: say it as the backend does
        return dtype


def _tensor_meta(spec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": _v2_datatype(spec.dtype),
        "shape": [d if isinstance(d, int) else -1 for d in spec.shape],
    }


def model_metadata(name: str, model) -> dict[str, Any]:
    return {
        "name": name,
        "versions": [model.version],
        "platform": _PLATFORMS.get(model.backend.value, model.backend.value),
        "inputs": [_tensor_meta(s) for s in model.inputs],
        "outputs": [_tensor_meta(s) for s in model.outputs],
    }


def _decompress(body: bytes, encoding: Union[str, None], limit: int) -> bytes:
    if not encoding or encoding.strip().lower() == "identity":
        return body
    enc = encoding.strip().lower()
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(enc)
    if wbits is None:
        raise ApiError(415, f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)  # a compression bomb stops at the limit
    except zlib.error as exc:
        raise ApiError(400, f"request body is not valid {enc} ({exc})") from exc
    if len(out) > limit or d.unconsumed_tail:
        raise ApiError(413, f"decompressed request is over the limit of {limit:,} bytes")
    return out


def parse_request(body: bytes, header_length: Union[str, None],
                  max_depth: int = 32) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON header and the input arrays by name, from a JSON or binary-extension body.

    Every malformed request is an ApiError 400 naming what is wrong: JSON nested deeper than
    ``max_depth`` (checked before parsing: the parser recurses per level), a shape whose element
    count is beyond what the body can hold, data that does not fill the shape.
    """
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ApiError(400, f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
        if not 0 < n <= len(body):
            raise ApiError(400, f"Inference-Header-Content-Length {n} does not fit the {len(body)}-byte body")
        head, binary = body[:n], memoryview(body)[n:]
    else:
        head, binary = body, memoryview(b"")
    if json_depth(head, max_depth) > max_depth:
        raise ApiError(400, f"inference request nests arrays and objects more than {max_depth} levels deep")
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"inference request is not valid JSON ({str(exc)[:200]})") from exc
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or not req["inputs"]:
        raise ApiError(400, "inference request needs a non-empty 'inputs' list")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, spec in enumerate(req["inputs"]):
        if not isinstance(spec, dict):
            raise ApiError(400, f"inputs[{i}] must be an object")
        name, shape, dt = spec.get("name"), spec.get("shape"), spec.get("datatype")
        if not isinstance(name, str):
            raise ApiError(400, f"inputs[{i}].name must be a string")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ApiError(400, f"inputs[{i}].shape must be a list of non-negative integers, got {shape!r}")
        if dt not in DATATYPES:
            raise ApiError(400, f"inputs[{i}].datatype {dt!r} is not supported (use one of {', '.join(DATATYPES)})")
        dtype = np.dtype(DATATYPES[dt])
        count = math.prod(shape)  # exact: numpy's product would wrap around past 2**63
        if count * dtype.itemsize > max(len(body), 1) * 8:
            # No body can fill it: JSON needs at least 2 bytes a value, binary data its itemsize.
            raise ApiError(400, f"inputs[{i}].shape {shape[:8]} holds {count:,} values, more than the "
                                f"{len(body):,}-byte request can carry")
        params = spec.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        try:
            if size is not None:
                if not isinstance(size, int) or size != count * dtype.itemsize or offset + size > len(binary):
                    raise ApiError(400, f"inputs[{i}]: binary_data_size {size!r} does not match shape {shape} {dt}")
                arr = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
                offset += size
            elif "data" in spec:
                arr = np.asarray(spec["data"], dtype=dtype)
                if arr.size != count:
                    raise ApiError(400, f"inputs[{i}]: {arr.size} values do not fill shape {shape}")
                arr = arr.reshape(shape)
            else:
                raise ApiError(400, f"inputs[{i}] has neither 'data' nor parameters.binary_data_size")
        except (ValueError, TypeError, OverflowError) as exc:
            raise ApiError(400, f"inputs[{i}].data cannot be read as {dt} ({str(exc)[:120]})") from exc
        arrays[name] = arr
    return req, arrays


def input_tensor(name: str, model, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The model's one input, checked against its TensorSpec (shape and type)."""
    spec = model.inputs[0]
    if spec.name not in arrays:
        raise ApiError(400, f"model {name!r} takes input {spec.name!r}; got {', '.join(map(repr, arrays))}")
    x = arrays[spec.name]
    want = spec.shape
    if x.ndim != len(want) or any(isinstance(d, int) and d != s for d, s in zip(want[1:], x.shape[1:])):
        shape = [d if isinstance(d, int) else -1 for d in want]
        raise ApiError(400, f"input {spec.name!r} must have shape {shape}, got {list(x.shape)}")
    if x.shape[0] == 0:
        raise ApiError(400, "input has a batch of 0 rows")
    if isinstance(want[0], int) and x.shape[0] != want[0]:
        raise ApiError(400, f"model {name!r} was exported with a fixed batch of {want[0]}, got {x.shape[0]}")
    if x.dtype != model.input_dtype:
        expected = _v2_datatype(spec.dtype)
        raise ApiError(400, f"input {spec.name!r} must be {expected}, got {_NUMPY_TO_V2.get(x.dtype, x.dtype)}")
    return x


def _classification(arr: np.ndarray, k: int, labels: Union[list[str], None]) -> np.ndarray:
    """Triton's classification extension: per row, top-k "score:index[:label]" strings."""
    rows = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
    k = max(1, min(int(k), rows.shape[1]))
    out = np.empty((rows.shape[0], k), dtype=object)
    for r, row in enumerate(rows):
        idx = np.argsort(-row, kind="stable")[:k]
        for j, i in enumerate(idx):
            label = f":{labels[i]}" if labels and i < len(labels) else ""
            out[r, j] = f"{float(row[i]):f}:{int(i)}{label}".encode()
    return out


def _json_values(arr: np.ndarray) -> list:
    """The tensor's values for JSON: NaN and infinities become null (JSON has no literal for them;
    ``NaN`` would make strict parsers, JavaScript's among them, reject the whole answer)."""
    values = arr.reshape(-1).tolist()
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        values = [v if math.isfinite(v) else None for v in values]
    return values


def encode_response(name: str, model, req: dict, outputs: list[np.ndarray]) -> tuple[bytes, dict[str, str], str]:
    """Body, headers and media type of an inference response (JSON, or JSON + binary tensors)."""
    names = [o.name for o in model.outputs]
    by_name = dict(zip(names, outputs))
    raw = req.get("parameters")
    params = raw if isinstance(raw, dict) else {}
    binary_default = bool(params.get("binary_data_output", False))
    wanted = req.get("outputs")
    if wanted is None:
        wanted = [{"name": n} for n in names]
    if not isinstance(wanted, list):
        raise ApiError(400, "'outputs' must be a list")
    if len(wanted) > len(names):  # each named once at most: a repeated name would repeat the tensor
        raise ApiError(400, f"'outputs' names {len(wanted)} outputs; the model has {len(names)}")
    meta: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for i, spec in enumerate(wanted):
        if not isinstance(spec, dict) or spec.get("name") not in by_name:
            got = spec.get("name") if isinstance(spec, dict) else spec
            raise ApiError(400, f"outputs[{i}]: unknown output {got!r} (model outputs: {', '.join(names)})")
        raw = spec.get("parameters")
        p = raw if isinstance(raw, dict) else {}
        arr = np.asarray(by_name[spec["name"]])
        binary = bool(p.get("binary_data", binary_default))
        k = p.get("classification")
        if k is not None and k is not False and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ApiError(400, f"outputs[{i}].parameters.classification must be a positive integer, got {k!r}")
        if k:
            strings = _classification(arr, k, model.bundle.labels)
            entry = {"name": spec["name"], "datatype": "BYTES", "shape": list(strings.shape)}
            if binary:
                raw = b"".join(struct.pack("<I", len(s)) + s for s in strings.reshape(-1))
                entry["parameters"] = {"binary_data_size": len(raw)}
                chunks.append(raw)
            else:
                entry["data"] = [s.decode() for s in strings.reshape(-1)]
        else:
            entry = {"name": spec["name"], "datatype": _NUMPY_TO_V2.get(arr.dtype, "FP32"), "shape": list(arr.shape)}
            if binary:
                raw = np.ascontiguousarray(arr).tobytes()
                entry["parameters"] = {"binary_data_size": len(raw)}
                chunks.append(raw)
            else:
                entry["data"] = _json_values(arr)
        meta.append(entry)
    response: dict[str, Any] = {"model_name": name, "model_version": model.version, "outputs": meta}
    if "id" in req:
        response["id"] = req["id"]
    head = json.dumps(response, separators=(",", ":"), allow_nan=False).encode()  # strict JSON, always
    if not chunks:
        return head, {}, "application/json"
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(len(head))}, "application/octet-stream"


def named(request: Request) -> tuple[str, Union[str, None]]:
    """A /v2 route's model name and, when the path has one, its version."""
    return request.path_params["name"], request.path_params.get("version")


def create_kserve_router(state) -> Routes:
    router = Routes(tag="kserve")

    def check_version(served, version: Union[str, None]):
        if version is not None and version != served.model.version:
            raise ApiError(404, f"model {served.name!r} has version {served.model.version!r}, not {version!r}")
        return served

    def lookup(name: str, version: Union[str, None]):
        return check_version(state.lookup(name), version)

    @router.get("/v2")
    async def server_metadata(request: Request) -> JSONResponse:
        return JSONResponse({"name": "edgeship", "version": __version__,
                             "extensions": ["binary_tensor_data", "classification", "model_configuration",
                                            "statistics"]})

    @router.get("/v2/health/live")
    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    @router.get("/v2/health/ready")
    async def ready(request: Request) -> JSONResponse:
        report = await state.health.check()
        ok = report["status"] == "ready"
        return JSONResponse({"ready": ok, "status": report["status"], "reasons": report["reasons"]},
                            status_code=200 if ok else 503)

    @router.get("/v2/models/{name}")
    @router.get("/v2/models/{name}/versions/{version}")
    async def metadata(request: Request) -> JSONResponse:
        served = lookup(*named(request))
        return JSONResponse(model_metadata(served.name, served.model))

    @router.get("/v2/models/{name}/ready")
    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(request: Request) -> JSONResponse:
        name, version = named(request)
        lookup(name, version)
        ok = await state.health.model_ready(name)
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @router.post("/v2/models/{name}/infer")
    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(request: Request) -> Response:
        t0 = time.perf_counter()
        name, version = named(request)
        limit = state.config.max_upload_bytes
        depth = state.config.max_json_depth
        lookup(name, version)  # 404 before a byte of the body is read
        # The body is read whole (bounded in size and time by the Guard) before the request takes
        # a queue place: a client that stalls mid-upload holds a connection, never a model's queue.
        body = await read_body(request, limit)
        with state.admit(name) as served:  # the model this request runs on, even if a swap comes
            check_version(served, version)
            model = served.model
            encoding = request.headers.get("content-encoding")
            header_length = request.headers.get(HEADER_LENGTH)
            parsed: dict[str, Any] = {}

            def prepare():
                t = time.perf_counter()
                req, arrays = parse_request(_decompress(body, encoding, limit), header_length, depth)
                parsed["req"] = req
                x = input_tensor(name, model, arrays)
                if x.shape[0] > served.worker.capacity:  # one run takes at most this: the memory plan's bound
                    raise ApiError(400, f"inference request batch-size must be <= {served.worker.capacity} for "
                                        f"{name!r}, got {x.shape[0]} (the server's --max-batch, --max-batch-mb)")
                return x, (lambda outputs: outputs), {"decode": (time.perf_counter() - t) * 1e3}

            outputs, _timing = await served.worker.submit(prepare)
            loop = asyncio.get_running_loop()
            content, headers, media = await loop.run_in_executor(
                state.prep_pool, encode_response, name, model, parsed["req"], outputs
            )
        served.metrics.total.observe(time.perf_counter() - t0)
        return Response(content, headers=headers, media_type=media)

    return router
