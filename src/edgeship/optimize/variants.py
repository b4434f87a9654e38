"""Declared variants of a bundle: a reduced precision or another engine's file, admitted by the INT8 gate.

>>> result = add_variant("resnet18/", VariantKind.OPENVINO_INT8)        # NNCF post-training INT8
>>> result.variant.gate["agreement"], result.variant.gate["passed"]
(0.994, True)
>>> add_variant("effnet/", VariantKind.LITERT, source="efficientnet_lite0.tflite")   # a uint8 .tflite

Every variant goes through the gate ``edgeship quantize`` uses (optimize.qgate: ``choose_gate``
and ``score``), on the same evaluation crops of real photos (the held-out half; calibration uses
the other half, as the ONNX Runtime quantizer does): kept accuracy on labelled data, top-1
agreement with the bundle's FP32 model (``min_agreement``) without labels, and for a bundle whose
export says its weights are random, the similarity of the outputs (``max_output_error``), since
top-1 agreement of near-uniform outputs is noise. The gate used and why is recorded.

A variant that fails is not written. One that passes is added to the bundle folder with its own
golden pair: an evaluation crop prepared as the variant is fed, and the FP32 model's output for it,
with a tolerance of three times the error measured at the gate (plus 0.1% of the output's range),
so that the golden check at load refuses an engine that computes it differently.
"""

from __future__ import annotations

import dataclasses
import enum
import shutil
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from .._deps import require
from ..bundle import Golden, Variant, now_iso, open_bundle
from ..bundle.store import add_files
from ..errors import InputError, QuantizeError


class VariantKind(str, enum.Enum):
    OPENVINO_BF16 = "openvino-bf16"  # OpenVINO's bf16 precision hint on the bundle's model.onnx
    OPENVINO_INT8 = "openvino-int8"  # NNCF post-training INT8, an OpenVINO IR (.xml + .bin)
    LITERT = "litert"  # a .tflite file given by the user (uint8, int8 or float), run by LiteRT
    TENSORRT_FP16 = "tensorrt-fp16"  # an fp16 ONNX: TensorRT 11 takes the precision from the graph
    ONNXRUNTIME_INT8 = "onnxruntime-int8"  # the model `edgeship quantize` picks, as a variant of the FP32 bundle


@dataclass(frozen=True)
class VariantConfig:
    """Thresholds as QuantizeConfig's (the same gate): see optimize.qconfig for why each is what it is."""

    calibration: str = "photos"
    calibration_samples: int = 64
    eval_samples: int = 300
    gate: str = "auto"  # auto, accuracy, agreement or similarity (qconfig.Gate)
    min_agreement: float = 0.98
    min_accuracy: float = 0.99
    max_output_error: float = 0.15
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        from .qconfig import Gate

        for name in ("min_agreement", "min_accuracy"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name}: must be within [0, 1], got {getattr(self, name)!r}")
        if self.max_output_error < 0:
            raise InputError(f"max_output_error: must be >= 0, got {self.max_output_error!r}")
        try:
            Gate(self.gate)
        except ValueError:
            raise InputError(f"gate: expected one of {', '.join(g.value for g in Gate)}, got {self.gate!r}") from None
        if self.calibration_samples < 1 or self.eval_samples < 2:
            raise InputError("calibration_samples must be at least 1 and eval_samples at least 2")


@dataclass
class VariantResult:
    variant: Variant
    passed: bool
    reason: str
    bundle: Any = None  # the updated Bundle when written


@dataclass
class _Built:
    """What a builder made: the files to add, the variant (gate and golden filled in later), how to run it."""

    files: dict[str, Path]
    variant: Variant
    run: Callable[[list[np.ndarray]], np.ndarray]  # evaluation inputs (variant's view) -> outputs [N, -1]


_BUILDERS: dict[VariantKind, Callable[..., _Built]] = {}


def register_builder(kind: VariantKind):
    def deco(fn):
        _BUILDERS[kind] = fn
        return fn

    return deco


