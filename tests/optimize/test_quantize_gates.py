"""quantize: the calibration fallback for tensors the histogram cannot bin, and the gate chosen per model.

Both failed before: the Percentile calibrator stopped the whole run on a near-constant sigmoid ("Too
many bins for data range"), and random-weight models were judged on top-1 agreement of near-tied
outputs. Timing is injected (never asserted).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")

from edgeship.bundle import Stage, StageName, open_bundle  # noqa: E402
from edgeship.errors import InputError  # noqa: E402
from edgeship.optimize.qgate import choose_gate, output_error  # noqa: E402
from edgeship.optimize.quantize import Gate, QuantizeConfig, quantize  # noqa: E402
from tests.optimize import quant_fixtures as fx  # noqa: E402


def int8_faster(paths):
    return {k: ((10.0, 11.0) if k == "fp32" else (4.0, 4.5)) for k in paths}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return fx.image_folder(tmp_path_factory.mktemp("gate-images"), n=8)


def cfg(images, **kw):
    base = dict(calibration=str(images), method="minmax", calibration_samples=16, eval_samples=64, target="x86",
                mode="static", timing_runs=6, layouts=["all"])
    base.update(kw)
    return QuantizeConfig(**base)


# ---------------------------------------------------------------- calibration fallback


def test_plain_percentile_calibration_fails_on_the_near_constant_graph(tmp_path, images):
    """The premise: ONNX Runtime alone cannot calibrate this graph with Percentile."""
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    from edgeship.optimize.calibration import ArrayReader, load_quant_data

    bundle = open_bundle(fx.near_constant_bundle(tmp_path))
    data = load_quant_data(bundle, str(images), 16, 8)
    with pytest.raises(ValueError, match="Too many bins"):
        quantize_static(str(bundle.model_path), str(tmp_path / "q.onnx"), ArrayReader("input", data.calibration),
                        calibrate_method=CalibrationMethod.Percentile)


def test_percentile_falls_back_to_minmax_for_the_tensor_it_cannot_bin(tmp_path, images):
    lines = []
    out = tmp_path / "q"
    result = quantize(fx.near_constant_bundle(tmp_path), cfg(images, method="percentile"), out, timer=int8_faster,
                      log=lines.append, workdir=tmp_path / "work")
    assert result.choice == "int8:all", result.reason
    calibration = result.data["calibration"]
    assert calibration["method"] == "percentile" and calibration["fallback"]["scope"] == "tensors"
    assert calibration["fallback"]["tensors"] == ["gate"] and calibration["fallback"]["count"] == 1
    assert any("Too many bins" in r for r in calibration["fallback"]["reasons"])
    assert any("1 of" in line and "calibrated with minmax instead of percentile" in line and "gate" in line
               for line in lines), lines
    # The gate's range is its observed one (made symmetric as Percentile's are); the others kept Percentile's.
    cache = json.loads((tmp_path / "work" / "calibration.json").read_text())["data"]
    lo, hi = cache["gate"]["lowest"]["data"], cache["gate"]["highest"]["data"]
    assert lo == pytest.approx(-0.5, abs=1e-3) and hi == pytest.approx(0.5, abs=1e-3) and lo == -hi
    assert "hist" in cache["relu"] and "hist" not in cache["gate"]
    row = open_bundle(out).manifest.provenance[-1]
    assert row.metrics["data"]["calibration"]["fallback"]["tensors"] == ["gate"]


def test_minmax_needs_no_fallback(tmp_path, images):
    result = quantize(fx.near_constant_bundle(tmp_path), cfg(images), None, timer=int8_faster)
    assert result.choice == "int8:all"
    assert "fallback" not in result.data["calibration"] and result.data["calibration"]["tensors"] > 0


# ---------------------------------------------------------------- which gate


def test_output_error_scales_by_what_the_input_changes():
    rng = np.random.default_rng(0)
    ref = 100.0 + rng.standard_normal((50, 10))  # a large input-independent offset, as random logits have
    assert output_error(ref, ref) == 0.0
    noisy = ref + 0.1 * rng.standard_normal(ref.shape)
    assert output_error(noisy, ref) == pytest.approx(0.1, rel=0.15)  # not 0.001, as against the offset
    flat = np.full((4, 3), 2.0)
    assert output_error(flat + 0.2, flat) == pytest.approx(0.1)  # no variation: relative to the size
    assert output_error(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0


class _Bundle:  # only what choose_gate reads
    def __init__(self, *stages):
        self.name = "m"
        self.manifest = type("M", (), {"provenance": list(stages)})()


def _export(**params):
    return Stage(StageName.EXPORT, "t", params={"source": "resnet18", **params})


@pytest.mark.parametrize("stages,labelled,expected", [
    ([_export(pretrained=False)], False, Gate.SIMILARITY),
    ([_export(pretrained=False)], True, Gate.ACCURACY),  # labels measure real accuracy, whatever the weights
    ([_export(pretrained=True)], False, Gate.AGREEMENT),
    ([_export()], False, Gate.AGREEMENT),  # unknown: the stricter gate
    ([], False, Gate.AGREEMENT),  # a bare .onnx has no provenance
    ([Stage(StageName.DISTILL, "t"), _export(pretrained=False)], False, Gate.AGREEMENT),  # trained by edgeship
])
def test_auto_gate_follows_the_provenance(stages, labelled, expected):
    gate, why = choose_gate(Gate.AUTO, _Bundle(*stages), labelled)
    assert gate is expected and why


def test_an_explicit_gate_wins_and_accuracy_needs_labels():
    assert choose_gate(Gate.AGREEMENT, _Bundle(_export(pretrained=False)), False)[0] is Gate.AGREEMENT
    with pytest.raises(InputError, match="needs labelled"):
        choose_gate(Gate.ACCURACY, _Bundle(), False)
    with pytest.raises(InputError, match="max_output_error"):
        QuantizeConfig(max_output_error=-1)
    with pytest.raises(InputError, match="gate"):
        QuantizeConfig(gate="cosine")


def test_random_weights_gate_on_output_similarity_where_agreement_rejects_by_noise(tmp_path, images):
    """Near-tied outputs: INT8 keeps them (small output error) but not which class is on top."""
    lines = []
    random = fx.make_bundle(tmp_path, "random", near_tied=True, pretrained=False)
    result = quantize(random, cfg(images, max_float_fraction=0.0), tmp_path / "q", timer=int8_faster, log=lines.append)
    chosen = result.chosen
    assert result.gate == "similarity" and result.choice == "int8:all", result.reason
    assert chosen.agreement < 0.98 and chosen.output_error <= 0.15  # the agreement gate would have refused it
    assert "similarity gate" in result.reason
    assert any(line.startswith("gate: similarity") and "random weights" in line for line in lines), lines
    row = open_bundle(tmp_path / "q").manifest.provenance[-1]
    assert row.metrics["gate"]["gate"] == "similarity" and row.metrics["gate"]["max_output_error"] == 0.15
    assert row.params["gate"] == "auto" and row.metrics["chosen"]["output_error"] == chosen.output_error
    assert result.to_dict()["gate"]["gate"] == "similarity"

    # The same model with no word on its weights keeps the agreement gate, which refuses it.
    unknown = fx.make_bundle(tmp_path, "unknown", near_tied=True)
    kept = quantize(unknown, cfg(images, max_float_fraction=0.0), None, timer=int8_faster)
    assert kept.gate == "agreement" and kept.choice == "fp32" and "accuracy gate" in kept.reason
    assert kept.candidates[0].agreement == pytest.approx(chosen.agreement)


def test_similarity_gate_still_refuses_a_broken_int8_model(tmp_path, images):
    """The outlier channel destroys the other channels under per-tensor INT8: a large output error."""
    bundle = fx.make_bundle(tmp_path, "broken", sensitive=True, pretrained=False)
    result = quantize(bundle, cfg(images, max_float_fraction=0.0), None, timer=int8_faster)
    assert result.gate == "similarity" and result.choice == "fp32"
    assert result.candidates[0].output_error > 0.15 and "fails the similarity gate" in result.reason


def test_cli_gate_flag_and_threshold(tmp_path, images, capsys):
    from edgeship.cli import main

    bundle = fx.make_bundle(tmp_path, "cli", near_tied=True, pretrained=False)
    report = tmp_path / "r.json"
    code = main(["quantize", str(bundle), "-o", str(tmp_path / "out"), "--calibration", str(images), "--target", "x86",
                 "--mode", "static", "--layouts", "all", "--method", "minmax", "--eval-samples", "32",
                 "--calibration-samples", "8", "--timing-runs", "6", "--gate", "agreement", "--json", str(report)])
    assert code == 0
    assert json.loads(report.read_text())["gate"]["gate"] == "agreement"
    assert "gate: agreement" in capsys.readouterr().out
    code = main(["quantize", str(bundle), "-o", str(tmp_path / "out2"), "--gate", "cosine"])
    assert code == 2


def test_a_calibrator_that_fails_outright_falls_back_to_minmax_for_the_model(tmp_path, images, monkeypatch):
    """E.g. an onnxruntime whose HistogramCollector no longer takes these arguments: MinMax, said so."""
    from edgeship.optimize import qbuild

    def incompatible(calibrator):
        raise TypeError("HistogramCollector.__init__() got an unexpected keyword argument 'scenario'")

    monkeypatch.setattr(qbuild, "_histogram_collector", incompatible)
    lines = []
    result = quantize(fx.near_constant_bundle(tmp_path), cfg(images, method="entropy"), None, timer=int8_faster,
                      log=lines.append)
    assert result.choice == "int8:all"
    fallback = result.data["calibration"]["fallback"]
    assert fallback["scope"] == "model" and "unexpected keyword" in fallback["reason"]
    assert any("every tensor calibrated with minmax instead" in line for line in lines), lines


def test_cosine_of_tiny_outputs_is_not_swamped():
    from edgeship.optimize.qgate import cosine

    ref = np.array([[1e-13, -2e-13, 3e-13]], np.float32)
    assert cosine(ref, ref) == pytest.approx(1.0)
    assert cosine(-ref, ref) == pytest.approx(-1.0)
    assert cosine(np.zeros((1, 3)), np.zeros((1, 3))) == 1.0 and cosine(np.zeros((1, 3)), ref) == 0.0
