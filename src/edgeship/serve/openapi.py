"""The OpenAPI description of ``POST /v1/models/{name}/predict``, which FastAPI cannot see.

>>> document_predict(app)              # app.openapi() (and /docs/openapi.json) now lists predict

The predict route is a plain Starlette route (serve/vision.py says why) that reads its body itself,
whole and bounded, before taking a queue place; FastAPI documents only its own routes. So the
operation is written here, once, and merged into the schema FastAPI generates: the route's way of
reading the body does not change.
"""

from __future__ import annotations

from typing import Any

from ..bundle import Task
from .upload import ACCEPTED, FIELD

PATH = "/v1/models/{name}/predict"
_BINARY = {"type": "string", "format": "binary"}
_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}}}},
}
_LABELLED = {"index": {"type": "integer"}, "label": {"type": "string"}, "score": {"type": "number"}}
_PREDICTION = {
    "type": "object", "required": ["model", "version", "task", "batch_size", "timing_ms"],
    "properties": {
        "model": {"type": "string"}, "version": {"type": "string"},
        "task": {"type": "string", "enum": [t.value for t in Task]},
        "classes": {"type": "array", "description": "classify: the top_k classes, best first",
                    "items": {"type": "object", "properties": _LABELLED}},
        "detections": {"type": "array", "description": "detect: boxes [x1, y1, x2, y2] in the picture's pixels",
                       "items": {"type": "object", "properties": {
                           **_LABELLED, "box": {"type": "array", "items": {"type": "number"}, "minItems": 4,
                                                "maxItems": 4}}}},
        "batch_size": {"type": "integer", "description": "rows in the model run this request was part of"},
        "timing_ms": {"type": "object", "additionalProperties": {"type": "number"},
                      "description": "queue, decode, preprocess, infer, postprocess, total"},
    },
}
_ERRORS = {
    "400": "not a picture this model takes: truncated or corrupt, or the model takes tensors (use /v2)",
    "401": "an API key is set and the request has none, or a wrong one",
    "404": "no model of that name is served",
    "413": "the body or the picture's pixels are over the server's limits",
    "415": f"the body is not a {ACCEPTED} picture",
    "422": f"top_k is not 1 to 1000, or a multipart upload has no '{FIELD}' field",
    "503": "the model's queue is full or the server is stopping; retry after Retry-After seconds",
}


def predict_operation() -> dict[str, Any]:
    """The OpenAPI 3 operation object of the predict route."""
    raw = {"schema": _BINARY}
    return {
        "tags": ["vision"],
        "summary": "Predict on one picture",
        "description": (f"The picture is the body itself ({ACCEPTED}), or the '{FIELD}' field of a multipart "
                        "form (curl -F file=@cat.jpg). It is read whole, within the upload limit, before the "
                        "request takes a place in the model's queue."),
        "operationId": "predict",
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the served model (GET /v1/models lists them)"},
            {"name": "top_k", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
             "description": "classes or detections to answer (default: the bundle's)"},
        ],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": [FIELD],
                                               "properties": {FIELD: _BINARY}}},
            "image/jpeg": raw, "image/png": raw, "image/webp": raw, "application/octet-stream": raw,
        }},
        "responses": {
            "200": {"description": "the model's answer and where the time went",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}}},
            **{code: {"description": why, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}} for code, why in _ERRORS.items()},
        },
    }


def document_predict(app) -> None:
    """Merge the predict operation into ``app.openapi()`` (computed once, then cached by FastAPI)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("paths", {})[PATH] = {"post": predict_operation()}
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.update({"Prediction": _PREDICTION, "Error": _ERROR})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


__all__ = ["PATH", "document_predict", "predict_operation"]
