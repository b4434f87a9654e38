"""The server's one config object: limits, batching, threads, alerts.

>>> cfg = ServeConfig(max_batch=8, max_wait_ms=2.0, queue_size=64)
>>> app = create_app(["mobilenet/"], cfg)
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any, Union

from .._config import cli, non_negative_float, positive_float, positive_int
from ..errors import InputError
from ..monitor.alerts import AlertThresholds

_MB = 1024 * 1024
_KB = 1024


class Spinning(str, enum.Enum):
    """Whether ONNX Runtime's intra-op threads busy-wait for work (see ServeConfig)."""

    AUTO = "auto"
    OFF = "off"
    RUN = "run"
    ON = "on"


class DecodePriority(str, enum.Enum):
    """The decode threads' CPU priority against the model's threads (see ServeConfig)."""

    NORMAL = "normal"
    LOW = "low"


class LLMSharing(str, enum.Enum):
    """How the LLM shares the cores with the vision models (serve/sharing.py)."""

    OFF = "off"
    PRIORITY = "priority"
    PAUSE = "pause"


def _budget(text: str):
    from .budget import parse_budget

    return parse_budget(text)


def _default_prep_threads() -> int:
    # Decode and resize release the GIL. One decode thread per core, up to 4: with one thread on a
    # 2-core board, decoding was the bottleneck under load (bench/serve_load.py: MobileNetV3-Small
    # at 16 clients went from about 145 to about 240 requests/s with two).
    return max(1, min(4, os.cpu_count() or 2))


