"""HTTP for the agent: a python-tuf fetcher, and chunk downloads that resume with HTTP Range.

>>> fetcher = HttpFetcher(timeout_s=30)
>>> Updater(..., fetcher=fetcher)                          # TUF metadata and small targets
>>> fetcher.download_chunk(url, part_file, size, sha256)   # resumes part_file where it stopped

A chunk is written to ``SHA.part`` as it arrives; after a broken connection or a restart the next
attempt asks for ``Range: bytes=N-`` and appends. It is never written past its size from the
recipe, and its sha256 is checked before it is renamed to ``SHA.chunk``.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Iterator

from .._deps import require
from . import faults
from .errors import StoreError, TransferError, TrustError

require("tuf", "ota", "the OTA agent (python-tuf)")
import urllib3  # noqa: E402  (a dependency of python-tuf)
from tuf.api import exceptions as tuf_exc  # noqa: E402
from tuf.ngclient.fetcher import FetcherInterface  # noqa: E402

BLOCK = 64 * 1024


class HttpFetcher(FetcherInterface):
    """urllib3 with one keep-alive pool; counts the bytes it received (the bench reports them)."""

    def __init__(self, timeout_s: float = 30.0, user_agent: str = "edgeship-ota"):
        self.timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self.pool = urllib3.PoolManager(maxsize=4, retries=urllib3.Retry(2, redirect=3, read=0),
                                        headers={"User-Agent": user_agent})
        self.bytes_received = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self.pool.request("GET", url, preload_content=False, timeout=self.timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise tuf_exc.DownloadError(f"{url}: {exc}") from exc
        if response.status >= 400:
            response.release_conn()
            raise tuf_exc.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        return self._stream(response)

    def _stream(self, response) -> Iterator[bytes]:
        try:
            for block in response.stream(BLOCK):
                self.bytes_received += len(block)
                yield block
        except urllib3.exceptions.HTTPError as exc:
            raise tuf_exc.DownloadError(f"download broke off: {exc}") from exc
        finally:
            response.release_conn()

    def download_chunk(self, url: str, part: Path, size: int, sha256: str) -> Path:
        """Fetch one chunk into ``part`` (resuming), check it, rename it to ``SHA.chunk``; returns that path."""
        done = part.with_suffix(".chunk")
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        headers = {"Range": f"bytes={have}-"} if 0 < have < size else {}
        if have < size:
            try:
                response = self.pool.request("GET", url, headers=headers, preload_content=False, timeout=self.timeout)
            except urllib3.exceptions.HTTPError as exc:
                raise TransferError(f"{url}: {exc}") from exc
            try:
                if response.status == 200 and have:
                    have = 0  # the server ignored Range: start again
                elif response.status not in (200, 206):
                    raise TransferError(f"{url}: HTTP {response.status}")
                with open(part, "r+b" if have else "wb") as f:
                    f.seek(have)
                    f.truncate()
                    try:
                        # read1 hands over what has arrived: a cut connection loses nothing already received
                        while block := response.read1(BLOCK):
                            self.bytes_received += len(block)
                            if have + len(block) > size:
                                raise TrustError(f"{url}: the server sent more than the recipe's {size} bytes")
                            f.write(block)
                            have += len(block)
                            faults.point()
                    except urllib3.exceptions.HTTPError as exc:
                        raise TransferError(f"{url}: download broke off at {have} of {size} bytes ({exc}); "
                                            "it resumes from there") from exc
                    except OSError as exc:
                        if exc.errno == errno.ENOSPC:
                            raise StoreError(f"disk full while downloading ({have} of {size} bytes of a chunk)") from exc
                        raise
                    f.flush()
                    os.fsync(f.fileno())
            finally:
                response.release_conn()
            if have < size:
                raise TransferError(f"{url}: download broke off at {have} of {size} bytes; it resumes from there")
        h = hashlib.sha256()
        with open(part, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        if h.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            raise TrustError(f"{url}: sha256 {h.hexdigest()[:16]}... does not match the signed recipe's "
                             f"{sha256[:16]}...; the chunk is discarded")
        os.replace(part, done)
        return done
