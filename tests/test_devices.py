"""Catalog, presets, host probe on fake trees, fit, and the devices/fit CLI verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeship.cli import main
from edgeship.errors import InputError
from edgeship.runtime.session import RuntimeConfig
from edgeship.targets import (
    CATALOG,
    CATALOG_SOURCE,
    PRESETS,
    QUANT_FORMATS,
    QuantTarget,
    device,
    host_device,
    host_preset,
    preset,
    probe_host,
    target_names,
)
from tests.support import tree

IDS = ["rpi5", "rpi5-hailo", "rpi4", "jetson-nano", "jetson-orin-nx", "jetson-agx-orin",
       "coral-usb", "coral-devboard", "ncs2", "rb5", "x86"]


# --- catalog and presets -----------------------------------------------------------------


def test_catalog_holds_every_device_of_both_tables():
    assert list(CATALOG) == IDS
    assert all(d.source == CATALOG_SOURCE for d in CATALOG.values() if d.id != "x86")
    assert device("rpi5").cpu_gflops == 13.0 and device("rpi4").cpu_gflops == 8.0
    assert device("rpi5-hailo").accel_tops.high == 26 and device("rpi5-hailo").power_w.high == 18
    assert device("jetson-nano").accel_gflops == 472.0
    assert str(device("jetson-orin-nx").accel_tops) == "70-100"
    assert device("jetson-agx-orin").ram_gb.high == 64 and device("jetson-agx-orin").cores == 12
    assert device("coral-usb").ram_gb is None and device("coral-devboard").power_w.low == 2
    assert device("ncs2").accel_tops.high == 4 and device("rb5").accel_tops.high == 15
    assert device("jetson-nano").figure_source("cores") == "vendor datasheet"
    assert device("jetson-nano").figure_source("clock_ghz") == CATALOG_SOURCE


def test_catalog_names_the_article_it_quotes():
    from edgeship.commands.devices import CATALOG_LABEL

    # "article" alone sent readers looking for a document nobody named; docs/article.md has the reference
    assert CATALOG_SOURCE == "article (Calò 2026)" and CATALOG_SOURCE in CATALOG_LABEL
    assert all(b.where.startswith("article, ") and "lines" not in b.where
               for d in CATALOG.values() for b in d.benchmarks)


def test_catalog_benchmarks_are_the_articles():
    rpi5 = {(b.model, b.precision): b.latency_ms for b in device("rpi5").benchmarks}
    assert rpi5[("ResNet-18", "INT8")] == 95 and rpi5[("ResNet-18", "FP32")] == 180
    assert rpi5[("MobileNetV3-S", "FP32")] == 95 and rpi5[("ViT-Ti/16", "FP32")] == 380
    orin = {b.model: b.latency_ms for b in device("jetson-orin-nx").benchmarks}
    assert orin["MobileNetV3-S"] == 1.5 and orin["DeiT-Tiny"] == 5.1
    assert {b.model: b.latency_ms for b in device("jetson-nano").benchmarks}["YOLOv8-nano"] == 18
    assert {m.model: m.tokens_per_s for m in device("rpi5").llm}["Llama-3.2-1B"] == 5.1


def test_presets():
    rpi5 = preset("rpi5")
    assert isinstance(rpi5.runtime, RuntimeConfig)
    assert (rpi5.runtime.intra_op_threads, rpi5.runtime.execution_mode, rpi5.runtime.graph_optimization) == (4, "sequential", "all")
    assert (rpi5.quant.activation, rpi5.quant.weight) == ("s8", "s8")
    assert (preset("rpi4").quant.activation, preset("rpi4").quant.weight) == ("u8", "s8")
    assert (preset("x86").quant.activation, preset("x86").runtime.intra_op_threads) == ("u8", None)
    assert preset("jetson-orin-nx").runtime.providers[:2] == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert preset("jetson-agx-orin").runtime.intra_op_threads == 12
    assert preset("ncs2").quant is None and "FP16" in preset("ncs2").why
    assert preset("jetson-nano").quant is None
    assert set(QUANT_FORMATS) == set(QuantTarget) and all(f.why for f in QUANT_FORMATS.values())
    assert set(PRESETS) == set(IDS)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(InputError) as err:
        preset("rpi6")
    assert "'rpi6'" in str(err.value)
    for name in target_names():
        assert name in str(err.value)
    assert "host" in target_names()
    with pytest.raises(InputError, match="rpi5"):
        device("nope")


# --- host probe on fake trees ------------------------------------------------------------

PI5_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
    for i in range(4)
) + "Revision\t: d04170\nSerial\t\t: 1234\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"


def pi5_tree(root: Path) -> Path:
    files = {"proc/cpuinfo": PI5_CPUINFO,
             "proc/meminfo": "MemTotal:        8245176 kB\nMemFree:  100 kB\nMemAvailable:    7000000 kB\n",
             "sys/class/thermal/thermal_zone0/type": "cpu-thermal",
             "sys/class/thermal/thermal_zone0/temp": 51000}
    for i in range(4):
        files[f"sys/devices/system/cpu/cpu{i}/topology/core_id"] = i
        files[f"sys/devices/system/cpu/cpu{i}/topology/physical_package_id"] = 0
    return tree(root, files)


def test_probe_raspberry_pi_5(tmp_path):
    info = probe_host(pi5_tree(tmp_path))
    assert info.cpu_model == "Cortex-A76" and info.arch == "aarch64"
    assert info.features == ("neon", "dotprod")
    assert (info.physical_cores, info.logical_cores, info.big_cores) == (4, 4, 4)
    assert info.ram_total_bytes == 8245176 * 1024 and info.ram_available_bytes == 7000000 * 1024
    assert info.board == "Raspberry Pi 5 Model B Rev 1.0"
    assert info.quant_target is QuantTarget.ARM64_DOTPROD
    assert info.thermal_zones == ("thermal_zone0 cpu-thermal 51.0 C",)
    assert info.usable_cpus is None  # only probed for the live root
    assert host_device(info).id == "rpi5"
    hp = host_preset(tmp_path)
    assert hp.name == "host" and hp.device.id == "rpi5" and hp.runtime.intra_op_threads == 4


def test_probe_pi5_with_hailo(tmp_path):
    pi5_tree(tmp_path)
    tree(tmp_path, {"dev/hailo0": ""})
    info = probe_host(tmp_path)
    assert info.accelerators == ("hailo",) and host_device(info).id == "rpi5-hailo"


def test_probe_x86_with_smt_and_vnni(tmp_path):
    block = ("processor\t: {i}\nmodel name\t: Example CPU 9000\nphysical id\t: 0\ncore id\t\t: {core}\n"
             "flags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw avx512_vnni\n\n")
    tree(tmp_path, {"proc/cpuinfo": "".join(block.format(i=i, core=i % 2) for i in range(4)),
                    "sys/bus/usb/devices/1-1/idVendor": "1a6e", "sys/bus/usb/devices/1-1/idProduct": "089a"})
    info = probe_host(tmp_path)
    assert info.cpu_model == "Example CPU 9000" and info.arch == "x86_64"
    assert (info.physical_cores, info.logical_cores) == (2, 4)
    assert info.features == ("fma", "avx2", "avx512f", "avx512_vnni")
    assert info.quant_target is QuantTarget.X86_VNNI
    assert info.accelerators == ("coral-usb",) and host_device(info) is None
    hp = host_preset(tmp_path)
    assert hp.device.id == "host" and hp.runtime.intra_op_threads == 2
    assert (hp.quant.activation, hp.quant.weight) == ("u8", "s8")


def test_probe_big_little(tmp_path):
    files = {"proc/cpuinfo": "".join(f"processor\t: {i}\nFeatures\t: fp asimd\nCPU part\t: {'0xd05' if i < 4 else '0xd0d'}\n\n"
                                     for i in range(8))}
    for i in range(8):
        files[f"sys/devices/system/cpu/cpu{i}/cpu_capacity"] = 400 if i < 4 else 1024
    info = probe_host(tree(tmp_path, files))
    assert info.cpu_model == "Cortex-A55 + Cortex-A77" and info.big_cores == 4
    assert info.quant_target is QuantTarget.ARM64


def test_probe_empty_tree_never_raises(tmp_path):
    info = probe_host(tmp_path)
    assert info.cpu_model == "unknown CPU" and info.logical_cores == 1
    assert info.ram_total_bytes is None and info.thermal_zones == () and info.power_sensors == ()
    assert set(info.bindings) == {"litert", "tensorrt", "llama_cpp"}


def test_probe_this_host():
    info = probe_host()
    assert info.logical_cores >= 1 and info.ram_total_bytes
    assert "CPUExecutionProvider" in info.providers
    assert json.dumps(info.to_dict())
    assert host_preset().runtime.intra_op_threads >= 1


def test_device_side_never_imports_torch():
    code = ("import sys, edgeship.targets, edgeship.monitor, edgeship.targets.flops, edgeship.targets.fit, "
            "edgeship.commands.devices; edgeship.targets.probe_host(); "
            "assert 'torch' not in sys.modules, 'torch imported'; assert 'onnx' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- fit ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """x[batch, 64] @ W[64, 32]: 2048 MACs a sample."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 32), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("fit") / "tiny.onnx"
    onnx.save(model, path)
    return path


