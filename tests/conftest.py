"""Shared fixtures: tiny real models built here (no downloads), real photos from installed packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import build_tiny_classifier, make_tiny_bundle


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
