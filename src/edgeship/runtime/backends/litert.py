"""The LiteRT backend (``ai-edge-litert``, XNNPACK): ``.tflite`` models, float or quantized.

>>> backend = LiteRTBackend("efficientnet_lite0.tflite", RuntimeConfig(intra_op_threads=2))
>>> backend.inputs[0]            # a uint8 model is fed float: quantized here with the file's scale
TensorSpec(name='images', shape=[1, 224, 224, 3], dtype='float32', layout='NHWC')
>>> backend.describe()["precision"], backend.describe()["delegate"]
('uint8', 'XNNPACK')

A quantized input (uint8/int8 with a scale and zero point in the file) takes float input and is
quantized here, ``q = round(x / scale) + zero_point``, so the bundle's preprocessing stays float
for every engine; quantized outputs come back dequantized, ``(q - zero_point) * scale``.
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

# --provider-option keys this backend takes, and what they mean.
OPTIONS = {"xnnpack": "1 (default): LiteRT's XNNPACK delegate; 0: the built-in kernels only"}


def _quant(detail: dict) -> tuple[float, int] | None:
    scale, zero = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero)) if scale else None


def _dims(detail: dict) -> list:
    signature = detail.get("shape_signature")
    shape = detail["shape"] if signature is None or len(signature) == 0 else signature
    return [int(d) if d >= 0 else None for d in shape]


@register_backend(BackendKind.LITERT)
class LiteRTBackend(Backend):
    """One LiteRT interpreter. It is not thread-safe, so runs take a lock (one at a time)."""

    suffixes = (".tflite",)

    def __init__(self, model_path: Union[str, os.PathLike], config: "RuntimeConfig"):
        super().__init__(model_path, config)
        unknown = set(config.option_dict) - set(OPTIONS)
        if unknown:
            raise InputError(f"litert: unknown option(s) {', '.join(sorted(unknown))}; known: "
                             + "; ".join(f"{k}={v}" for k, v in OPTIONS.items()))
        if config.provider not in (None, "cpu"):
            raise InputError(f"--provider {config.provider} is an ONNX Runtime provider; LiteRT runs on the CPU")
        require("ai_edge_litert", "litert", "running .tflite models")
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if not os.path.isfile(model_path):
            raise BundleError(f"{model_path}: model file not found")
        xnnpack = config.option_dict.get("xnnpack", "1") not in ("0", "false", "off")
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interp = Interpreter(model_path=str(model_path), num_threads=config.intra_op_threads,
                                 experimental_op_resolver_type=resolver)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BundleError(f"{model_path}: LiteRT cannot load this model ({first[:240]})") from exc
        self._interp = interp
        self._lock = threading.Lock()
        self._xnnpack = xnnpack
        self._in = interp.get_input_details()
        self._out = interp.get_output_details()
        if not self._in:
            raise BundleError(f"{model_path}: the model has no inputs")
        self._in_quant = _quant(self._in[0])
        self._inputs = [self._spec(d, True) for d in self._in]
        self._outputs = [self._spec(d, False) for d in self._out]
        self._batch = self._in[0]["shape"][0] if len(self._in[0]["shape"]) else None

    def _spec(self, d: dict, is_input: bool) -> "TensorSpec":
        from ...bundle import TensorSpec

        shape = _dims(d)
        dtype = np.dtype(d["dtype"])
        quant = _quant(d)
        if quant is not None and dtype.kind in "iu":
            dtype = np.dtype(np.float32)  # fed float and quantized here; outputs come back dequantized
        layout = "NHWC" if is_input and len(shape) == 4 and shape[3] in (1, 3) else None
        return TensorSpec(d["name"], shape, dtype.name, layout)

    @property
    def inputs(self) -> list["TensorSpec"]:
        return self._inputs

    @property
    def outputs(self) -> list["TensorSpec"]:
        return self._outputs

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        d = self._in[0]
        if self._in_quant is None:
            return batch.astype(d["dtype"], copy=False)
        scale, zero = self._in_quant
        info = np.iinfo(d["dtype"])
        q = np.rint(batch.astype(np.float32) / scale) + zero
        return np.clip(q, info.min, info.max).astype(d["dtype"])

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        interp = self._interp
        if interp is None:
            raise BackendError(f"{self.model_path}: this LiteRT interpreter was closed")
        want = list(self._in[0]["shape"])
        if list(batch.shape) != want:
            if batch.ndim == len(want) and list(batch.shape[1:]) == want[1:] and batch.shape[0] > 1:
                # a fixed-batch file run on several samples: one at a time, as a batch of one
                parts = [self.run(batch[i : i + 1]) for i in range(batch.shape[0])]
                return [np.concatenate(cols, axis=0) for cols in zip(*parts)]
            raise InputError(f"the model rejected an input of shape {list(batch.shape)} {batch.dtype} "
                             f"(it expects {want} {self._inputs[0].dtype})")
        x = self._quantize(batch)
        with self._lock:
            interp.set_tensor(self._in[0]["index"], x)
            interp.invoke()
            raw = [interp.get_tensor(d["index"]) for d in self._out]  # copies: the next invoke overwrites
        out = []
        for d, y in zip(self._out, raw):
            q = _quant(d)
            out.append((y.astype(np.float32) - q[1]) * q[0] if q is not None and y.dtype.kind in "iu" else y)
        return out

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        dtype = np.dtype(self._in[0]["dtype"]) if self._in else np.dtype(np.float32)
        precision = dtype.name if self._in_quant is not None else {"float16": "fp16"}.get(dtype.name, "fp32")
        return {
            "backend": self.kind.value,
            "version": version("ai-edge-litert"),
            "device": "CPU",
            "delegate": "XNNPACK" if self._xnnpack else "none (built-in kernels)",
            "threads": self.config.intra_op_threads,  # None: LiteRT's default
            "precision": precision,
            "input_quantization": (None if self._in_quant is None
                                   else {"scale": self._in_quant[0], "zero_point": self._in_quant[1]}),
            "options": dict(self.config.options),
        }

    def close(self) -> None:
        self._interp = None
