"""HTTP errors: every failure leaves as JSON with a status that says whose fault it was.

/v1 and the rest answer the OpenAI error shape, which the ``openai`` client parses::

    {"error": {"message": "...", "type": "unsupported_media_type", "code": 415}}

/v2 answers the Open Inference Protocol's ``{"error": "..."}``, which Triton's client reads.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BackendError, BundleError, EdgeshipError, InputError

log = logging.getLogger("edgeship.serve")

_TYPES = {
    400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "invalid_request", 500: "internal_error", 503: "unavailable",
}


class ApiError(EdgeshipError):
    """An error with an HTTP status; raised in handlers and in the decode/inference threads."""

    def __init__(self, status: int, message: str, kind: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind or _TYPES.get(status, "error")
        self.headers = headers or {}


class UploadError(ApiError, InputError):
    """A request body that is not an acceptable image (size, type, pixels, corruption)."""


class Overloaded(ApiError):
    """The model's queue is full, or the server is shutting down: 503 with Retry-After."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(503, message, "overloaded", {"Retry-After": str(retry_after_s)})


def as_api_error(exc: BaseException) -> ApiError:
    """Translate anything raised while serving into an ApiError (logging the unexpected)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InputError):
        return ApiError(400, str(exc))
    if isinstance(exc, BackendError):  # its session was freed: a swap timed out waiting for it
        log.warning("request ran into a closed model: %s", exc)
        return ApiError(503, f"the model was replaced while this request waited; retry ({exc})", "unavailable",
                        {"Retry-After": "1"})
    if isinstance(exc, BundleError):
        log.error("model misconfigured: %s", exc)
        return ApiError(500, f"the model cannot answer: {exc}")
    log.error("unexpected error while serving", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log")


def error_response(request: Request, err: ApiError) -> JSONResponse:
    body: dict[str, Any]
    if request.url.path.startswith("/v2"):
        body = {"error": err.message}
    else:
        body = {"error": {"message": err.message, "type": err.kind, "code": err.status}}
    return JSONResponse(body, status_code=err.status, headers=err.headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return error_response(request, ApiError(422, "; ".join(parts) or "invalid request"))

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, as_api_error(exc))
