"""The TensorRT backend: an engine built from ``model.onnx`` for this GPU, cached, run by tensor name.

>>> backend = TensorRTBackend("model.onnx", RuntimeConfig(options=(("max_batch", "32"),)))
>>> backend.describe()["engine"]
{'cached': True, 'path': '.../3f1c....engine', 'build_s': None, 'precision': 'graph', ...}

- TensorRT 10/11 tensor-name API only (``num_io_tensors``, ``set_input_shape``,
  ``set_tensor_address``, ``execute_async_v3``); no binding-index calls, no pycuda: device memory
  and the stream come from NVIDIA's ``cuda-python`` (``cuda.bindings.runtime``).
- A dynamic batch axis gets one optimisation profile, batch ``min_batch``/``opt_batch``/``max_batch``
  (options; 1/1/32 by default).
- Engines and the timing cache are keyed by TensorRT version, GPU compute capability and the
  model's sha256 (trt_cache.py): a stale engine is refused and rebuilt, never loaded.
- Precision: TensorRT 11 networks are strongly typed, so the precision is the graph's (an fp16
  ONNX runs fp16; the builder's FP16 flag no longer exists). On TensorRT 10, ``precision="fp16"``
  sets the FP16 builder flag on an fp32 graph; without it, the network is strongly typed too.

Options (``--provider-option``): max_batch, opt_batch, min_batch, workspace_mb (default 1024),
cache_dir (default ``$EDGESHIP_CACHE/tensorrt``), device (CUDA device id, default 0).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ...errors import BackendError, BundleError, InputError, MissingDependencyError
from .base import Backend, BackendKind, register_backend
from .trt_cache import EngineCache, EngineKey

if TYPE_CHECKING:
    from ...bundle import TensorSpec
    from ..config import RuntimeConfig

OPTIONS = ("max_batch", "opt_batch", "min_batch", "workspace_mb", "cache_dir", "device")


def _import_trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError(
            "'tensorrt' is needed for the TensorRT backend but is not installed: pip install 'edgeship[tensorrt]' "
            "(on a host with an NVIDIA GPU and driver)") from exc
    return trt


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise MissingDependencyError(
                "'cuda-python' is needed for the TensorRT backend's device memory but is not installed: "
                "pip install 'edgeship[tensorrt]'") from exc
    return cudart


def _check(result, what: str):
    """cuda-python calls return (error, value...); raise BackendError on anything but success."""
    err, rest = result[0], result[1:]
    if int(err) != 0:
        raise BackendError(f"CUDA {what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def gpu_info(cudart, device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor"); a BackendError when there is no CUDA GPU."""
    try:
        count = _check(cudart.cudaGetDeviceCount(), "device count")
    except BackendError as exc:
        raise BackendError(f"no usable NVIDIA GPU for TensorRT ({exc}); check the driver (nvidia-smi)") from None
    if device >= count:
        raise BackendError(f"CUDA device {device} asked for, this host has {count}")
    props = _check(cudart.cudaGetDeviceProperties(device), "device properties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00 "), f"{props.major}.{props.minor}"


_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
           "INT64": np.int64, "BOOL": np.bool_}


def _np_dtype(trt, dt) -> np.dtype:
    """numpy's dtype for a TensorRT DataType (``trt.nptype`` where the bindings have it)."""
    try:
        return np.dtype(trt.nptype(dt))
    except (AttributeError, TypeError):
        name = str(dt).rsplit(".", 1)[-1]
        if name not in _DTYPES:
            raise BackendError(f"TensorRT tensor type {dt} has no numpy equivalent for edgeship's I/O") from None
        return np.dtype(_DTYPES[name])


def _sha256(path: Path) -> str:
    from ...bundle.cache import file_sha256

    return file_sha256(path)


