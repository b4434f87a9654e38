"""Manifests for bare model files: read what the graph says, assume the rest and say so."""

from __future__ import annotations

from pathlib import Path

from .manifest import (
    Format,
    Manifest,
    Preprocessing,
    Resize,
    Task,
    TensorSpec,
    safe_name,
)
from ..errors import BundleError, NotABundleError

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


def bare_manifest(path: Path) -> tuple[Manifest, list[str]]:
    """Manifest for a bare .onnx/.tflite/.gguf file, and the list of assumptions made."""
    fmt = Format.from_suffix(path)
    if not path.is_file():
        raise NotABundleError(f"{path}: not a file")
    assumed = [f"bare {fmt.value} file: no edgeship.json, so defaults were assumed (export a bundle to record them)"]
    name = safe_name(path.stem)  # file names may hold spaces, quotes, newlines: not in a URL or a log
    if fmt is Format.GGUF:
        return Manifest(name=name, model=path.name, task=Task.GENERATE, format=fmt), assumed
    if fmt is Format.TFLITE:
        raise BundleError(f"{path}: bare .tflite files need a bundle for now; wrap it with a manifest")
    session = load_onnx_session_for_inspection(path)
    inputs, outputs = ort_specs(session)
    pre = None
    task = Task.OTHER
    image_inputs = [i for i in inputs if i.layout]
    if len(inputs) == 1 and image_inputs:
        spec = image_inputs[0]
        hw = spec.shape[2:4] if spec.layout == "NCHW" else spec.shape[1:3]
        if all(isinstance(d, int) for d in hw):
            size = (int(hw[0]), int(hw[1]))
        else:
            size = (224, 224)
            assumed.append("input size 224x224 (the graph's spatial dimensions are dynamic)")
        pre = Preprocessing(size=size, resize_to=int(round(min(size) / 0.875)), layout=spec.layout)
        assumed.append(
            f"preprocessing: RGB, short side {pre.resize_to} then centre crop {size[0]}x{size[1]}, "
            f"scale 1/255, ImageNet mean/std, {spec.layout}"
        )
    if pre is not None and len(outputs) == 1 and len(outputs[0].shape) == 2:
        task = Task.CLASSIFY
        assumed.append("task: classify (one [N, classes] output); labels: class indices")
    elif pre is not None:
        task = Task.OTHER
        assumed.append("task: other (outputs are returned raw)")
    manifest = Manifest(
        name=name, model=path.name, task=task, format=fmt, inputs=inputs, outputs=outputs, preprocessing=pre
    )
    if pre is None:
        manifest = Manifest(name=name, model=path.name, task=task, format=fmt, inputs=inputs, outputs=outputs)
        assumed.append("no image input recognised: inputs must be given as arrays")
    return manifest, assumed


__all__ = ["bare_manifest", "ort_specs"]
