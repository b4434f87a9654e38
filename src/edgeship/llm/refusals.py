"""How the OpenAI routes refuse: OpenAI's error body, one log line, and the routes' answers when
there is no model to serve them.

>>> refusal(OpenAIError(400, "Invalid 'stop'", param="stop"), "POST /v1/chat/completions")  # a JSONResponse
>>> Starlette(routes=[*create_no_llm_router()])   # a server without --llm: 404 model_not_loaded

A client's mistake is logged in one line at INFO, never with a traceback; the server's own failure
(a 5xx but 503, which is a full queue) at ERROR with the traceback of its cause.
"""

from __future__ import annotations

import logging
from typing import Any

from .openai_protocol import Endpoint, OpenAIError

_PATHS = {Endpoint.CHAT: "/v1/chat/completions", Endpoint.COMPLETION: "/v1/completions"}
log = logging.getLogger("edgeship.serve")


def refusal(exc: OpenAIError, what: str, cause: BaseException | None = None):
    """The JSON answer of a refused OpenAI request, and its log line: one line at INFO for a client's
    mistake (or a full queue), ERROR with the traceback of ``cause`` for the server's own failure."""
    from starlette.responses import JSONResponse

    log_refusal(exc, what, cause)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def log_refusal(exc: OpenAIError, what: str, cause: BaseException | None = None) -> None:
    failed = exc.status >= 500 and exc.status != 503
    message = exc.message if len(exc.message) <= 300 else exc.message[:300] + "..."
    log.log(logging.ERROR if failed else logging.INFO, "%s -> %d %s", what, exc.status, message,
            exc_info=cause if failed and cause is not None else None)


def not_loaded(what: str) -> OpenAIError:
    """The answer of an OpenAI route on a server started without ``--llm``."""
    return OpenAIError(404, f"no language model is loaded on this server, so {what}; start the server with one "
                            "(serve --llm MODEL: a .gguf file, a bundle folder, or smollm2)", code="model_not_loaded")


def embeddings_refused(service: Any) -> OpenAIError:
    """The answer of ``POST /v1/embeddings``: this server computes none (docs/llm.md says why)."""
    if service is None:
        return not_loaded("POST /v1/embeddings cannot be answered")
    return OpenAIError(
        400, f"this server does not compute embeddings: '{service.name}' is served for generation, and the "
             "hidden states of a chat model are not trained embeddings. Serve an embedding GGUF with llama.cpp's "
             "own server (llama-server -m MODEL.gguf --embedding) and point the client's embeddings at it.",
        param="model", code="embeddings_not_supported")


def create_no_llm_router():
    """OpenAI's routes on a server without ``--llm``: an OpenAI-shaped 404 that says how to load one."""
    from .._routes import Routes

    router = Routes(tag="llm")

    def refuse(path: str):
        async def endpoint(request):
            return refusal(not_loaded(f"POST {path} cannot be answered"), f"POST {path}")
        return endpoint

    for path in (*_PATHS.values(), "/v1/embeddings"):
        router.post(path, include_in_schema=False)(refuse(path))
    return router


__all__ = ["create_no_llm_router", "embeddings_refused", "log_refusal", "not_loaded", "refusal"]
