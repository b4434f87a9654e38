"""The OpenVINO backend: the bundle's ``model.onnx`` (or an OpenVINO IR ``.xml`` variant) on the CPU.

>>> backend = OpenVINOBackend("model.onnx", RuntimeConfig(intra_op_threads=2))
>>> backend.describe()["precision"]                # fp32 unless asked: never a silent bf16
'fp32'
>>> OpenVINOBackend("model.onnx", RuntimeConfig(precision="bf16")).describe()["precision"]
'bf16'                                              # 'fp32' on a CPU without bf16 (said, not hidden)

OpenVINO's CPU plugin picks bf16 by itself on CPUs that have it (AVX-512 BF16, AMX). A reduced
precision changes the numbers, so here the precision hint is always set: f32 by default, bf16 or
f16 only when the config (a declared variant) asks. ``describe`` reports the precision the compiled
model actually uses, read back from OpenVINO.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ..._deps import require
from ...errors import BackendError, BundleError, InputError
from .base import Backend, BackendKind, register_backend

if TYPE_CHECKING:
    from ...bundle import TensorSpec
    from ..config import RuntimeConfig

_HINTS = {None: "f32", "fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32", "uint8": "f32"}
_BACK = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def _precision_name(value: Any) -> str:
    text = str(value).lower().replace("<type: '", "").replace("'>", "")
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(text, text)


def cpu_capabilities() -> list[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of this CPU (e.g. FP32, INT8, BF16)."""
    require("openvino", "openvino", "the OpenVINO backend")
    import openvino as ov

    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


@register_backend(BackendKind.OPENVINO)
class OpenVINOBackend(Backend):
    """One compiled model and one infer request (runs take a lock: a request is not thread-safe)."""

    suffixes = (".onnx", ".xml")

    def __init__(self, model_path: Union[str, os.PathLike], config: "RuntimeConfig"):
        super().__init__(model_path, config)
        if config.provider not in (None, "cpu"):
            raise InputError(f"--provider {config.provider} is an ONNX Runtime provider; the OpenVINO backend runs "
                             "on the CPU here (use --backend onnxruntime --provider openvino for ORT's OpenVINO provider)")
        require("openvino", "openvino", "the OpenVINO backend")
        import openvino as ov

        if not os.path.isfile(model_path):
            raise BundleError(f"{model_path}: model file not found")
        core = ov.Core()
        props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINTS[config.precision], "PERFORMANCE_HINT": "LATENCY"}
        if config.intra_op_threads is not None:
            props["INFERENCE_NUM_THREADS"] = config.intra_op_threads
        props.update(config.option_dict)
        try:
            model = core.read_model(str(model_path))
        except Exception as exc:  # openvino raises RuntimeError subclasses with long C++ traces
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BundleError(f"{model_path}: OpenVINO cannot read this model ({first[:240]})") from exc
        try:
            compiled = core.compile_model(model, "CPU", props)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"{model_path}: OpenVINO cannot compile it for the CPU with {props} ({first[:240]})") from exc
        self._version = ov.__version__.split("-")[0]
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()
        self._props = props
        self._inputs = [self._spec(p, True) for p in compiled.inputs]
        self._outputs = [self._spec(p, False) for p in compiled.outputs]

    @staticmethod
    def _spec(port, is_input: bool) -> "TensorSpec":
        from ...bundle import TensorSpec

        shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        try:
            dtype = np.dtype(port.get_element_type().to_dtype()).name
        except (TypeError, AttributeError, RuntimeError):
            dtype = str(port.get_element_type())
        names = port.get_names()
        name = port.get_any_name() if names else f"{'input' if is_input else 'output'}"
        layout = None
        if is_input and len(shape) == 4:
            layout = "NCHW" if shape[1] in (1, 3) else "NHWC" if shape[3] in (1, 3) else None
        return TensorSpec(name, shape, dtype, layout)

    @property
    def inputs(self) -> list["TensorSpec"]:
        return self._inputs

    @property
    def outputs(self) -> list["TensorSpec"]:
        return self._outputs

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        compiled = self._compiled
        if compiled is None:
            raise BackendError(f"{self.model_path}: this OpenVINO model was closed")
        want = self._inputs[0]
        if batch.ndim != len(want.shape) or any(isinstance(d, int) and d != s for d, s in zip(want.shape, batch.shape)):
            raise InputError(f"the model rejected an input of shape {list(batch.shape)} {batch.dtype} "
                             f"(it expects {want.shape} {want.dtype})")
        with self._lock:
            try:
                result = self._request.infer({0: np.ascontiguousarray(batch)})
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputError(f"OpenVINO rejected an input of shape {list(batch.shape)}: {first[:200]}") from exc
            return [np.array(result[port]) for port in compiled.outputs]

    def describe(self) -> dict[str, Any]:
        compiled = self._compiled
        used = _precision_name(compiled.get_property("INFERENCE_PRECISION_HINT")) if compiled is not None else None
        threads = compiled.get_property("INFERENCE_NUM_THREADS") if compiled is not None else None
        asked = self.config.precision or "fp32"
        out = {
            "backend": self.kind.value,
            "version": self._version,
            "device": "CPU",
            "precision": self.config.precision if self.config.precision in ("int8", "uint8") else (_BACK.get(used, used) if used is not None else None),
            "precision_hint": used,
            "threads": threads,
            "performance_hint": self._props.get("PERFORMANCE_HINT"),
            "options": dict(self.config.options),
        }
        if asked not in (out["precision"], "int8", "uint8"):
            out["precision_note"] = f"{asked} was asked for; this CPU runs {out['precision']} (no {asked} support)"
        return out

    def close(self) -> None:
        self._compiled = None
        self._request = None
