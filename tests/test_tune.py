"""Pick by measurement: every way this host runs a bundle side by side, the pick recorded per host
class, used by predict and serve here and not applied on another host; variants pass the INT8 gate."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgeship.bench.compare import CompareConfig, compare_backends
from edgeship.bench.tune import tune
from edgeship.bundle import RuntimeChoice, Stage, open_bundle, update_manifest
from edgeship.cli import main
from edgeship.runtime import Model, RuntimeConfig
from edgeship.targets.choice import host_class, recorded_runtime
from tests.support import build_tiny_classifier, make_tiny_bundle

QUICK = CompareConfig(threads=1, warmup=1, runs=5, rounds=5)


def test_compare_times_every_backend_and_lists_what_it_left_out(tiny_bundle):
    pytest.importorskip("openvino")
    report = compare_backends(tiny_bundle.root, QUICK)
    labels = {r["label"] for r in report["rows"]}
    assert {"onnxruntime", "openvino fp32"} <= labels
    for r in report["rows"]:
        assert r["runs"] == 5 and r["p50_ms"] > 0 and r["runtime"]["backend"] == r["backend"]
        assert r["footer"].startswith(r["backend"])  # engine, version, threads: in every table footer
    skipped = {s["label"]: s["reason"] for s in report["skipped"]}
    assert "not a declared variant" in skipped["openvino-bf16"] and "not a declared variant" in skipped["openvino-int8"]
    assert report["pick"]["label"] in labels
    assert report["pick"]["p50_ms"] == min(r["p50_ms"] for r in report["rows"])


def test_a_backend_whose_output_disagrees_is_refused_not_picked(tmp_path):
    pytest.importorskip("openvino")
    bundle = make_tiny_bundle(tmp_path / "b", build_tiny_classifier(tmp_path / "t.onnx"))
    with np.load(bundle.root / "golden.npz") as g:
        x, y = g["input"], g["output"]
    np.savez(bundle.root / "golden.npz", input=x, output=y + 0.25)
    report = compare_backends(open_bundle(bundle.root, verify=False), QUICK)
    refused = {r["label"]: r["reason"] for r in report["refused"]}
    assert set(refused) == {"onnxruntime", "openvino fp32"} and "by up to 0.25" in refused["openvino fp32"]
    assert report["pick"] is None and report["rows"] == []


def test_tune_records_the_pick_for_this_host_and_predict_uses_it(tiny_bundle, capsys):
    pytest.importorskip("openvino")
    result = tune(tiny_bundle.root, QUICK)
    here = host_class()
    assert result.host == here and result.written
    m = open_bundle(tiny_bundle.root).manifest
    assert m.schema_version == 2 and set(m.runtimes) == {here}
    choice = m.runtimes[here]
    assert choice.backend == result.report["pick"]["backend"] and choice.threads == 1
    assert set(choice.measured) >= {"onnxruntime", "openvino fp32"}
    recorded = recorded_runtime(open_bundle(tiny_bundle.root))
    assert recorded.config.backend.value == choice.backend and "runtime choice for this host" in recorded.note
    assert main(["predict", str(tiny_bundle.root), _photo()]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"runtime choice for this host ({here})" in out and f"{choice.backend} " in out
    # an explicit flag wins over the recorded choice
    assert main(["predict", str(tiny_bundle.root), _photo(), "--backend", "onnxruntime"]) == 0
    assert "runtime choice" not in capsys.readouterr().out


def test_a_choice_made_on_another_host_is_not_applied_silently(tiny_bundle, capsys):
    other = RuntimeChoice(host="cpu: Cortex-A76 (aarch64; neon, dotprod)", backend="litert", threads=4)
    update_manifest(tiny_bundle.root, dataclasses.replace(tiny_bundle.manifest, runtimes={other.host: other}))
    recorded = recorded_runtime(open_bundle(tiny_bundle.root))
    assert recorded.config is None
    assert "made for other hosts (cpu: Cortex-A76" in recorded.note and "not applied" in recorded.note
    assert main(["predict", str(tiny_bundle.root), _photo()]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "not applied; run `edgeship tune` here" in out and "onnxruntime" in out
    from edgeship.serve import create_app

    app = create_app([tiny_bundle.root])
    assert app.state.edgeship.models["tiny"].model.backend.value == "onnxruntime"


def test_old_bundles_still_open_and_new_fields_only_appear_when_used(tiny_bundle):
    text = (tiny_bundle.root / "edgeship.json").read_text()
    data = json.loads(text)
    assert data["schema_version"] == 1 and "variants" not in data and "runtimes" not in data


def test_bench_backends_all_from_the_command_line(tiny_bundle, tmp_path, capsys):
    pytest.importorskip("openvino")
    out = tmp_path / "cmp.json"
    assert main(["bench", str(tiny_bundle.root), "--backends", "all", "--runs", "5", "--warmup", "1",
                 "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "every backend on this host" in text and "pick:" in text and "openvino 2026" in text
    report = json.loads(out.read_text())["comparisons"][0]
    assert report["pick"]["runtime"]["intra_op_threads" if report["pick"]["backend"] == "onnxruntime" else "threads"] == 1


@pytest.mark.slow
def test_an_openvino_int8_variant_passes_the_gate_and_runs_by_name(tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from edgeship.optimize.variants import VariantConfig, add_variant

    bundle = make_tiny_bundle(tmp_path / "b", build_tiny_classifier(tmp_path / "t.onnx", size=32), size=32)
    stage = Stage("export", "2026-12-04T00:00:00+00:00", params={"pretrained": False})
    update_manifest(bundle.root, bundle.manifest.with_stage(stage))
    strict = add_variant(bundle.root, "openvino-int8", config=VariantConfig(calibration_samples=8, eval_samples=16))
    gate = strict.variant.gate
    assert gate["gate"] == "similarity" and "random weights" in gate["why"] and gate["samples"] == 16
    assert strict.passed == (gate["output_error"] <= 0.15)
    if not strict.passed:  # a variant that fails the gate is not added
        assert open_bundle(bundle.root).manifest.variants == []
    # a threshold above what this tiny random model's INT8 form reaches
    result = add_variant(bundle.root, "openvino-int8",
                         config=VariantConfig(calibration_samples=8, eval_samples=16, max_output_error=2.0))
    assert result.passed, result.reason
    v = result.variant
    m = open_bundle(bundle.root).manifest  # verified: the variant's files are listed with their sha256
    v = m.variant("openvino-int8")
    assert {"model-openvino-int8.xml", "model-openvino-int8.bin", "golden-openvino-int8.npz"} <= set(m.files)
    model = Model.load(bundle.root, RuntimeConfig(variant="openvino-int8"))
    assert model.golden_at_load.ok and model.describe()["precision"] == "int8" and model.describe()["variant"] == v.name
    assert Model.load(bundle.root).variant is None  # never a silent default
    report = compare_backends(bundle.root, QUICK)
    assert "openvino-int8" in {r["label"] for r in report["rows"]}


def _photo() -> str:
    from edgeship.photos import photos

    found = photos()
    if "chelsea" not in found:
        pytest.skip("no photos installed")
    return str(found["chelsea"])


def test_the_peak_is_cores_times_clock_times_the_isas_ops_per_cycle(tmp_path):
    from edgeship.targets.peak import cpu_peak
    from tests.support import tree

    cpuinfo = "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fma avx2 avx512f avx512_vnni avx512_bf16\ncpu MHz\t\t: 3000.000"
    root = tree(tmp_path / "zen4", {"proc/cpuinfo": cpuinfo})
    int8 = cpu_peak("int8", 2, root)
    assert int8.ops_per_s == 2 * 3.0e9 * 128 and "VNNI" in int8.how and "2 cores x 3.00 GHz" in int8.how
    assert cpu_peak("bf16", 2, root).ops_per_cycle == 64 and cpu_peak("fp32", 2, root).ops_per_cycle == 32
    tree(root, {"sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": 3700000})  # cpufreq's maximum wins
    assert cpu_peak("fp32", 1, root).ghz == 3.7
    avx2 = tree(tmp_path / "avx2", {"proc/cpuinfo": cpuinfo.replace(" avx512f avx512_vnni avx512_bf16", "")})
    assert cpu_peak("int8", 2, avx2).ops_per_cycle == 64 and "without VNNI" in cpu_peak("int8", 2, avx2).how
    assert "fp32 rate" in cpu_peak("bf16", 2, avx2).how
    assert cpu_peak("int8", 2, tree(tmp_path / "none", {"proc/cpuinfo": "processor\t: 0"})) is None  # no clock read
