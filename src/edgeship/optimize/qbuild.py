"""Building quantized models with ONNX Runtime: pre-processing, calibration (with its fallback), layouts.

>>> note = pre_process(Path("model.onnx"), work / "pre.onnx")
>>> calib = calibrate(work / "pre.onnx", reader, Method.PERCENTILE, work / "calibration.json", work)
>>> calib.fallback          # tensors the histogram could not describe, calibrated with MinMax instead
{'/features.2/Sigmoid_output_0': 'Too many bins for data range. Cannot create 2048 finite-sized bins.'}
>>> build(plan, work / "pre.onnx", work / "q.onnx", fmt, config, calib)

Calibration runs once, into ONNX Runtime's calibration cache; every layout is then quantized from that
cache, so all candidates share the same ranges.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import EdgeshipError, QuantizeError
from .qconfig import Method, QuantizeConfig, TargetFormat
from .qlayouts import Plan

MAX_NAMED = 8  # tensors named in the log line and the provenance; the count is always complete


def pre_process(src: Path, dst: Path) -> str:
    """ONNX Runtime's quantization pre-processing of ``src`` into ``dst``; returns what was done."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return "onnxruntime quant_pre_process"
    except Exception as exc:  # symbolic shape inference rejects some graphs; quantize the original then
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
            return f"onnxruntime quant_pre_process without symbolic shapes ({type(exc).__name__})"
        except Exception:
            shutil.copyfile(src, dst)
            return f"none: quant_pre_process failed ({_first_line(exc, 120)})"


def _first_line(exc: BaseException, limit: int = 200) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def _ort_method(method: Method):
    from onnxruntime.quantization import CalibrationMethod

    return {Method.MINMAX: CalibrationMethod.MinMax, Method.ENTROPY: CalibrationMethod.Entropy,
            Method.PERCENTILE: CalibrationMethod.Percentile}[method]


def _qtype(code: str):
    from onnxruntime.quantization import QuantType

    return {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}[code]


# ---------------------------------------------------------------- calibration


@dataclass
class Calibration:
    """The calibration every static layout is quantized from, and where it fell back to MinMax."""

    method: Method  # what the config asked for
    cache: Path  # ONNX Runtime's calibration cache (JSON), read by every build
    ranged: Method  # the method the cache is labelled with (MinMax when the whole model fell back)
    tensors: int = 0
    fallback: dict[str, str] = field(default_factory=dict)  # tensor -> why its range is MinMax's
    model_fallback: Union[str, None] = None  # why the whole model was calibrated with MinMax

    def note(self) -> Union[str, None]:
        """One line for the log when anything fell back, else None."""
        if self.model_fallback:
            return (f"calibration: {self.method.value} failed on this model ({self.model_fallback}); "
                    f"every tensor calibrated with minmax instead")
        if not self.fallback:
            return None
        names = list(self.fallback)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        reasons = "; ".join(dict.fromkeys(self.fallback.values()))
        return (f"calibration: {len(names)} of {self.tensors} tensors calibrated with minmax instead of "
                f"{self.method.value} ({reasons}): {shown}")

    def info(self) -> dict[str, Any]:
        """What the provenance records."""
        out: dict[str, Any] = {"method": self.method.value, "tensors": self.tensors}
        if self.model_fallback:
            out["fallback"] = {"method": "minmax", "scope": "model", "reason": self.model_fallback}
        elif self.fallback:
            names = list(self.fallback)
            out["fallback"] = {"method": "minmax", "scope": "tensors", "count": len(names),
                               "tensors": names[:MAX_NAMED], "reasons": sorted(set(self.fallback.values()))}
        return out


