"""Weights that every ONNX Runtime session of one model in this process shares, mapped from a cache.

>>> weights = SharedWeights.get("model.onnx", cfg)      # built once per model, host and ORT version
>>> opts = session_options(cfg)
>>> weights.attach(opts)                                  # the sessions borrow the mapped file
>>> session = ort.InferenceSession(str(weights.model_path), opts, providers=["CPUExecutionProvider"])
>>> weights.mapped_bytes                                  # what the sessions share (RSS once touched)

Why: every ``InferenceSession`` of a model holds its own copy of the weights, after graph
optimization (Conv weights reordered to ONNX Runtime's blocked layout) and prepacking (Gemm
weights packed for the host's kernels). The server's spinning twin is a second session of the same
model, and a live swap loads a third for a moment. Measured with ONNX Runtime 1.32 on EfficientNet-
Lite0 (18.6 MB file), the RSS that two sessions and a run on each added, with the server's settings:
made from the .onnx, 90 MB; made as here, 34 MB, of which 18 MB are the mapped weights, counted
once. Outputs are the same and so is the speed (bench/footprint.py).

How: once, ONNX Runtime optimizes the model for this host (``graph_optimization`` of the config)
and saves the result with its initializers in one external file. Every session then loads the
saved graph with optimization off and borrows the weights from one read-only ``mmap`` of that
file (``add_external_initializers_from_files_in_memory`` with
``session.use_external_initializer_file_buffers_directly``): one copy per process, in the page
cache, which the kernel may drop and read again under memory pressure. Prepacking is off for these
sessions: ONNX Runtime 1.32's Python API cannot share prepacked weights between sessions (its
``PrepackedWeightsContainer`` is C API only), and prepacked blobs saved beside the weights were
copied into each session again (5-7 MB a session for these two models: their classifier heads).
No speed difference was measured for the two (interleaved runs, batch 1 and 8). Loading the saved
graph also skips the optimizer: 0.03 s against 0.3 s for EfficientNet-Lite0 here.

The saved graph holds layout choices for this CPU, so the cache key has the model's sha256, the
ONNX Runtime version, the optimization level and this CPU's features. A new entry is checked before
it is used: a random input runs through the session that saved it and through one loaded from the
cache, and the outputs must be identical; otherwise, or when anything here fails (a read-only
cache, a model ONNX Runtime cannot save), the session loads the .onnx as before, and says so in
its ``describe()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import mmap
import os
import platform
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ...util import trim_heap, write_text_atomic

if TYPE_CHECKING:
    from ..config import RuntimeConfig

log = logging.getLogger("edgeship.runtime")

WEIGHTS_FILE = "weights.bin"
_FORMAT = 2  # bump when what is saved, or how, changes
_MIN_EXTERNAL_BYTES = 1024  # smaller initializers stay in the graph file (shape inference reads some)
_live: "weakref.WeakValueDictionary[str, SharedWeights]" = weakref.WeakValueDictionary()
_lock = threading.Lock()


def _cpu_signature() -> str:
    """What the optimized graph may depend on: the machine and its CPU's instruction set."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):  # x86, then Arm
                flags = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}:{flags}"


def _external_data_stamps(model_path: Path) -> list[str]:
    """Size and mtime of the files beside the model that may hold its external data (``model.onnx.data``,
    ``*.bin``, ...): a changed weights file is a new entry even when the graph file is the same."""
    stamps = []
    for f in sorted(model_path.parent.iterdir()):
        if f != model_path and f.is_file() and (f.name.startswith(model_path.stem) or f.suffix in (".data", ".bin")):
            st = f.stat()
            stamps.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return stamps


def cache_key(model_path: Union[str, os.PathLike], cfg: "RuntimeConfig") -> str:
    import onnxruntime as ort

    from ...bundle.cache import file_sha256

    parts = [file_sha256(model_path), *_external_data_stamps(Path(model_path)), ort.__version__,
             cfg.graph_optimization, _cpu_signature(), str(_FORMAT)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _random_feeds(session) -> dict[str, np.ndarray]:
    """A fixed random input for every graph input (dynamic dims as 1): enough to see a wrong weight."""
    from .ort_options import _DTYPES

    rng = np.random.default_rng(0)
    feeds = {}
    for arg in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in arg.shape]
        dtype = np.dtype(_DTYPES.get(arg.type, "float32"))
        feeds[arg.name] = (rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype))
    return feeds


