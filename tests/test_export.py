"""Export validates itself against PyTorch; the packaged EfficientNet-Lite0 matches torch on real photos."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeship.bundle import open_bundle  # noqa: E402
from edgeship.errors import ExportError, ModelNotFoundError  # noqa: E402
from edgeship.optimize.export import ExportSpec, export, export_module  # noqa: E402
from edgeship.optimize.models import resolve_model  # noqa: E402
from edgeship.runtime import Model  # noqa: E402


def test_export_import_path_with_dynamic_batch(tmp_path):
    result = export("tests.models.tiny_torch:tiny_cnn", tmp_path / "b", ExportSpec(input_size=(32, 32), dynamic_batch=True),
                    photos=[])
    b = open_bundle(tmp_path / "b")
    assert b.manifest.inputs[0].shape == ["batch", 3, 32, 32]
    assert result.max_abs_diff < 1e-4
    stage = b.manifest.provenance[-1]
    assert stage.stage == "export" and stage.params["source"] == "tests.models.tiny_torch:tiny_cnn"
    assert stage.params["pretrained"] is None  # a user's function may load weights itself: unknown, not False
    assert stage.metrics["params"] == sum(p.numel() for p in resolve_model("tests.models.tiny_torch:tiny_cnn").module.parameters())
    model = Model.load(b)
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        ref = resolve_model("tests.models.tiny_torch:tiny_cnn").module(torch.from_numpy(x)).numpy()
    assert np.allclose(model.run(x)[0], ref, atol=1e-4)
    assert model.check_golden().ok


def test_export_fails_beyond_tolerance_and_writes_nothing(tmp_path):
    src = resolve_model("tests.models.tiny_torch:tiny_cnn")
    with pytest.raises(ExportError, match=r"differs from PyTorch on the random input by up to .* exceeded by"):
        export_module(src.module, tmp_path / "b", ExportSpec(input_size=(32, 32), atol=0.0, rtol=0.0), name="t")
    assert not (tmp_path / "b").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, message",
    [
        ("resnet9000", "unknown model 'resnet9000'"),
        ("tests.models.tiny_torch:missing", "has no callable 'missing'"),
        ("tests.models.tiny_torch:not_a_module", "expected a torch.nn.Module"),
        ("no_such_package_xyz:fn", "cannot import module"),
    ],
)
def test_unknown_models_are_named(name, message):
    with pytest.raises(ModelNotFoundError, match=message):
        resolve_model(name)


def test_torchvision_architecture_exports_with_imagenet_labels(tmp_path):
    result = export("mobilenet_v3_small", tmp_path / "m", photos=[])
    b = result.bundle
    assert b.labels[281] == "tabby" and len(b.labels) == 1000
    assert b.manifest.preprocessing.size == (224, 224)
    assert not b.manifest.provenance[-1].params["pretrained"]


def test_efficientnet_lite0_matches_torch_on_real_photos(tmp_path, photo_paths):
    pytest.importorskip("efficientnet_lite_pytorch")
    photos = [photo_paths["chelsea"], photo_paths["coffee"]]
    result = export("efficientnet-lite0", tmp_path / "lite0", photos=photos)
    assert result.max_abs_diff < 1e-4 and result.top1_agree is True
    model = Model.load(tmp_path / "lite0")
    src = resolve_model("efficientnet-lite0")
    for name in ("chelsea", "coffee"):
        x, _, _ = model.prepare(photo_paths[name])
        with torch.inference_mode():
            torch_top1 = int(src.module(torch.from_numpy(x[None])).argmax())
        top = model.predict(photo_paths[name]).output["classes"]
        assert top[0]["index"] == torch_top1
    assert model.predict(photo_paths["chelsea"]).output["classes"][0]["label"] in ("Egyptian cat", "tiger cat", "tabby")
    assert model.predict(photo_paths["coffee"]).output["classes"][0]["label"] == "espresso"