def _histogram_collector(calibrator):
    """A HistogramCollector that gives a tensor MinMax's range where the histogram method fails on it.

    ONNX Runtime's histogram calibrators (Entropy, Percentile) fail the whole model on one tensor whose
    values numpy cannot bin: a near-constant activation (a sigmoid stuck at 0.5 in a random-weight
    EfficientNet-B0) spans fewer float32 steps than the 2048 bins, "Too many bins for data range". Each
    tensor is collected and computed on its own here, and one that fails keeps its min/max.
    """
    from onnxruntime.quantization.calibrate import HistogramCollector, TensorData

    class Tolerant(HistogramCollector):
        def __init__(self) -> None:
            super().__init__(method=calibrator.method, symmetric=calibrator.symmetric, num_bins=calibrator.num_bins,
                             num_quantized_bins=calibrator.num_quantized_bins, percentile=calibrator.percentile,
                             scenario=getattr(calibrator, "scenario", "same"))
            self.minmax: dict[str, tuple[float, float]] = {}
            self.failed: dict[str, str] = {}

        def collect(self, name_to_arr):
            for name, arrays in name_to_arr.items():
                values = np.asarray(arrays)
                lo, hi = (float(np.nanmin(values)), float(np.nanmax(values))) if values.size else (0.0, 0.0)
                old = self.minmax.get(name)
                self.minmax[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
                if name in self.failed:
                    continue
                try:
                    super().collect({name: arrays})
                except Exception as exc:  # numpy's binning or an assertion of the collector, for this tensor
                    self.failed[name] = _first_line(exc)
                    self.histogram_dict.pop(name, None)

        def compute_collection_result(self):
            collected, out = self.histogram_dict, {}
            try:
                for name, hist in collected.items():
                    self.histogram_dict = {name: hist}
                    try:
                        out.update(super().compute_collection_result())
                    except Exception as exc:
                        self.failed[name] = _first_line(exc)
            finally:
                self.histogram_dict = collected
            for name in self.failed:
                lo, hi = self.minmax[name]
                if self.symmetric:  # the same shape of range the histogram method gives the other tensors
                    lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
                out[name] = TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            return out

    return Tolerant()


def _collect(pre: Path, reader, method: Method, work: Path, tolerant: bool):
    """Run ONNX Runtime's calibrator for ``method`` over ``reader``: (TensorsData, failed tensors)."""
    from onnxruntime.quantization.calibrate import create_calibrator

    augmented = work / "calibration-augmented.onnx"
    reader.rewind()
    try:
        # The same calibrator quantize_static would create (no calibration options are set).
        calibrator = create_calibrator(pre, None, augmented_model_path=str(augmented),
                                       calibrate_method=_ort_method(method))
        collector = None
        if tolerant and method is not Method.MINMAX:
            collector = calibrator.collector = _histogram_collector(calibrator)
        calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
        return ranges, dict(collector.failed) if collector is not None else {}
    finally:
        augmented.unlink(missing_ok=True)


def calibrate(pre: Path, reader, method: Method, cache: Path, work: Path) -> Calibration:
    """Calibrate every quantizable tensor of ``pre`` once, into ``cache``; see :class:`Calibration`.

    Tensors the histogram methods cannot describe fall back to MinMax one by one; if the calibrator
    fails for another reason, the whole model is calibrated with MinMax. Either is reported, never hidden.
    """
    from onnxruntime.quantization.calibrate import save_tensors_data

    # ORT's histogram calibrators print progress to stdout; keep the CLI's output to edgeship's own lines.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            ranges, failed = _collect(pre, reader, method, work, tolerant=True)
            result = Calibration(method, cache, method, len(ranges.data), failed)
        except EdgeshipError:
            raise
        except Exception as exc:  # the calibrator itself, not one tensor: MinMax for the model
            if method is Method.MINMAX:
                raise QuantizeError(f"onnxruntime could not calibrate the model ({_first_line(exc)})") from exc
            try:
                ranges, _ = _collect(pre, reader, Method.MINMAX, work, tolerant=False)
            except Exception as exc2:
                raise QuantizeError(f"onnxruntime could not calibrate the model with {method.value} "
                                    f"({_first_line(exc)}) nor minmax ({_first_line(exc2)})") from exc2
            result = Calibration(method, cache, Method.MINMAX, len(ranges.data), model_fallback=_first_line(exc))
    save_tensors_data(ranges, cache)
    return result


# ---------------------------------------------------------------- building


def build(plan: Plan, pre: Path, out: Path, fmt: TargetFormat, config: QuantizeConfig,
          calibration: Union[Calibration, None]) -> None:
    """Quantize ``pre`` into ``out`` as ``plan`` says; static plans read their ranges from ``calibration``."""
    try:
        _run_quantizer(plan, pre, out, fmt, config, calibration)
    except EdgeshipError:
        raise
    except Exception as exc:  # the ORT quantizer raises ValueError/RuntimeError/onnx errors on odd graphs
        raise QuantizeError(f"layout {plan.name}: onnxruntime could not quantize the model ({_first_line(exc)})") from exc


def _run_quantizer(plan: Plan, pre: Path, out: Path, fmt: TargetFormat, config: QuantizeConfig,
                   calibration: Union[Calibration, None]) -> None:
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

    if plan.dynamic:
        quantize_dynamic(str(pre), str(out), op_types_to_quantize=list(plan.op_types or ()),
                         per_channel=config.per_channel, reduce_range=config.reduce_range, weight_type=_qtype(fmt.weight),
                         nodes_to_exclude=list(plan.exclude))
        return
    if calibration is None:
        raise QuantizeError(f"layout {plan.name}: a static layout needs a calibration (none was run)")
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(pre), str(out), None,
            quant_format=QuantFormat.QOperator if plan.quant_format == "qoperator" else QuantFormat.QDQ,
            op_types_to_quantize=list(plan.op_types) if plan.op_types else None,
            per_channel=config.per_channel, reduce_range=config.reduce_range,
            activation_type=_qtype(fmt.activation), weight_type=_qtype(fmt.weight),
            nodes_to_exclude=list(plan.exclude), calibrate_method=_ort_method(calibration.ranged),
            calibration_cache_path=str(calibration.cache),
            extra_options={"ActivationSymmetric": fmt.symmetric_activations, "WeightSymmetric": True},
        )


def build_fp16(pre: Path, out: Path) -> None:
    """FP16 weights and activations, float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(pre)), keep_io_types=True)
    onnx.save(model, str(out))
