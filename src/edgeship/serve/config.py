"""The server's one config object: limits, batching, threads, alerts.

>>> cfg = ServeConfig(max_batch=8, max_wait_ms=2.0, queue_size=64)
>>> app = create_app(["mobilenet/"], cfg)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Union

from ..errors import InputError
from ..monitor.alerts import AlertThresholds

_MB = 1024 * 1024


def _default_prep_threads() -> int:
    # Decode and resize release the GIL; one thread per two cores overlaps them with inference
    # without starving ONNX Runtime's intra-op threads on a 2- or 4-core edge board.
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@dataclass(frozen=True)
class ServeConfig:
    """How ``edgeship serve`` runs.

    queue_size: requests admitted per model and not yet answered (decoding, waiting or running);
      one more is answered 503 with ``Retry-After`` at once, before its body is read.
    max_batch / max_wait_ms: micro-batching for models with a dynamic batch axis. The worker
      takes what is queued (up to ``max_batch`` rows) and waits up to ``max_wait_ms`` for more
      only while other requests are still being decoded: a lone request never waits.
    threads: ONNX Runtime intra-op threads (None: one per core). allow_spinning: off by default,
      measured in bench/serve_load.py (spinning threads compete with decoding and HTTP).
    max_pixels: decompression-bomb guard, checked from the header before any pixel is decoded;
      25 MP (about 5000x5000, 75 MB decoded) fits a 1 GB board with two decodes in flight.
    """

    max_upload_bytes: int = 10 * _MB
    max_pixels: int = 25_000_000
    queue_size: int = 64
    max_batch: int = 8
    max_wait_ms: float = 2.0
    threads: Union[int, None] = None
    allow_spinning: bool = False
    prep_threads: int = field(default_factory=_default_prep_threads)
    retry_after_s: int = 1
    ready_cache_s: float = 1.0
    shutdown_timeout_s: float = 30.0
    sensors_root: str = "/"
    disk_path: str = "/"
    alerts: AlertThresholds = field(default_factory=AlertThresholds)

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "queue_size", "max_batch", "prep_threads", "retry_after_s"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"{name}: expected a positive integer, got {v!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"threads: expected a positive integer or None, got {self.threads!r}")
        for name in ("max_wait_ms", "ready_cache_s", "shutdown_timeout_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise InputError(f"{name}: expected a non-negative number, got {v!r}")
