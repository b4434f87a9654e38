"""How a model runs: which backend, provider, precision and variant, how many threads, engine options.

>>> cfg = RuntimeConfig(intra_op_threads=4)        # or targets' preset("rpi5").runtime
>>> model = Model.load("bundle/", cfg)
>>> model.derive(intra_op_threads=1)               # the same model, fewer threads (a new session)
>>> RuntimeConfig(provider="cuda", options=(("device_id", "1"),))   # ONNX Runtime on a GPU, or an error
>>> RuntimeConfig(variant="openvino-int8")          # a declared variant of the bundle (it names its engine)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Union

from ..errors import InputError
from .backends.kinds import BackendKind

_OPT_LEVELS = ("disable", "basic", "extended", "all")
# ``--provider`` names and the ONNX Runtime execution providers they stand for.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "uint8")


def parse_options(pairs) -> tuple[tuple[str, str], ...]:
    """``["k=v", ...]``, a dict or pairs, to sorted ``(key, value)`` string pairs; a malformed one is an InputError."""
    if pairs is None:
        return ()
    items = pairs.items() if isinstance(pairs, dict) else pairs
    out = {}
    for item in items:
        if isinstance(item, str):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise InputError(f"engine option {item!r}: expected key=value")
            item = (key.strip(), value.strip())
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InputError(f"engine option {item!r}: expected a (key, value) pair")
        out[str(item[0])] = str(item[1])
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class RuntimeConfig:
    """How a model runs. ``None`` threads means the engine's default (one per physical core).

    backend: the engine (``BackendKind`` or its value, e.g. "openvino"); None: the one the model
      file calls for (ONNX Runtime for .onnx, LiteRT for .tflite), or the variant's engine.
    provider: an explicit ONNX Runtime execution provider ("cpu", "cuda", "tensorrt", "openvino").
      One the host lacks, or one ONNX Runtime cannot start, is a BackendError, never a silent run
      on the CPU. Nodes the provider does not take still run on the CPU provider, as ORT does.
    providers: without ``provider``, ONNX Runtime providers in order of preference (a device
      preset's); those the host lacks are skipped, and the CPU provider is always last.
    options: the engine's own options as (key, value) strings: ONNX Runtime provider options,
      OpenVINO compile properties, TensorRT builder settings (``--provider-option key=value``).
    precision: what the engine computes in where it has a choice: OpenVINO's inference precision
      hint (fp32 unless asked: its bf16 default on some CPUs is a variant, never silent),
      TensorRT's fp16 on TensorRT 10. None: fp32, or what the variant declares.
    variant: the name of a declared variant of the bundle (``edgeship variant add``) to run instead
      of its main model; the variant names its engine and precision and carries its own tolerance.
    golden_check: run the bundle's golden input at load and refuse a model that disagrees beyond
      its tolerance. None: whenever anything but ONNX Runtime on the CPU (which made the golden
      pair) runs the main model; True: always; False: never (the server checks health itself).
    allow_spinning: intra-op threads busy-wait between ops. Faster in a tight loop, but in a server
      the spinning competes with request handling (measured: ~2x server CPU per request).
    stop_spinning_after_run: with spinning on, the threads stop spinning as soon as a run returns
      (ONNX Runtime's ``session.force_spinning_stop``): hot between the ops of a run, asleep
      between runs, so that a server's other threads get the cores back.
    shared_weights: ONNX Runtime on the CPU: sessions load the graph ONNX Runtime optimized for this
      host, cached once, and borrow its weights (prepacked ones included) from one read-only mapping
      of the cached file, shared by every session of the model in the process (a server's twin, a
      swap). False: each session optimizes the .onnx and holds its own weights (runtime/backends/
      ort_weights.py says what each costs).
    memory_pattern: ONNX Runtime plans the activations of each input shape as one block and keeps
      it (its ``enable_mem_pattern``); False allocates tensor by tensor from the arena, so a server
      running batches of 1 to N rows does not keep a block per batch size (MobileNetV3-Small, batches
      of 1 to 8 in turn: 24 MB against 5 MB above one batch of 8; no difference in speed measured).
    shared_arena: the sessions of this process that ask for it draw activations from one arena
      (ONNX Runtime's environment allocator) instead of one each: a model's twin session, which
      runs only while the other does not, then costs no second arena (8.5 MB for EfficientNet-Lite0).
    """

    backend: Union[BackendKind, None] = None
    intra_op_threads: Union[int, None] = None
    inter_op_threads: Union[int, None] = None
    execution_mode: str = "sequential"
    graph_optimization: str = "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider: Union[str, None] = None
    options: tuple[tuple[str, str], ...] = ()
    precision: Union[str, None] = None
    variant: Union[str, None] = None
    golden_check: Union[bool, None] = None
    allow_spinning: Union[bool, None] = None
    stop_spinning_after_run: bool = False
    log_severity: int = 3
    shared_weights: bool = True
    memory_pattern: bool = True
    shared_arena: bool = False

    def __post_init__(self) -> None:
        if self.backend is not None:
            object.__setattr__(self, "backend", BackendKind.parse(self.backend))
        for name in ("intra_op_threads", "inter_op_threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise InputError(f"{name}: must be a positive integer, got {v!r}")
        if self.execution_mode not in ("sequential", "parallel"):
            raise InputError(f"execution_mode: expected 'sequential' or 'parallel', got {self.execution_mode!r}")
        if self.graph_optimization not in _OPT_LEVELS:
            raise InputError(f"graph_optimization: expected one of {', '.join(_OPT_LEVELS)}, got {self.graph_optimization!r}")
        if self.provider is not None and self.provider not in PROVIDERS:
            raise InputError(f"provider: expected one of {', '.join(PROVIDERS)}, got {self.provider!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "options", parse_options(self.options))

    @property
    def option_dict(self) -> dict[str, str]:
        return dict(self.options)

    def replace(self, **changes) -> "RuntimeConfig":
        """A copy with the changes that are not None (None keeps the current value)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def with_changes(self, **changes) -> "RuntimeConfig":
        """A copy with every change applied, None included (``intra_op_threads=None``: the default)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise InputError(f"unknown runtime setting(s) {', '.join(sorted(unknown))}; known: {known}")
        return dataclasses.replace(self, **changes)
