"""The OpenAPI description of the server (/docs/openapi.json with ``--docs``), written from its routes.

>>> document(app.routes)["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]

Each route gives its path, method, path parameters, tag and docstring; the predict route, which
reads its own body (a picture, raw or in a multipart form) and takes ``top_k``, carries the
operation written here (``predict_operation``), with its bodies, answer and errors.
"""

from __future__ import annotations

from typing import Any

from ..bundle import Task
from .upload import ACCEPTED, FIELD

_BINARY = {"type": "string", "format": "binary"}
_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "integer"}}}},
}
_V2_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
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


def document(routes, title: str = "edgeship", version: str = "") -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``routes`` (edgeship._routes.Route; others and hidden ones are left out).
    3.0, not 3.1: the Swagger UI that swagger-ui-bundle packages (4.15) renders nothing of a 3.1 document."""
    from .._routes import Route

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(route.path, {})[method.lower()] = route.operation or _operation(route, method)
    return {"openapi": "3.0.3", "info": {"title": title, "version": version}, "paths": paths,
            "components": {"schemas": {"Prediction": _PREDICTION, "Error": _ERROR, "V2Error": _V2_ERROR}}}


def _operation(route, method: str) -> dict[str, Any]:
    import inspect

    name = route.endpoint.__name__
    error = "V2Error" if route.path.startswith("/v2") else "Error"  # serve/errors.py: /v2 answers Triton's shape
    op: dict[str, Any] = {
        "summary": name.replace("_", " ").capitalize(),
        "operationId": f"{name}_{method.lower()}_{route.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in route.param_convertors],
        "responses": {"200": {"description": "Successful Response"},
                      "default": {"description": "an error", "content": {"application/json": {
                          "schema": {"$ref": f"#/components/schemas/{error}"}}}}},
    }
    if route.tag:
        op["tags"] = [route.tag]
    if doc := inspect.getdoc(route.endpoint):
        op["description"] = doc
    return op


def swagger_page(openapi_url: str, assets: str, title: str) -> str:
    """Swagger UI's page, its script and stylesheet from ``assets`` (served from the device); no
    validator badge, which would send the document to swagger.io."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"><link rel="icon" href="{assets}/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "{openapi_url}", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset], layout: "BaseLayout"}})</script>
</body></html>
"""


__all__ = ["document", "predict_operation", "swagger_page"]