def test_fit_predicts_for_a_cpu_target(tiny_onnx):
    from edgeship.targets.fit import fit

    p = fit(tiny_onnx, "rpi5", host_runs=3, matmul_size=128)
    assert p.kind == "PREDICTION" and p.flops == 2 * 64 * 32 and p.flops_source == "counted by edgeship.targets.flops"
    assert p.input_shapes == {"x": [1, 64]}
    c = p.calibration
    assert c.model_latency_ms > 0 and c.matmul_gflops > 0 and c.matmul_via == "onnxruntime"
    assert c.efficiency == pytest.approx(c.model_gflops / c.matmul_gflops)
    assert p.predicted_latency_ms == pytest.approx(p.flops / (13e9 * c.efficiency) * 1e3)
    assert p.ram.fits == {"4 GiB": True, "8 GiB": True}
    assert p.ram.need_bytes == p.ram.model_file_bytes + p.ram.session_rss_bytes + p.ram.activation_bytes
    d = p.to_dict()
    assert d["kind"] == "PREDICTION" and d["catalog"]["source"] == CATALOG_SOURCE
    assert "measured_on_this_host" in d and json.dumps(d)


def test_fit_accelerator_target_gives_no_cpu_prediction(tiny_onnx):
    from edgeship.targets.fit import fit

    p = fit(tiny_onnx, "coral-usb", host_runs=1, matmul_size=64)
    assert p.predicted_latency_ms is None and p.latency_floor_ms == pytest.approx(p.flops / 4e12 * 1e3)
    assert p.ram.fits == {} and any("no latency prediction" in n.lower() for n in p.notes)


