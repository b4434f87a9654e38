"""edgeship quantize: quantized graphs, the accuracy gate's float fallback, the speed gate, errors.

Tiny models from quant_fixtures; timing is injected where a test depends on it (never asserted).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")

from edgeship.bundle import open_bundle  # noqa: E402
from edgeship.errors import InputError, SchemaError  # noqa: E402
from edgeship.optimize.quantize import Mode, QuantizeConfig, quantize  # noqa: E402
from tests.optimize import quant_fixtures as fx  # noqa: E402


def int8_faster(paths):
    """A deterministic timer: FP32 10 ms, every quantized model 4 ms."""
    return {k: ((10.0, 11.0) if k == "fp32" else (4.0, 4.5)) for k in paths}


def int8_slower(paths):
    return {k: ((10.0, 11.0) if k == "fp32" else (14.0, 15.0)) for k in paths}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    return {
        "root": root,
        "bundle": fx.make_bundle(root, "tiny"),
        "sensitive": fx.make_bundle(root, "sensitive", sensitive=True),
        "images": fx.image_folder(root / "images", n=8),
    }


def cfg(work, **kw):
    base = dict(calibration=str(work["images"]), method="minmax", calibration_samples=16, eval_samples=64, target="x86",
                mode="static", timing_runs=6)
    base.update(kw)
    return QuantizeConfig(**base)


def op_types(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_quantized_graph_has_quantized_operators(work):
    out = work["root"] / "q1"
    result = quantize(work["bundle"], cfg(work, layouts=["all"]), out, timer=int8_faster)
    assert result.choice == "int8:all"
    ops = op_types(out / "model.onnx")
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops or "QLinearConv" in ops
    assert result.chosen.agreement >= 0.99
    bundle = open_bundle(out)  # verifies every sha256
    row = bundle.manifest.provenance[-1]
    assert row.stage == "quantize"
    assert row.metrics["choice"] == "int8:all"
    assert row.metrics["fp32"]["p50_ms"] == 10.0 and row.metrics["chosen"]["p50_ms"] == 4.0
    assert row.params["method"] == "minmax"


def test_qoperator_layout_writes_qlinearconv(work, tmp_path):
    result = quantize(work["bundle"], cfg(work, layouts=["qoperator"]), None, timer=int8_faster, workdir=tmp_path)
    assert result.choice == "int8:qoperator"
    assert "QLinearConv" in op_types(result.chosen.path)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods(work, method):
    result = quantize(work["bundle"], cfg(work, layouts=["all"], method=method), None, timer=int8_faster)
    assert result.choice == "int8:all"


def test_accuracy_gate_keeps_sensitive_nodes_float(work):
    out = work["root"] / "q-sensitive"
    # The tiny graph has 7 nodes: the outlier's producer, consumer and activation are most of it.
    result = quantize(work["sensitive"], cfg(work, layouts=["all"], max_float_fraction=0.8), out, timer=int8_faster)
    first = result.candidates[0]
    assert first.name == "int8:all" and first.passed is False  # plain INT8 collapses
    assert result.chosen is not None and result.chosen.excluded, result.reason
    assert result.chosen.passed and result.chosen.agreement >= 0.98
    excluded = {n for e in result.chosen.excluded for n in e["nodes"]}
    assert any("Conv" in n or "Relu" in n for n in excluded)
    row = open_bundle(out).manifest.provenance[-1]
    assert set(row.metrics["excluded_nodes"]) == excluded


def test_accuracy_gate_without_fallback_keeps_fp32(work):
    result = quantize(work["sensitive"], cfg(work, layouts=["all"], max_float_fraction=0.0), None, timer=int8_faster)
    assert result.choice == "fp32"
    assert "accuracy gate" in result.reason


def test_speed_gate_keeps_fp32_when_int8_is_slower(work):
    out = work["root"] / "q-slow"
    result = quantize(work["bundle"], cfg(work, layouts=["all", "conv-only"]), out, timer=int8_slower)
    assert result.choice == "fp32"
    assert "no quantized layout is faster" in result.reason
    bundle = open_bundle(out)
    assert "QuantizeLinear" not in op_types(bundle.model_path)
    row = bundle.manifest.provenance[-1]
    assert row.metrics["choice"] == "fp32"
    assert row.metrics["candidates"][0]["speedup"] == pytest.approx(10 / 14, abs=1e-3)


def test_speed_gate_confirmation_run_can_overrule(work):
    calls = []

    def flaky(paths):  # the selection run says faster, the confirmation says slower
        calls.append(list(paths))
        return int8_faster(paths) if len(calls) == 1 else int8_slower(paths)

    result = quantize(work["bundle"], cfg(work, layouts=["all"]), None, timer=flaky)
    assert result.choice == "fp32" and "confirmed" in result.reason
    assert len(calls) == 2


def test_confirmation_times_the_runner_up_beside_the_winner(work):
    """Selection ranks conv-only first; the confirmation run, timing it beside 'all', refutes it."""
    calls = []

    def timer(paths):
        names = list(paths)
        calls.append(names)
        if len(calls) > 1:  # the confirmation run: conv-only is slower than FP32 after all
            table = {"fp32": 10.0, "int8:conv-only": 12.0, "int8:all": 4.0}
        else:
            table = {"fp32": 10.0, "int8:conv-only": 3.0, "int8:all": 4.0}
        return {n: (table[n], table[n] + 1) for n in names}

    result = quantize(work["bundle"], cfg(work, layouts=["all", "conv-only"]), None, timer=timer)
    assert calls[-1] == ["fp32", "int8:conv-only", "int8:all"]
    assert result.choice == "int8:all" and "2.50x FP32" in result.reason


def test_dynamic_and_fp16_modes(work, tmp_path):
    dyn = quantize(work["bundle"], cfg(work, mode="dynamic"), None, timer=int8_faster, workdir=tmp_path / "d")
    assert dyn.mode is Mode.DYNAMIC and dyn.choice == "int8:dynamic"
    assert "MatMulInteger" in op_types(dyn.chosen.path) or "DynamicQuantizeLinear" in op_types(dyn.chosen.path)
    half = quantize(work["bundle"], cfg(work, mode="fp16"), None, timer=int8_faster, workdir=tmp_path / "h")
    assert half.choice == "fp16"
    init_types = {i.data_type for i in onnx.load(str(half.chosen.path)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in init_types


def test_auto_mode_picks_fp16_for_gpu_targets(work):
    result = quantize(work["bundle"], cfg(work, mode="auto", target="jetson-orin-nx"), None, timer=int8_faster)
    assert result.mode is Mode.FP16


@pytest.mark.parametrize("field,value", [
    ("min_accuracy", 1.5), ("method", "median"), ("mode", "int4"), ("eval_samples", 0),
    ("layouts", ["everything"]), ("threads", -1),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(InputError, match=field):
        QuantizeConfig(**{field: value})


def test_recipe_dict_errors_name_the_key():
    from edgeship._config import from_dict

    with pytest.raises(SchemaError, match=r"quantize\.min_accuracy"):
        from_dict(QuantizeConfig, {"min_accuracy": "high"}, where="quantize")
    with pytest.raises(SchemaError, match=r"quantize\.calibraton"):
        from_dict(QuantizeConfig, {"calibraton": "photos"}, where="quantize")
    assert from_dict(QuantizeConfig, {"method": "entropy"}).method.value == "entropy"


# ---------------------------------------------------------------- CLI


def cli(*argv):
    from edgeship.cli import main

    return main(list(argv))


def test_cli_missing_bundle(tmp_path, capsys):
    code = cli("quantize", str(tmp_path / "nope"), "-o", str(tmp_path / "out"))
    assert code == 2  # bad input
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_bad_calibration_folder(work, tmp_path, capsys):
    code = cli("quantize", str(work["bundle"]), "-o", str(tmp_path / "out"), "--calibration", str(tmp_path / "missing"))
    assert code == 2
    assert "calibration folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli("quantize", str(work["bundle"]), "-o", str(tmp_path / "out"), "--calibration", str(empty))
    assert code == 2
    assert "no images" in capsys.readouterr().err


def test_cli_bad_min_accuracy(work, tmp_path, capsys):
    code = cli("quantize", str(work["bundle"]), "-o", str(tmp_path / "out"), "--min-accuracy", "2")
    assert code == 2
    assert "--min-accuracy: expected a number from 0 to 1" in capsys.readouterr().err


def test_cli_end_to_end_writes_bundle_and_json(work, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report.json"
    code = cli("quantize", str(work["bundle"]), "-o", str(out), "--calibration", str(work["images"]),
               "--target", "x86", "--mode", "static", "--layouts", "all", "--eval-samples", "32",
               "--calibration-samples", "8", "--timing-runs", "6", "--json", str(report))
    assert code == 0
    data = json.loads(report.read_text())
    assert data["choice"] in ("int8:all", "fp32")  # real timing decides; both are valid
    assert data["fp32"]["p50_ms"] > 0
    assert open_bundle(out).manifest.provenance[-1].stage == "quantize"


def test_fashion_mnist_calibration_gates_on_labelled_accuracy(work):
    from edgeship.optimize.data import FASHION_MNIST_ROOT

    if not FASHION_MNIST_ROOT.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    bundle = fx.make_fmnist_bundle(work["root"])
    result = quantize(bundle, cfg(work, calibration="fashion-mnist", layouts=["all"], eval_samples=200,
                                  min_accuracy=0.5), None, timer=int8_faster)
    assert result.data["labelled"] and result.data["evaluation_split"] == "test"
    assert result.fp32.accuracy is not None and result.candidates[0].accuracy is not None


def test_image_calibration_needs_preprocessing(work):
    # A bundle without preprocessing cannot turn pictures into inputs: the error says what to do.
    from edgeship.bundle import open_bundle as ob

    b = ob(fx.make_fmnist_bundle(_fresh(work["root"] / "nopre")))
    with pytest.raises(InputError, match="no image preprocessing"):
        quantize(b, cfg(work), None, timer=int8_faster)


def _fresh(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_quantize_verb_registers_without_heavy_imports():
    import subprocess
    import sys as _sys

    code = ("import sys, argparse; import edgeship.commands.quantize as q; "
            "q.register(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules))")
    out = subprocess.run([_sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
