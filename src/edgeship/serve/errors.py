"""HTTP errors: every failure leaves as JSON with a status that says whose fault it was.

/v1 and the rest answer the OpenAI error shape, which the ``openai`` client parses::

    {"error": {"message": "...", "type": "unsupported_media_type", "code": 415}}

/v2 answers the Open Inference Protocol's ``{"error": "..."}``, which Triton's client reads.

A client's mistake (any EdgeshipError that maps to a 4xx: bad input, a limit, an unknown model)
is answered by a handler that logs one line and no traceback; only an unexpected exception is a
500 whose traceback goes to the log (once, by the server).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import BackendError, BundleError, EdgeshipError, InputError, LimitError, RequestError

log = logging.getLogger("edgeship.serve")

_TYPES = {
    400: "invalid_request", 401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed",
    408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
    431: "headers_too_large", 500: "internal_error", 503: "unavailable",
}


class ApiError(RequestError):
    """An error with an HTTP status; raised in handlers and in the decode/inference threads."""

    def __init__(self, status: int, message: str, kind: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(status, message)
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
    if isinstance(exc, RequestError):  # another kind of refusal (an OpenAIError): its status is kept
        return ApiError(exc.status, exc.message, headers=getattr(exc, "headers", None))
    if isinstance(exc, LimitError):
        return ApiError(413, str(exc), "image_too_large")
    if isinstance(exc, InputError):
        return ApiError(400, str(exc))
    if isinstance(exc, BackendError):  # its session was freed: a swap timed out waiting for it
        log.warning("request ran into a closed model: %s", exc)
        return ApiError(503, f"the model was replaced while this request waited; retry ({exc})", "unavailable",
                        {"Retry-After": "1"})
    if isinstance(exc, BundleError):
        log.error("model misconfigured: %s", exc)
        return ApiError(500, f"the model cannot answer: {exc}")
    return ApiError(500, f"internal error ({type(exc).__name__}); see the server log")


def error_body(path: str, err: ApiError) -> dict[str, Any]:
    if path.startswith("/v2"):
        return {"error": err.message}
    return {"error": {"message": err.message, "type": err.kind, "code": err.status}}


def error_response(request: Request, err: ApiError) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, err), status_code=err.status, headers=err.headers)


def _logged(request: Request, err: ApiError) -> ApiError:
    """One line per refused request, at most 300 characters of message, never a traceback."""
    level = logging.ERROR if err.status >= 500 and err.status != 503 else logging.INFO
    path = request.url.path
    log.log(level, "%s %s -> %d %s", request.method, path if len(path) <= 200 else path[:200] + "...",
            err.status, err.message if len(err.message) <= 300 else err.message[:300] + "...")
    return err


def install_handlers(app: Starlette) -> None:
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, _logged(request, exc))

    # Registered for EdgeshipError (not only Exception), so that Starlette's ExceptionMiddleware
    # answers it: the catch-all below runs in ServerErrorMiddleware, which re-raises after
    # answering, and the server then logs a traceback for what was a client's mistake.
    async def _edgeship(request: Request, exc: EdgeshipError) -> JSONResponse:
        return error_response(request, _logged(request, as_api_error(exc)))

    from ..llm.openai_protocol import OpenAIError

    async def _openai(request: Request, exc: OpenAIError) -> JSONResponse:
        from ..llm.refusals import refusal

        return refusal(exc, f"{request.method} {request.url.path[:200]}")

    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        return error_response(request, _logged(request, err))

    async def _any(request: Request, exc: Exception) -> JSONResponse:
        # A bug: 500, and the server logs this exception's traceback (once) as Starlette re-raises it.
        return error_response(request, as_api_error(exc))

    for kind, handler in ((ApiError, _api), (EdgeshipError, _edgeship), (OpenAIError, _openai),
                          (StarletteHTTPException, _http), (Exception, _any)):
        app.add_exception_handler(kind, handler)  # type: ignore[arg-type]
