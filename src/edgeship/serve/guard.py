"""The door of the app: API key, body size and body deadlines, checked before any route runs.

>>> app.add_middleware(Guard, config=config, keys=load_api_keys("key.txt"))

The deadlines (headers, body chunks) are the server's: serve/server.py.

An ASGI middleware, so it sees every request, whatever route it is for:

- API key: when keys are set, every route but health, metrics, the dashboard and the docs needs
  ``Authorization: Bearer KEY`` (what the OpenAI client sends as its api_key); the comparison is
  constant-time (``hmac.compare_digest``). 401 with a JSON error otherwise.
- Body size: a declared ``Content-Length`` over the route's limit is a 413 before a byte is read;
  a chunked body is counted as it arrives and cut off at the limit. The LLM routes have their own,
  smaller limit (``llm_max_body_bytes``); the rest ``max_upload_bytes``.
- Buffered bytes: the bytes of bodies received and not yet answered, all requests together, stay
  under ``max_body_buffer_bytes`` (503 with Retry-After past it): routes read bodies whole before
  taking a queue place, so without this a thousand slow uploads would each hold their bytes.

Each refusal closes the connection (``Connection: close``), so an unread body is never drained.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import InputError
from .errors import ApiError, error_body

log = logging.getLogger("edgeship.serve")

# Routes anyone may call when an API key is set: a load balancer, Prometheus or a browser showing
# the dashboard (which polls /status) has no key. They read state; none runs a model.
OPEN_PATHS = ("/health/live", "/health/ready", "/metrics", "/v2/health/live", "/v2/health/ready", "/", "/status")
OPEN_PREFIXES = ("/docs/", "/static/")  # with /docs itself: only there when --docs is on
# Routes with a key of their own: the admin API checks its token (--admin-token-file) itself.
OWN_KEY_PREFIXES = ("/admin/",)
LLM_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MIN_KEY_CHARS = 16


def load_api_keys(path: str | os.PathLike) -> tuple[bytes, ...]:
    """The keys in ``path``, one per line (several allow a rotation); InputError when there is none fit to use."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--api-key-file {path}: cannot be read ({exc})") from exc
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise InputError(f"--api-key-file {path}: holds no key (one per line)")
    short = [k for k in keys if len(k) < MIN_KEY_CHARS or not k.isascii() or any(c.isspace() for c in k)]
    if short:
        raise InputError(f"--api-key-file {path}: a key must be at least {MIN_KEY_CHARS} ASCII characters without "
                         "spaces; make one with: openssl rand -hex 32")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("api key file %s is readable by other users; chmod 600 it", path)
    return tuple(k.encode("ascii") for k in keys)


class Refused(ApiError):
    """A request the guard turns away; raised from ``receive`` inside a route, the app's ApiError handler answers it."""


@dataclass
class _Body:
    """One request's body as the guard has seen it so far."""

    more: bool  # a body part is still to come
    size: int = 0
    held: int = 0  # bytes counted in Guard.buffered until the request ends
    started: bool = False  # the response has begun: a refusal can no longer be sent


class Guard:
    """ASGI middleware; see the module's docstring."""

    def __init__(self, app: Any, config: Any, keys: Iterable[bytes] = ()):
        self.app = app
        self.config = config
        self.keys = tuple(keys)
        self.buffered = 0  # body bytes held by requests in progress (the event loop only)

    def limit_for(self, path: str) -> int:
        return self.config.llm_max_body_bytes if path in LLM_PATHS else self.config.max_upload_bytes

    def _authorised(self, scope: dict) -> bool:
        path = scope.get("path", "")
        if (not self.keys or path in OPEN_PATHS or path == "/docs" or path.startswith(OPEN_PREFIXES)
                or path.startswith(OWN_KEY_PREFIXES)):
            return True
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = token.strip()
                break
        # Every key is compared, match or not, so the time taken says nothing about which matched.
        ok = False
        for key in self.keys:
            ok |= hmac.compare_digest(given, key)
        return ok and bool(given)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if not self._authorised(scope):
            await _refuse(scope, send, Refused(
                401, "a valid API key is needed: send 'Authorization: Bearer KEY'", "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"}))
            return
        limit = self.limit_for(path)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, Refused(
                413, f"request body is {declared:,} bytes, over the limit of {limit:,} bytes", "payload_too_large"))
            return
        has_body = (declared or 0) > 0 or any(name == b"transfer-encoding" for name, _ in scope.get("headers", ()))
        state = _Body(more=has_body)
        budget = self.config.max_body_buffer_bytes

        async def guarded_receive() -> dict:
            message = await receive()
            if not state.more:
                return message
            if message["type"] != "http.request":
                state.more = False
                return message
            n = len(message.get("body", b""))
            state.size += n
            state.more = message.get("more_body", False)
            if state.size > limit:
                raise Refused(413, f"request body is over the limit of {limit:,} bytes", "payload_too_large")
            if self.buffered + n > budget:
                raise Refused(
                    503, f"the server holds {self.buffered:,} bytes of request bodies, its limit; retry shortly",
                    "overloaded", headers={"Retry-After": str(self.config.retry_after_s)})
            self.buffered += n
            state.held += n
            return message

        async def guarded_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state.started = True
                if state.more:  # answered before the body was read whole: do not drain the rest
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Refused as exc:
            if state.started:
                raise
            await _refuse(scope, send, exc)
        finally:
            self.buffered -= state.held


def _content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(scope: dict, send: Any, exc: Refused) -> None:
    body = json.dumps(error_body(scope.get("path", ""), exc)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    log.info("refused %s %s: %d %s", scope.get("method", ""), scope.get("path", "")[:200], exc.status, exc.message)
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