def test_fit_reads_flops_from_bundle_metadata(tiny_onnx, tmp_path):
    from edgeship.bundle import Manifest, TensorSpec, write_bundle
    from edgeship.targets.fit import fit

    manifest = Manifest(name="tiny", model="model.onnx", inputs=[TensorSpec("x", ["batch", 64])],
                        metadata={"flops": 123456})
    write_bundle(tmp_path / "b", manifest, tiny_onnx)
    p = fit(tmp_path / "b", "rpi4", host_runs=1, matmul_size=64)
    assert p.flops == 123456 and p.flops_source.startswith("bundle metadata")


# --- CLI ---------------------------------------------------------------------------------


def test_cli_devices_catalog(tmp_path, capsys):
    out = tmp_path / "catalog.json"
    assert main(["devices", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "catalog figures from the article (Calò 2026)" in text and "jetson-agx-orin" in text
    data = json.loads(out.read_text())
    assert data["source"] == CATALOG_SOURCE and [d["id"] for d in data["devices"]] == IDS
    assert data["devices"][0]["preset"]["quant"]["activation"] == "s8"


def test_cli_devices_probe(tmp_path, capsys):
    out = tmp_path / "host.json"
    assert main(["devices", "--probe", "--json", str(out)]) == 0
    assert "This host" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["source"] == "probe of this host" and data["logical_cores"] >= 1


def test_cli_fit(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "fit.json"
    assert main(["fit", str(tiny_onnx), "--target", "rpi5", "--runs", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PREDICTION" in text and "measured on this host" in text and f"catalog ({CATALOG_SOURCE})" in text
    assert json.loads(out.read_text())["kind"] == "PREDICTION"


def test_cli_fit_predicts_the_servers_memory_from_its_own_start(tmp_path, capsys):
    pytest.importorskip("starlette")
    from edgeship.serve.config import ServeConfig
    from tests.support import build_tiny_classifier, make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "b", build_tiny_classifier(tmp_path / "m.onnx"))
    out = tmp_path / "fit.json"
    assert main(["fit", str(bundle.root), "--target", "rpi4", "--runs", "1", "--max-batch", "4",
                 "--max-pixels", "1000000", "--spinning", "off", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PREDICTION: `edgeship serve` memory" in text and "server RSS while serving" in text
    mem = json.loads(out.read_text())["server_memory"]
    assert mem["kind"] == "PREDICTION"
    parts = {p["name"]: p for p in mem["parts"]}
    assert parts["process before models"]["source"] == "measured" and parts["tiny: session"]["source"] == "measured"
    assert "tiny: batch of 4" in parts and not any("twin" in n for n in parts)  # the settings given are the plan's
    assert parts["picture decodes at the pixel limit"]["bytes"] == ServeConfig().prep_threads * 1_000_000 * 24
    assert mem["resident_bytes"] <= mem["peak_bytes"]
    # the planning process started as the server does: what it held is what it planned, give or take
    assert 0.8 < mem["resident_bytes"] / mem["measured"]["rss_bytes"] < 1.2


def test_cli_fit_without_the_server(tiny_onnx, capsys):
    assert main(["fit", str(tiny_onnx), "--target", "rpi5", "--runs", "1", "--no-server"]) == 0
    assert "server RSS" not in capsys.readouterr().out


def test_cli_fit_unknown_target(tiny_onnx, capsys):
    assert main(["fit", str(tiny_onnx), "--target", "rpi9"]) == 2
    err = capsys.readouterr().err
    assert "rpi9" in err and "jetson-orin-nx" in err and "host" in err


def test_cli_fit_missing_bundle(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.onnx"), "--target", "rpi5"]) == 2  # bad input, as the README says
    assert "no such file" in capsys.readouterr().err


def test_cli_fit_requires_target(tiny_onnx, capsys):
    assert main(["fit", str(tiny_onnx)]) == 2
    assert "--target" in capsys.readouterr().err
