"""What an ONNX graph says about its inputs and outputs, read with ONNX Runtime (no ``onnx`` needed).

>>> inputs, outputs = ort_specs(load_onnx_session_for_inspection(Path("model.onnx")))
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BundleError
from .manifest import TensorSpec

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _dim(d):
    return d if isinstance(d, int) else (d or None)


def ort_specs(session) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """TensorSpecs of an onnxruntime session's inputs and outputs (image layout guessed from the shape)."""

    def spec(arg, guess_layout: bool) -> TensorSpec:
        shape = [_dim(d) for d in arg.shape]
        layout = None
        if guess_layout and len(shape) == 4:
            if shape[1] in (1, 3):
                layout = "NCHW"
            elif shape[3] in (1, 3):
                layout = "NHWC"
        return TensorSpec(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type), layout)

    return ([spec(a, True) for a in session.get_inputs()], [spec(a, False) for a in session.get_outputs()])


def load_onnx_session_for_inspection(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(
            f"{path}: not a loadable ONNX model ({first[:200]}); check the file is complete, or re-export it"
        ) from exc
