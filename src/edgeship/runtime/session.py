"""ONNX Runtime sessions tuned by a target preset.

>>> cfg = RuntimeConfig(intra_op_threads=4)        # or devices.preset("rpi5").runtime
>>> session = create_session("model.onnx", cfg)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..errors import BundleError, InputError

_OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class RuntimeConfig:
    """How a session runs. ``None`` threads means ONNX Runtime's default (one per physical core).

    providers: ONNX Runtime execution providers in order of preference; those the host lacks are
    skipped, and the CPU provider is always last.
    allow_spinning: intra-op threads busy-wait between ops. Faster in a tight loop, but in a server
    the spinning competes with request handling (measured: ~2x server CPU per request).
    stop_spinning_after_run: with spinning on, the threads stop spinning as soon as a run returns
      (ONNX Runtime's ``session.force_spinning_stop``): hot between the ops of a run, asleep
      between runs, so that a server's other threads get the cores back.
    """

    intra_op_threads: Union[int, None] = None
    inter_op_threads: Union[int, None] = None
    execution_mode: str = "sequential"
    graph_optimization: str = "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    allow_spinning: Union[bool, None] = None
    stop_spinning_after_run: bool = False
    log_severity: int = 3

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise InputError(f"{name}: must be a positive integer, got {v!r}")
        if self.execution_mode not in ("sequential", "parallel"):
            raise InputError(f"execution_mode: expected 'sequential' or 'parallel', got {self.execution_mode!r}")
        if self.graph_optimization not in _OPT_LEVELS:
            raise InputError(f"graph_optimization: expected one of {', '.join(_OPT_LEVELS)}, got {self.graph_optimization!r}")

    def replace(self, **changes) -> "RuntimeConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(wanted: tuple[str, ...]) -> list[str]:
    have = set(available_providers())
    chosen = [p for p in wanted if p in have and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


def session_options(cfg: RuntimeConfig):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if cfg.intra_op_threads is not None:
        opts.intra_op_num_threads = cfg.intra_op_threads
    if cfg.inter_op_threads is not None:
        opts.inter_op_num_threads = cfg.inter_op_threads
    opts.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if cfg.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[cfg.graph_optimization]
    if cfg.allow_spinning is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.allow_spinning else "0")
    if cfg.stop_spinning_after_run:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.log_severity_level = cfg.log_severity
    return opts


def create_session(model_path: Union[str, os.PathLike], cfg: RuntimeConfig | None = None):
    """An onnxruntime.InferenceSession for ``model_path``; load failures become BundleError."""
    import onnxruntime as ort

    cfg = cfg or RuntimeConfig()
    path = Path(model_path)
    if not path.is_file():
        raise BundleError(f"{path}: model file not found")
    try:
        return ort.InferenceSession(str(path), session_options(cfg), providers=resolve_providers(cfg.providers))
    except Exception as exc:  # ORT raises Fail / InvalidProtobuf / RuntimeException
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError(
            f"{path}: ONNX Runtime cannot load this model ({first[:240]}); "
            "check the file is complete and was exported with a supported opset"
        ) from exc
