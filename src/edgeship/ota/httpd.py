"""A static file server with HTTP Range, for a repository's ``public/`` folder (demos, tests, a LAN).

>>> server = RepoServer("fleet-repo/public", port=0).start()   # a thread; port 0 picks a free port
>>> server.url
'http://127.0.0.1:40123'
>>> server.stop()

``python -m http.server`` ignores Range, so an interrupted download could only start over; this
one answers ``Range: bytes=N-`` and ``bytes=N-M`` with 206. In production any web server or
object store (nginx, S3, Caddy) serves the same folder.
"""

from __future__ import annotations

import http.server
import os
import re
import threading
from functools import partial
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """GET/HEAD of files under ``directory``, with single byte ranges."""

    protocol_version = "HTTP/1.1"  # keep-alive: one connection for a whole update
    # headers and body go out in two writes: with Nagle on, each small response waited for the
    # client's delayed ACK (measured: 53 ms per 4 KB chunk on loopback, 5 ms without)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002  quiet unless asked
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def send_head(self):
        path = self.translate_path(self.path)
        if os.path.isdir(path) or not os.path.isfile(path):
            self.send_error(404, "not found")
            return None
        f = open(path, "rb")
        size = os.fstat(f.fileno()).st_size
        start, end = 0, size - 1
        match = _RANGE.match(self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # bytes=-N: the last N bytes
                start = max(0, size - int(match.group(2)))
            if start >= size or start > end:
                f.close()
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        f.seek(start)
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:
        remaining = self._remaining
        while remaining > 0:
            block = source.read(min(64 * 1024, remaining))
            if not block:
                break
            outputfile.write(block)
            remaining -= len(block)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    verbose = False  # RangeHandler.log_message reads it

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a client that went away is normal
            super().handle_error(request, client_address)


class RepoServer:
    """A ThreadingHTTPServer on 127.0.0.1 (by default) in a daemon thread."""

    def __init__(self, directory: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
                 handler: type[RangeHandler] = RangeHandler, verbose: bool = False):
        self.directory = Path(directory)
        self.httpd = _Server((host, port), partial(handler, directory=str(self.directory)))
        self.httpd.verbose = verbose
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.socket.getsockname()[:2]  # str, unlike server_address's str | bytes
        return f"http://{host}:{port}"

    def start(self) -> "RepoServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="edgeship-repo-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