@register_backend(BackendKind.TENSORRT)
class TensorRTBackend(Backend):
    """One engine, one execution context, device buffers sized for ``max_batch``; runs take a lock."""

    suffixes = (".onnx",)

    def __init__(self, model_path: Union[str, os.PathLike], config: "RuntimeConfig"):
        super().__init__(model_path, config)
        opts = config.option_dict
        unknown = set(opts) - set(OPTIONS)
        if unknown:
            raise InputError(f"tensorrt: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(OPTIONS)}")
        if config.provider not in (None,):
            raise InputError(f"--provider {config.provider} is an ONNX Runtime provider; use --backend onnxruntime "
                             "--provider tensorrt for ORT's TensorRT provider")
        path = Path(model_path)
        if not path.is_file():
            raise BundleError(f"{path}: model file not found")
        trt = _import_trt()
        cudart = _import_cudart()
        self._trt, self._cudart = trt, cudart
        try:
            self._batch: tuple[int, int, int] = (
                int(opts.get("min_batch", 1)), int(opts.get("opt_batch", 1)), int(opts.get("max_batch", 32)))
            workspace = int(opts.get("workspace_mb", 1024)) << 20
            self._device = int(opts.get("device", 0))
        except ValueError as exc:
            raise InputError(f"tensorrt options must be integers where numbers are meant ({exc})") from None
        if not 1 <= self._batch[0] <= self._batch[1] <= self._batch[2]:
            raise InputError(f"tensorrt: need 1 <= min_batch <= opt_batch <= max_batch, got {self._batch}")
        _check(cudart.cudaSetDevice(self._device), "set device")
        self.gpu_name, self.compute_capability = gpu_info(cudart, self._device)
        self.trt_version = trt.__version__
        major = int(self.trt_version.split(".")[0])
        if major < 10:
            raise BackendError(f"TensorRT {self.trt_version} is too old: edgeship uses the TensorRT 10/11 tensor API")
        precision = config.precision or "fp32"
        if precision not in ("fp32", "fp16"):
            raise InputError(f"tensorrt: precision {precision} is not built here (fp32, or fp16 on TensorRT 10; on "
                             "TensorRT 11 the precision is the graph's: add an fp16 variant)")
        if major >= 11 and precision == "fp16":
            raise InputError(f"TensorRT {self.trt_version} takes the precision from the graph (strong typing): run the "
                             "bundle's fp16 variant (`edgeship variant add BUNDLE tensorrt-fp16`) instead of --precision fp16")
        self._precision = "fp16-flag" if precision == "fp16" else "graph"
        self.cache = EngineCache(opts.get("cache_dir") or _default_cache())
        key = EngineKey(_sha256(path), self.trt_version, self.compute_capability, self._precision,
                        (self._batch,), tuple((k, v) for k, v in sorted(opts.items()) if k == "workspace_mb"))
        self.key = key
        engine_bytes = self.cache.load(key)
        self.cache_note = self.cache.last_miss
        self.build_s = None
        if engine_bytes is None:
            t0 = time.perf_counter()
            engine_bytes = self._build(path, workspace, major)
            self.build_s = time.perf_counter() - t0
            self.cache.store(key, engine_bytes)
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise BackendError(f"{path}: TensorRT could not deserialize the engine it built")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate(), "stream create")
        self._lock = threading.Lock()
        self._names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        io_in = trt.TensorIOMode.INPUT
        self._in_names = [n for n in self._names if engine.get_tensor_mode(n) == io_in]
        self._out_names = [n for n in self._names if engine.get_tensor_mode(n) != io_in]
        self._dtypes = {n: _np_dtype(trt, engine.get_tensor_dtype(n)) for n in self._names}
        self._inputs = [self._spec(n, True) for n in self._in_names]
        self._outputs = [self._spec(n, False) for n in self._out_names]
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _build(self, path: Path, workspace: int, major: int) -> bytes:
        trt = self._trt
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if major == 10 and self._precision == "graph":
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)  # TensorRT 11: strongly typed always, explicit batch always
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BundleError(f"{path}: TensorRT's ONNX parser rejected the model ({errors[:400]})")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        if self._precision == "fp16-flag":
            config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 10 only (removed in 11)
        timing = config.create_timing_cache(self.cache.load_timing(self.trt_version, self.compute_capability))
        config.set_timing_cache(timing, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        dynamic = False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = list(tensor.shape)
            if any(d < 0 for d in shape[1:]):
                raise BundleError(f"{path}: input {tensor.name!r} has dynamic dimensions other than the batch "
                                  f"({shape}); TensorRT needs them fixed (re-export with a fixed input size)")
            if shape and shape[0] < 0:
                dynamic = True
                lo, opt, hi = ([b, *shape[1:]] for b in self._batch)
                profile.set_shape(tensor.name, lo, opt, hi)
        if dynamic:
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"{path}: TensorRT could not build an engine for {self.gpu_name} (see its log above)")
        self.cache.store_timing(self.trt_version, self.compute_capability, config.get_timing_cache().serialize())
        return bytes(serialized)

    def _spec(self, name: str, is_input: bool) -> "TensorSpec":
        from ...bundle import TensorSpec

        shape: list[Union[int, str, None]] = [int(d) if d >= 0 else None for d in self._engine.get_tensor_shape(name)]
        layout = "NCHW" if is_input and len(shape) == 4 and shape[1] in (1, 3) else None
        return TensorSpec(name, shape, self._dtypes[name].name, layout)

    @property
    def inputs(self) -> list["TensorSpec"]:
        return self._inputs

    @property
    def outputs(self) -> list["TensorSpec"]:
        return self._outputs

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr), "free")
            ptr = int(_check(self._cudart.cudaMalloc(nbytes), "malloc"))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._context is None:
            raise BackendError(f"{self.model_path}: this TensorRT engine was closed")
        want = self._inputs[0]
        n = batch.shape[0] if batch.ndim else 0
        if batch.ndim != len(want.shape) or any(isinstance(d, int) and d != s for d, s in zip(want.shape, batch.shape)):
            raise InputError(f"the model rejected an input of shape {list(batch.shape)} (it expects {want.shape})")
        if want.dynamic_batch and not self._batch[0] <= n <= self._batch[2]:
            raise InputError(f"batch {n} is outside the engine's profile {self._batch[0]}..{self._batch[2]} "
                             "(--provider-option max_batch=N rebuilds it)")
        cudart, ctx = self._cudart, self._context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        x = np.ascontiguousarray(batch, dtype=self._dtypes[want.name])
        with self._lock:
            ctx.set_input_shape(want.name, x.shape)
            ptr = self._buffer(want.name, x.nbytes)
            ctx.set_tensor_address(want.name, ptr)
            _check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self._stream), "copy to GPU")
            outs = []
            for name in self._out_names:
                out = np.empty(tuple(ctx.get_tensor_shape(name)), dtype=self._dtypes[name])
                optr = self._buffer(name, max(out.nbytes, 1))
                ctx.set_tensor_address(name, optr)
                outs.append((out, optr))
            if not ctx.execute_async_v3(int(self._stream)):
                raise BackendError(f"{self.model_path}: TensorRT execution failed")
            for out, optr in outs:
                _check(cudart.cudaMemcpyAsync(out.ctypes.data, optr, out.nbytes, d2h, self._stream), "copy from GPU")
            _check(cudart.cudaStreamSynchronize(self._stream), "synchronize")
        return [o for o, _ in outs]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.kind.value,
            "version": self.trt_version,
            "device": f"{self.gpu_name} (sm {self.compute_capability})",
            "precision": "fp16" if self._precision == "fp16-flag" else "graph (strongly typed)",
            "engine": {"path": str(self.cache.path(self.key)), "cached": self.build_s is None,
                       "build_s": self.build_s, "cache_note": self.cache_note,
                       "profile_batch": list(self._batch)},
            "options": dict(self.config.options),
        }

    def close(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            if getattr(self, "_context", None) is None:
                return
            for ptr, _ in self._buffers.values():
                self._cudart.cudaFree(ptr)
            self._buffers.clear()
            self._cudart.cudaStreamDestroy(self._stream)
            self._context = None
            self._engine = None


def _default_cache() -> Path:
    from ...bundle.cache import cache_dir

    return cache_dir() / "tensorrt"