def _runner(bundle, variant: Variant, threads: int, root: Path):
    """Run a variant through the runtime seam, without its (not yet written) golden check."""
    from ..runtime import Model, RuntimeConfig

    shim = dataclasses.replace(bundle.manifest, variants=[variant])
    view = type(bundle)(root, shim, source=bundle.source)
    model = Model(view, RuntimeConfig(variant=variant.name, intra_op_threads=threads, golden_check=False))

    def run(samples: list[np.ndarray]) -> np.ndarray:
        return np.stack([model.run(x[None])[0].reshape(-1) for x in samples])

    return run


@register_builder(VariantKind.OPENVINO_BF16)
def _openvino_bf16(bundle, work: Path, config: VariantConfig, data, source=None) -> _Built:
    from ..runtime.backends.ov import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        raise QuantizeError("openvino-bf16: this CPU has no bf16 support (OpenVINO would run it as fp32), so the "
                            "gate cannot measure bf16 here; add the variant on a CPU with AVX-512 BF16 or AMX")
    v = Variant("openvino-bf16", "openvino", bundle.manifest.model, precision="bf16",
                options={"INFERENCE_PRECISION_HINT": "bf16"})
    return _Built({}, v, _runner(bundle, v, config.threads, bundle.root))


@register_builder(VariantKind.OPENVINO_INT8)
def _openvino_int8(bundle, work: Path, config: VariantConfig, data, source=None) -> _Built:
    ov = require("openvino", "openvino", "OpenVINO variants")
    nncf = require("nncf", "optimize", "OpenVINO INT8 (NNCF post-training quantization)")
    model = ov.Core().read_model(str(bundle.model_path))
    dataset = nncf.Dataset(data.calibration, lambda x: np.ascontiguousarray(x[None], dtype=np.float32))
    quantized = nncf.quantize(model, dataset, subset_size=len(data.calibration))
    xml = work / "model-openvino-int8.xml"
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    files = {xml.name: xml, xml.with_suffix(".bin").name: xml.with_suffix(".bin")}
    v = Variant("openvino-int8", "openvino", xml.name, precision="int8")
    return _Built(files, v, _runner(bundle, v, config.threads, work))


@register_builder(VariantKind.LITERT)
def _litert(bundle, work: Path, config: VariantConfig, data, source=None) -> _Built:
    from ..bundle.infer import infer_manifest

    if source is None or Path(source).suffix.lower() != ".tflite":
        raise InputError("the litert variant needs the .tflite file: --from MODEL.tflite")
    found = infer_manifest(Path(source))
    name = "model-litert.tflite"
    shutil.copyfile(source, work / name)
    from ..bundle.infer import _tflite_graph

    inputs, _, quant = _tflite_graph(Path(source))
    from ai_edge_litert.interpreter import Interpreter

    dtype = np.dtype(Interpreter(model_path=str(source)).get_input_details()[0]["dtype"]).name
    precision = dtype if quant is not None else "fp32"  # uint8 / int8 inputs: a quantized model
    assumed_pre = found.manifest.preprocessing
    pre = dataclasses.replace(bundle.manifest.preprocessing, size=assumed_pre.size, layout=assumed_pre.layout,
                              scale=assumed_pre.scale, mean=assumed_pre.mean, std=assumed_pre.std) if assumed_pre else None
    post = None
    if found.manifest.postprocessing.softmax is False:  # the file ends in a softmax: no second one
        post = dataclasses.replace(bundle.manifest.postprocessing, softmax=False)
    v = Variant("litert-" + precision, "litert", name, precision=precision, preprocessing=pre, postprocessing=post)
    return _Built({name: work / name}, v, _runner(bundle, v, config.threads, work))


