"""uvicorn with the limits a server facing a network needs: header size and time, idle, connections.

>>> run_server(app, config, host="127.0.0.1", port=8000)

uvicorn's httptools protocol (the fast one) buffers a request line and headers of any size, and
waits for them forever: one client sending a 500 MB header, or a few hundred sending a byte a
minute, takes memory or every connection. ``protocol_for(config)`` is a small subclass that

- counts the bytes of a request until its headers are complete, and answers 431 past
  ``max_header_bytes`` (a connection holds at most that plus one read, 256 KB, of header bytes);
- gives a request ``header_timeout_s`` from its first byte (a new connection: from connecting) to
  complete its headers, then answers 408 and closes (a silent connection is just closed);
- gives a request body ``body_timeout_s`` between two chunks (only while the server is reading:
  a pause the app causes does not count), then answers 408 and closes, and the route waiting for
  the body sees the client gone;
- closes a connection whose response went out before its request body was read whole, instead of
  reading and dropping the rest (a slow client would hold it open while it trickles).

uvicorn itself caps open connections (``limit_concurrency``: 503 past it) and closes idle
keep-alive connections (``timeout_keep_alive``). Body sizes are the Guard's (serve/guard.py),
which sees the routes. The deadlines are kept with one timer per request that re-arms itself
from the time of the last bytes, so a request costs no timer operation per chunk.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger("edgeship.serve")

# After answering 408/431 the server reads and drops what the client still sends, up to this long
# and this much, before it closes (see _linger).
LINGER_S = 2.0
LINGER_BYTES = 4 << 20


def protocol_for(config: Any) -> type:
    """uvicorn's HttpToolsProtocol with ``config``'s header limits (a class, as uvicorn's ``http`` takes)."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    max_header_bytes = config.max_header_bytes
    header_timeout_s = config.header_timeout_s
    body_timeout_s = config.body_timeout_s

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._awaiting_headers = True
            self._header_bytes = 0
            self._received_any = False
            self._header_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            self._body_pending = False
            self._last_body = 0.0
            self._lingering = False
            self._lingered = 0

        # -- the header deadline --------------------------------------------------------------

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self._awaiting_headers or self.transport.is_closing():
                return
            if self._received_any:
                self._refuse(408, f"request headers not complete within {header_timeout_s:g} s")
            else:  # connected and said nothing: no request to answer
                self.transport.close()

        # -- the body deadline ----------------------------------------------------------------

        def _body_timeout(self) -> None:
            self._body_timer = None
            if not self._body_pending or self.transport.is_closing():
                return
            now = self.loop.time()
            if self.flow.read_paused:  # the app has not read what came: waiting on us, not the client
                self._last_body = now
            idle = now - self._last_body
            if idle < body_timeout_s:
                self._body_timer = self.loop.call_later(body_timeout_s - idle, self._body_timeout)
                return
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                self._refuse(408, f"no request body bytes for {body_timeout_s:g} s; send the body without pauses",
                             force=True)
            else:
                self.transport.close()
            if cycle is not None:  # the route waiting in receive() sees the client gone
                cycle.disconnected = True
                cycle.message_event.set()

        def _refuse(self, status: int, message: str, force: bool = False) -> None:
            log.info("refused a connection from %s: %d %s", self.client[0] if self.client else "?", status, message)
            if self.cycle is not None and not self.cycle.response_complete and not force:
                self.transport.close()  # an earlier request's answer is under way: do not interleave
                return
            body = json.dumps({"error": {"message": message, "type": "bad_request", "code": status}}).encode()
            self.transport.write(b"".join([
                STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: ", str(len(body)).encode(), b"\r\n", b"connection: close\r\n\r\n", body,
            ]))
            self._linger()

        def _linger(self) -> None:
            """Close after the answer, but read and drop what the client still sends for a moment first.

            Closing a socket with unread bytes in it sends a reset, and a reset makes the client's
            system drop our answer before the client reads it: a client sending a 1 MB header would
            see "connection reset" instead of 431 (nginx's lingering_close does the same).
            """
            self._lingering = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

        # -- asyncio.Protocol ---------------------------------------------------------------

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._body_pending = False
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                self._lingered += len(data)
                if self._lingered > LINGER_BYTES:
                    self.transport.close()
                return
            self._received_any = True
            if self._awaiting_headers:
                self._header_bytes += len(data)
            super().data_received(data)
            if self._awaiting_headers and self._header_bytes > max_header_bytes and not self.transport.is_closing():
                self._refuse(431, f"request line and headers are over {max_header_bytes:,} bytes")

        # -- parser callbacks ---------------------------------------------------------------

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._awaiting_headers:  # the next request on this connection
                self._awaiting_headers, self._header_bytes = True, 0
            self._arm()

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            self._disarm()
            super().on_headers_complete()
            self._body_pending = True  # until on_message_complete (at once for a request without a body)
            self._last_body = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(body_timeout_s, self._body_timeout)

        def on_body(self, body: bytes) -> None:
            self._last_body = self.loop.time()
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._body_pending = False
            super().on_message_complete()

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()
            if cycle is not None and cycle.more_body and not self.transport.is_closing():
                self.transport.close()  # answered before the body was read whole: do not drain it

    return GuardedHttpToolsProtocol


def server_config(app: Any, config: Any, host: str, port: int, log_level: str = "info", **uvicorn_kw: Any):
    """The uvicorn.Config of ``edgeship serve``: the guarded protocol, the connection cap, the idle timeout."""
    import uvicorn

    return uvicorn.Config(
        app, host=host, port=port, http=protocol_for(config), limit_concurrency=config.max_connections,
        timeout_keep_alive=config.keep_alive_s, timeout_graceful_shutdown=int(config.shutdown_timeout_s),
        log_level=log_level, ws="none",  # no WebSocket routes: not importing a WebSocket protocol saves its memory
        **uvicorn_kw,
    )


def run_server(app: Any, config: Any, host: str, port: int, log_level: str = "info", **uvicorn_kw: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (uvicorn's graceful shutdown)."""
    import uvicorn

    uvicorn.Server(server_config(app, config, host, port, log_level, **uvicorn_kw)).run()