class SharedWeights:
    """One model's cached optimized graph and the read-only mapping of its weights file."""

    def __init__(self, key: str, folder: Path):
        self.key = key
        self.folder = folder
        self.model_path = folder / "model.onnx"
        self.weights_path = folder / WEIGHTS_FILE
        self._map = None
        self.buffer = np.empty(0, np.uint8)
        if self.weights_path.stat().st_size:  # empty: every initializer was small enough to stay in the graph
            with open(self.weights_path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.buffer = np.frombuffer(self._map, dtype=np.uint8)
            # Touch every page now: the first request does not wait for the disk, and the process's RSS
            # holds the whole mapping from the load on, as its memory plan says (one byte a page: ~1 ms).
            int(self.buffer[:: mmap.PAGESIZE].sum())

    @property
    def mapped_bytes(self) -> int:
        return int(self.buffer.size)

    def attach(self, opts: Any) -> None:
        """Make a session made with ``opts`` load the saved graph's weights from this mapping."""
        import onnxruntime as ort

        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimized already
        # Prepacked weights (Gemm's, packed for this CPU) would be one private copy per session again.
        opts.add_session_config_entry("session.disable_prepacking", "1")
        if self.mapped_bytes:
            opts.add_external_initializers_from_files_in_memory([WEIGHTS_FILE], [self.buffer], [self.mapped_bytes])
            opts.add_session_config_entry("session.use_external_initializer_file_buffers_directly", "1")

    @classmethod
    def get(cls, model_path: Union[str, os.PathLike], cfg: "RuntimeConfig",
            cache: Union[Path, None] = None) -> "SharedWeights":
        """The mapping for ``model_path`` under ``cfg``, shared with live sessions; built when not cached."""
        from ...bundle.cache import cache_dir

        key = cache_key(model_path, cfg)
        with _lock:
            live = _live.get(key)
            if live is not None:
                return live
            folder = (cache or cache_dir() / "ort-optimized") / key
            if not (folder / "ok.json").is_file():
                _build(Path(model_path), cfg, folder)
            weights = cls(key, folder)
            _live[key] = weights
            return weights


def _build(model_path: Path, cfg: "RuntimeConfig", folder: Path) -> None:
    """Optimize ``model_path`` for this host, save graph + weights, check them, publish ``folder``."""
    import onnxruntime as ort

    from .ort_options import session_options

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    cfg = dataclasses.replace(cfg, shared_arena=False)  # the check must not grow the process's shared arena
    try:
        opts = session_options(cfg)
        opts.optimized_model_filepath = str(tmp / "model.onnx")
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", WEIGHTS_FILE)
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                      str(_MIN_EXTERNAL_BYTES))
        opts.add_session_config_entry("session.disable_prepacking", "1")  # as the sessions run: same kernels
        source = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        feeds = _random_feeds(source)
        expected = source.run(None, feeds)
        del source
        (tmp / WEIGHTS_FILE).touch()  # ORT writes none when no initializer is big enough to go there
        for name in ("model.onnx", WEIGHTS_FILE):
            with open(tmp / name, "rb+") as f:
                os.fsync(f.fileno())
        check = SharedWeights(folder.name, tmp)
        opts = session_options(cfg)
        check.attach(opts)
        got = ort.InferenceSession(str(check.model_path), opts, providers=["CPUExecutionProvider"]).run(None, feeds)
        if len(got) != len(expected) or not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, expected)):
            raise RuntimeError("the optimized graph loaded from the cache answers differently from the model")
        del check, got
        write_text_atomic(tmp / "ok.json", json.dumps({"source": str(model_path), "onnxruntime": ort.__version__,
                                                       "graph_optimization": cfg.graph_optimization}))
        if folder.exists() and not (folder / "ok.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # left half-written by hand: never by this code
        try:
            os.rename(tmp, folder)
        except OSError:  # another process published the same entry first: theirs is as good
            if not (folder / "ok.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        trim_heap()  # the optimizer's work is freed: give it back
