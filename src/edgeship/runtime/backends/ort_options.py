"""ONNX Runtime's settings from a RuntimeConfig: session options, providers, the shared arena.

>>> opts = session_options(RuntimeConfig(intra_op_threads=2, shared_arena=True))
>>> resolve_providers(("CUDAExecutionProvider",))   # those this host lacks are skipped
['CPUExecutionProvider']
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import RuntimeConfig

# ONNX element types as numpy dtype names (TensorSpec.dtype); others keep ORT's own spelling.
_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(uint16)": "uint16", "tensor(int16)": "int16",
    "tensor(uint32)": "uint32", "tensor(int32)": "int32", "tensor(uint64)": "uint64", "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(wanted: tuple[str, ...]) -> list[str]:
    have = set(available_providers())
    chosen = [p for p in wanted if p in have and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


def session_options(cfg: "RuntimeConfig"):
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
    opts.enable_mem_pattern = cfg.memory_pattern
    if cfg.shared_arena:
        _register_shared_arena()
        opts.add_session_config_entry("session.use_env_allocators", "1")
    return opts


_arena_registered = False
_arena_lock = threading.Lock()


def _register_shared_arena() -> None:
    """Register the CPU arena every ``shared_arena`` session of this process uses (once: it is global)."""
    global _arena_registered
    with _arena_lock:
        if _arena_registered:
            return
        import onnxruntime as ort

        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, None)
        _arena_registered = True