@dataclass(frozen=True)
class ServeConfig:
    """How ``edgeship serve`` runs.

    queue_size: requests admitted per model and not yet answered (decoding, waiting or running);
      one more is answered 503 with ``Retry-After`` at once, before its body is read.
    max_batch / max_wait_ms: micro-batching for models with a dynamic batch axis. The worker
      takes what is queued (up to ``max_batch`` rows) and waits up to ``max_wait_ms`` for more
      only while other requests are still being decoded: a lone request never waits. Each row of a
      batch costs its activations (8.5 MB for EfficientNet-Lite0 at 224x224, 1.2 MB for
      MobileNetV3-Small). The default, 4, kept the req/s at 16 clients of the former 8 (MobileNetV3-
      Small, same run: 95.5 against 98.9; 95.0 before this change) at a peak RSS 17 MB lower; 2 costs
      a fifth of the req/s and saves 10 MB more (bench/footprint.py, docs/footprint.md).
    max_batch_bytes: the activations one run may hold. A model whose one row's activations,
      measured at its first run, are large runs fewer rows than ``max_batch``: at the default 48
      MiB a row of up to 12 MiB runs 4 (EfficientNet-Lite0, 8.8-9.7 MiB; MobileNetV3-Small, 1.8),
      a 640x640 detector's fewer. Lite0 at 16 clients served 0.93-0.98x the req/s with 2 rows as
      with 4, at a peak RSS 19-26 MB lower; with the server on Starlette alone, 4 rows keep its
      peak within 1.15x the article's server (docs/benchmarks/footprint.md).
      0: no cap. A version swapped in later keeps the rows its model started with.
    threads: ONNX Runtime intra-op threads (None: one per core).
    spinning: whether ONNX Runtime's intra-op threads busy-wait for work instead of sleeping.
      "auto" (default): a lone request (nothing else queued or being decoded) that comes within
      40 ms of the one before runs on a second session of the model whose threads spin, as in a
      tight in-process loop, at the lowest CPU priority (nice 19, on Linux) so that their spinning
      never delays a wake-up the request needs; everything else (batches under load, sparse
      requests) runs on a session whose threads sleep, so they never take the cores that
      decoding and HTTP need and an idle board does not burn power spinning. The second session
      shares the model's weights and arena (runtime/backends/ort_weights.py): it costs its own
      session state, about 1 MB for EfficientNet-Lite0. "off": one session, threads never spin.
      "run": one session, threads spin while a run is in progress and sleep as soon as it returns. "on": one session, ONNX Runtime's default, they keep spinning after a run too.
      bench/serve_load.py and the README show what each costs.
    decode_priority: the decode threads' CPU priority. "normal" (default), or "low": nice 10 (Linux),
      so that under a saturating load they decode in the gaps ONNX Runtime's threads leave instead of
      preempting them in the middle of a run. It trades latency below saturation for requests/s at
      it, and suits a heavy model: at 16 clients EfficientNet-Lite0 served 1.05-1.07x the req/s,
      while at 4 clients its p99 rose from 50.7 to 58.6 ms; MobileNetV3-Small, whose decoding is
      half of its work, served 0.95-0.97x at 16 clients (docs/benchmarks/footprint.md).
    max_pixels: decompression-bomb guard, checked from the header before any pixel is decoded.
    max_decode_bytes: what decoding and converting one picture may allocate (runtime/preprocess.py
      ``decode_cost``, checked from the header): 80 MiB takes any 4K picture but WebP, a 16 MP
      RGB PNG, and any JPEG up to max_pixels (decoded at reduced scale); at most ``prep_threads``
      decodes run at once.
    llm_sharing: with an LLM, how it leaves the cores to vision requests (serve/sharing.py):
      "priority" (default: the LLM's threads at nice 19), "pause" (also, a generation waits
      between two tokens while a vision request is in flight) or "off".
      A picture at the limit costs up to 24 bytes a pixel while it is decoded (an RGBA PNG; a JPEG
      2): the default 25 MP is up to 600 MB per decode thread, which the memory plan counts.
    memory_budget: the memory the server may plan to use: bytes, or a share of the device's RAM
      (a float in (0, 1]); None: 75% of it. At start the planned peak (serve/budget.py) must fit,
      or the server refuses to start, naming the parts that do not fit and what to change.
    target: the device preset whose thermal limits apply (``rpi5``: the firmware throttles from
      80 C); None: this host's kernel trip points, else generic limits. ``thermal`` overrides them.
    governor: a ``monitor.governor.GovernorConfig`` to run the thermal governor in the server; None
      (default) leaves it off. ``variants``: per model name, the bundle of its lighter variant (its
      INT8 or pruned form), which the governor's "variant" step serves in its place.
    low_priority_rps: while the governor rate-limits, low-priority requests (RFC 9218 ``Priority:
      u=5`` to ``u=7``) beyond this rate are answered 503 with Retry-After.

    The HTTP limits (docs/security.md) are enforced by the server (serve/server.py,
    serve/guard.py) before a request reaches a model: header bytes and the time to send them,
    the time between two body chunks, idle keep-alive, open connections, body bytes per request
    and buffered across requests, multipart parts, JSON nesting; bodies are read whole, within
    those limits, before a request takes a queue place.
    """

    max_upload_bytes: int = field(default=10 * _MB, metadata=cli(
        "largest accepted request body, in MB", flag="--max-upload-mb", type=positive_float, unit=_MB))
    max_pixels: int = field(default=25_000_000, metadata=cli(
        "largest accepted image, in pixels (checked from the header, before decoding)", type=positive_int))
    queue_size: int = field(default=64, metadata=cli(
        "requests in flight per model; one more gets 503 with Retry-After", type=positive_int))
    max_batch: int = field(default=4, metadata=cli("rows per model run, for dynamic-batch models (each row costs "
                                                   "its activations in memory)", type=positive_int))
    max_batch_bytes: int = field(default=48 * _MB, metadata=cli(
        "most activations one model run may hold, in MB: a model whose one row's activations (measured at its "
        "first run) are larger runs fewer rows than --max-batch (0: no cap)", flag="--max-batch-mb",
        type=non_negative_float, unit=_MB))
    max_wait_ms: float = field(default=2.0, metadata=cli(
        "how long a batch waits for requests still being decoded (a lone request never waits)",
        type=non_negative_float))
    threads: Union[int, None] = field(default=None, metadata=cli(
        "intra-op threads per model (default: one per core)", type=positive_int))
    spinning: Spinning = field(default=Spinning.AUTO, metadata=cli(
        "ONNX Runtime threads busy-wait for work: auto (a lone request that comes within 40 ms of the one "
        "before runs on a second session of the model whose threads spin, at the lowest priority; batches "
        "and sparse requests on one that sleeps; the two share the weights), off (never), run "
        "(only while a run is in progress) or on (ONNX Runtime's default)"))
    decode_priority: DecodePriority = field(default=DecodePriority.NORMAL, metadata=cli(
        "CPU priority of the image decode threads: normal, or low (nice 10: under a saturating load they decode "
        "in the gaps the model's threads leave; more requests/s for a heavy model, a higher p99 below saturation)"))
    backend: Union[str, None] = field(default=None, metadata=cli(
        "engine for every bundle: onnxruntime, openvino, litert or tensorrt (default: each bundle's recorded "
        "choice for this host from `edgeship tune`, else what its model file calls for)"))
    provider: Union[str, None] = field(default=None, metadata=cli(
        "ONNX Runtime execution provider: cpu, cuda, tensorrt or openvino (one this host lacks is an error)"))
    bundle_variant: Union[str, None] = field(default=None, metadata=cli(
        "a variant declared inside the bundle (`edgeship variant list`) to serve instead of its main model",
        metavar="NAME"))
    provider_options: tuple[tuple[str, str], ...] = ()  # --provider-option key=value
    prep_threads: int = field(default_factory=_default_prep_threads, metadata=cli(
        "image decode threads (default: one per core, at most 4)", type=positive_int))
    max_decode_bytes: int = field(default=80 * _MB, metadata=cli(
        "most memory one picture may take to decode and convert, in MiB (estimated from its header, before "
        "decoding)", flag="--max-decode-mb", type=positive_float, unit=_MB))
    llm_max_body_bytes: int = field(default=1 * _MB, metadata=cli(
        "largest request body of the LLM routes, in KiB", flag="--llm-max-body-kb", type=positive_float, unit=_KB))
    llm_max_messages: int = field(default=1024, metadata=cli(
        "most messages in one chat request", type=positive_int))
    max_body_buffer_bytes: int = field(default=48 * _MB, metadata=cli(
        "request bodies held in memory at once, all requests together, in MiB; past it a request gets 503",
        flag="--max-body-buffer-mb", type=positive_float, unit=_MB))
    max_header_bytes: int = field(default=32 * _KB, metadata=cli(
        "largest request line and headers together, in KiB (431 past it)", flag="--max-header-kb",
        type=positive_float, unit=_KB))
    header_timeout_s: float = field(default=10.0, metadata=cli(
        "seconds a client has to send a request's headers, from its first byte (or from connecting)",
        type=positive_float))
    body_timeout_s: float = field(default=15.0, metadata=cli(
        "seconds the server waits for the next chunk of a request body (408 past it)", type=positive_float))
    keep_alive_s: float = field(default=5.0, metadata=cli(
        "seconds an idle keep-alive connection stays open", type=positive_float))
    max_connections: int = field(default=256, metadata=cli(
        "open connections (and requests in progress) the server takes; past it, 503", type=positive_int))
    max_multipart_parts: int = field(default=16, metadata=cli(
        "most parts in one multipart upload", type=positive_int))
    max_json_depth: int = field(default=32, metadata=cli(
        "deepest nesting of arrays and objects in a JSON body (/v2, LLM routes)", type=positive_int))
    api_key_file: Union[str, None] = field(default=None, metadata=cli(
        "file holding the API key(s), one per line: inference and model routes then require "
        "'Authorization: Bearer KEY' (health and metrics stay open)", metavar="FILE"))
    docs: bool = field(default=False, metadata=cli(
        "serve the API's OpenAPI description and Swagger UI at /docs (assets from the swagger-ui-bundle "
        "package, no CDN)"))
    llm_sharing: LLMSharing = field(default=LLMSharing.PRIORITY, metadata=cli(
        "how the LLM leaves the cores to vision requests: priority (its threads at the lowest priority), "
        "pause (also, it waits between two tokens while a vision request is in flight) or off"))
    memory_budget: Union[int, float, None] = field(default=None, metadata=cli(
        "memory the server may plan to use, e.g. 512M, 1.5G, or 60%% of RAM (default: 75%% of RAM); the "
        "server refuses to start when its planned peak does not fit", type=_budget, metavar="SIZE"))
    retry_after_s: int = 1
    ready_cache_s: float = 1.0
    shutdown_timeout_s: float = 30.0
    sensors_root: str = "/"
    disk_path: str = "/"
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    target: Union[str, None] = None
    thermal: Any = None  # monitor.thermal.ThermalLimits
    governor: Any = None  # monitor.governor.GovernorConfig; None: off
    variants: dict = field(default_factory=dict)  # model name -> bundle of its lighter variant
    low_priority_rps: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "queue_size", "max_batch", "prep_threads", "retry_after_s",
                     "max_decode_bytes", "llm_max_body_bytes", "llm_max_messages", "max_body_buffer_bytes",
                     "max_header_bytes", "max_connections", "max_multipart_parts", "max_json_depth"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"{name}: expected a positive integer, got {v!r}")
        if not isinstance(self.max_batch_bytes, int) or isinstance(self.max_batch_bytes, bool) or self.max_batch_bytes < 0:
            raise InputError(f"max_batch_bytes: expected an integer >= 0, got {self.max_batch_bytes!r}")
        for name, kind in (("spinning", Spinning), ("decode_priority", DecodePriority), ("llm_sharing", LLMSharing)):
            v = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(v))
            except ValueError:
                choices = ", ".join(m.value for m in kind)
                raise InputError(f"{name}: expected one of {choices}, got {v!r}") from None
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InputError(f"threads: expected a positive integer or None, got {self.threads!r}")
        b = self.memory_budget
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or b <= 0
                              or (isinstance(b, float) and b > 1)):
            raise InputError(f"memory_budget: expected bytes (an integer), a share of RAM in (0, 1], or None; got {b!r}")
        if self.governor is not None:
            from ..monitor.governor import GovernorConfig

            if not isinstance(self.governor, GovernorConfig):
                raise InputError(f"governor: expected a GovernorConfig or None, got {self.governor!r}")
        if not isinstance(self.variants, dict) or not all(isinstance(k, str) for k in self.variants):
            raise InputError(f"variants: expected a mapping of model name to bundle, got {self.variants!r}")
        for name in ("max_wait_ms", "ready_cache_s", "shutdown_timeout_s", "low_priority_rps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise InputError(f"{name}: expected a non-negative number, got {v!r}")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise InputError(f"{name}: expected a positive number of seconds, got {v!r}")
        if self.max_body_buffer_bytes < max(self.max_upload_bytes, self.llm_max_body_bytes):
            raise InputError(f"max_body_buffer_bytes: {self.max_body_buffer_bytes:,} is less than one request body "
                             f"may be ({max(self.max_upload_bytes, self.llm_max_body_bytes):,}); raise it")


def thermal_limits(config: ServeConfig):
    """The thermal limits the server reports status and headroom against (and the governor acts on)."""
    from ..monitor.thermal import limits_for

    return config.thermal if config.thermal is not None else limits_for(config.target, config.sensors_root)


def runtime_config(config: ServeConfig):
    """The runtime settings of a served model (engine flags, threads, ONNX Runtime's spinning)."""
    from ..runtime.backends.kinds import BackendKind
    from ..runtime.session import RuntimeConfig

    # One arena for the model's sessions (the twin runs only while the model does not), and no
    # activation block kept per batch size (docs/footprint.md has the figures).
    return RuntimeConfig(intra_op_threads=config.threads, allow_spinning=config.spinning in (Spinning.RUN, Spinning.ON),
                         stop_spinning_after_run=config.spinning is Spinning.RUN, memory_pattern=False,
                         shared_arena=True, provider=config.provider,
                         backend=BackendKind.parse(config.backend) if config.backend is not None else None,
                         variant=config.bundle_variant, options=config.provider_options)


def runtime_given(config: ServeConfig) -> bool:
    """Whether the engine was set on the command line (then no recorded choice applies)."""
    return bool(config.backend or config.provider or config.bundle_variant or config.provider_options)


def lone_runtime_config(config: ServeConfig):
    """With spinning "auto", the twin session for the lone requests of a dense stream: it spins."""
    return runtime_config(config).replace(allow_spinning=True)