@register_builder(VariantKind.TENSORRT_FP16)
def _tensorrt_fp16(bundle, work: Path, config: VariantConfig, data, source=None) -> _Built:
    require("onnx", "optimize", "converting the model to fp16")
    from .qbuild import build_fp16

    path = work / "model-fp16.onnx"
    build_fp16(bundle.model_path, path)
    v = Variant("tensorrt-fp16", "tensorrt", path.name, precision="fp16")
    # Gated here through ONNX Runtime on the CPU (the graph's fp16 numerics); on the GPU TensorRT's
    # golden check at load holds it to the same tolerance.
    cpu = dataclasses.replace(v, backend="onnxruntime")
    return _Built({path.name: path}, v, _runner(bundle, cpu, config.threads, work))


@register_builder(VariantKind.ONNXRUNTIME_INT8)
def _onnxruntime_int8(bundle, work: Path, config: VariantConfig, data, source=None) -> _Built:
    from .quantize import QuantizeConfig, quantize

    qcfg = QuantizeConfig(calibration=config.calibration, calibration_samples=config.calibration_samples,
                          eval_samples=config.eval_samples, gate=config.gate, min_agreement=config.min_agreement,
                          min_accuracy=config.min_accuracy, max_output_error=config.max_output_error,
                          threads=config.threads, seed=config.seed, mode="static")
    result = quantize(bundle, qcfg, workdir=work / "quantize")
    if result.chosen is None:
        raise QuantizeError(f"onnxruntime-int8: quantize kept FP32 ({result.reason})")
    path = work / "model-onnxruntime-int8.onnx"
    shutil.copyfile(result.chosen.path, path)
    v = Variant("onnxruntime-int8", "onnxruntime", path.name, precision="int8",
                options={})
    return _Built({path.name: path}, v, _runner(bundle, v, config.threads, work))


def add_variant(bundle_dir: Union[str, Path], kind: Union[VariantKind, str], *, source: Union[str, Path, None] = None,
                config: VariantConfig | None = None, log: Callable[[str], None] | None = None,
                write: bool = True, keep_failed: bool = False) -> VariantResult:
    """Build the ``kind`` variant of the bundle folder ``bundle_dir``, gate it, and add it when it passes.

    ``keep_failed``: add it even when it fails, marked ``gate.passed: false`` (for side-by-side
    benchmarks: such a variant runs only when named, and tune and the pick never choose it).
    """
    from .calibration import load_quant_data
    from .qconfig import Gate
    from .qgate import Candidate, choose_gate, outputs, score

    try:
        kind = VariantKind(kind)
    except ValueError:
        raise InputError(f"unknown variant {kind!r}; kinds: {', '.join(k.value for k in VariantKind)}") from None
    config = config or VariantConfig()
    say = log or (lambda line: None)
    bundle = open_bundle(bundle_dir)
    if bundle.manifest.preprocessing is None:
        raise InputError(f"{bundle.name}: variants are gated on real photos, and this bundle has no image preprocessing")
    data = load_quant_data(bundle, config.calibration, config.calibration_samples, config.eval_samples, seed=config.seed)
    say(f"evaluation: {len(data.evaluation)} crops of real photos; calibration: {len(data.calibration)}")
    ref = outputs(bundle.model_path, data.evaluation, config.threads)
    with tempfile.TemporaryDirectory(prefix="edgeship-variant-") as tmp:
        work = Path(tmp)
        built = _BUILDERS[kind](bundle, work, config, data, source)
        v = built.variant
        evaluation = data.evaluation
        if v.preprocessing is not None:  # the same crops, prepared as the variant is fed
            view = types.SimpleNamespace(manifest=dataclasses.replace(bundle.manifest, preprocessing=v.preprocessing),
                                         labels=bundle.labels, name=bundle.name)
            evaluation = load_quant_data(view, config.calibration, config.calibration_samples, config.eval_samples,
                                         seed=config.seed).evaluation
        got = built.run(evaluation)
        ref_cmp = ref
        if v.postprocessing is not None and v.postprocessing.softmax is False and not _probabilities(ref, bundle):
            from ..runtime.decoders import softmax

            ref_cmp = softmax(ref)  # the variant answers probabilities: compare in that space
        cand = Candidate(v.name, kind.value, work)
        gate, why = choose_gate(Gate(config.gate), bundle, data.labels is not None)
        ref_acc = float(np.mean(ref.argmax(1) == data.labels)) if data.labels is not None else None
        score(cand, got, ref_cmp, data.labels, ref_acc, config, gate)
        err = np.abs(got.astype(np.float64) - ref_cmp.astype(np.float64)).max(axis=1)
        threshold = {Gate.ACCURACY: config.min_accuracy, Gate.AGREEMENT: config.min_agreement,
                     Gate.SIMILARITY: config.max_output_error}[gate]
        gate_info = {
            "gate": gate.value, "why": why, "threshold": threshold, "passed": bool(cand.passed),
            "agreement": cand.agreement, "cosine": cand.cosine, "output_error": cand.output_error,
            "accuracy": cand.accuracy, "samples": len(evaluation), "max_abs_error": float(err.max()),
            "data": {k: data.info.get(k) for k in ("source", "calibration_samples", "evaluation_samples", "augmentation")},
        }
        say(f"{v.name}: agreement {cand.agreement:.4f}, output error {cand.output_error:.3f}, max |error| "
            f"{err.max():.3g} -> {'passes' if cand.passed else 'fails'} the {gate.value} gate ({why})")
        i = int(np.argmin(err))  # the golden crop: a typical one, where the variant agrees best
        atol = float(3 * err[i] + 1e-3 * (ref_cmp[i].max() - ref_cmp[i].min()))
        golden_name = f"golden-{v.name}.npz"
        np.savez(work / golden_name, input=evaluation[i][None], output=ref_cmp[i].reshape((1,) + tuple(_out_shape(bundle))))
        v = dataclasses.replace(v, golden=Golden(file=golden_name, atol=atol, rtol=0.0), gate=gate_info,
                                created=now_iso())
        measured = {Gate.ACCURACY: f"accuracy {cand.accuracy}", Gate.AGREEMENT: f"agreement {cand.agreement:.4f}",
                    Gate.SIMILARITY: f"output error {cand.output_error:.3f}"}[gate]
        need = "at most" if gate is Gate.SIMILARITY else "at least"
        reason = (f"{v.name} {'passes' if cand.passed else 'fails'} the {gate.value} gate: {measured} "
                  f"(needs {need} {threshold})")
        if not write or not (cand.passed or keep_failed):
            return VariantResult(v, bool(cand.passed), reason)
        files = {**built.files, golden_name: work / golden_name}

        def change(m):
            return dataclasses.replace(m, variants=[*[x for x in m.variants if x.name != v.name], v])

        updated = add_files(bundle.root, files, change)
    return VariantResult(v, bool(cand.passed), reason, updated)


def _probabilities(ref: np.ndarray, bundle) -> bool:
    if bundle.manifest.postprocessing.softmax is not None:
        return not bundle.manifest.postprocessing.softmax
    from ..runtime.decoders import looks_like_probabilities

    return all(looks_like_probabilities(r) for r in ref[:8])


def _out_shape(bundle) -> list[int]:
    golden = bundle.golden()
    if golden is not None:
        return list(golden[1].shape[1:])
    spec = bundle.manifest.outputs[0].shape if bundle.manifest.outputs else [None, -1]
    return [d if isinstance(d, int) else -1 for d in spec[1:]]


def remove_variant(bundle_dir: Union[str, Path], name: str):
    """Drop a variant from the manifest (its files stay listed and verified; a new export drops them)."""
    bundle = open_bundle(bundle_dir)
    bundle.manifest.variant(name)  # SchemaError naming the declared ones
    return add_files(bundle.root, {}, lambda m: dataclasses.replace(m, variants=[v for v in m.variants if v.name != name]))
