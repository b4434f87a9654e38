"""A model's sessions share one mapped copy of the weights ONNX Runtime optimized for this host."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from edgeship.runtime import Model, RuntimeConfig
from edgeship.runtime.backends import ort_weights
from tests.support import build_tiny_classifier, make_tiny_bundle


def _entries(cache) -> list:
    root = cache / "ort-optimized"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.fixture
def bundle(tmp_path):
    """A classifier with a 1000-class head: its weights (32 KB) go to the mapped file."""
    return make_tiny_bundle(tmp_path / "b", build_tiny_classifier(tmp_path / "m.onnx", classes=1000), classes=1000)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESHIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_model_and_its_twin_share_one_mapping_and_answer_as_the_model_does(bundle, cache):
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with Model.load(bundle, RuntimeConfig(shared_weights=False)) as private:
        expected = private.run(x)[0]
        assert private.describe()["weights"] == "private"
    model = Model.load(bundle)
    twin = model.derive(allow_spinning=True)
    a, b = model._backend.weights, twin._backend.weights
    assert a is not None and a is b  # one SharedWeights, one mmap
    assert model.describe()["weights"].startswith("shared")
    np.testing.assert_allclose(model.run(x)[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(twin.run(x)[0], expected, rtol=1e-5, atol=1e-6)
    assert len(_entries(cache)) == 1 and a.mapped_bytes == os.path.getsize(a.weights_path) >= 1000 * 8 * 4
    assert model.check_golden().ok
    model.close()
    np.testing.assert_allclose(twin.run(x)[0], expected, rtol=1e-5, atol=1e-6)  # the twin's mapping outlives the model's
    twin.close()


def test_a_model_whose_weights_all_stay_in_the_graph_loads_from_the_cache_too(tiny_bundle, cache):
    with Model.load(tiny_bundle) as model:
        assert model._backend.weights.mapped_bytes == 0 and model.check_golden().ok


def test_the_cache_is_built_once_and_reused(bundle, cache):
    Model.load(bundle).close()
    (entry,) = _entries(cache)
    stamp = os.stat(cache / "ort-optimized" / entry / ort_weights.WEIGHTS_FILE).st_mtime_ns
    ort_weights._live.clear()  # as a new process would find it
    with Model.load(bundle) as again:
        assert again.describe()["weights"].startswith("shared")
    assert _entries(cache) == [entry]
    assert os.stat(cache / "ort-optimized" / entry / ort_weights.WEIGHTS_FILE).st_mtime_ns == stamp


def test_another_optimization_level_is_another_entry(bundle, cache):
    Model.load(bundle).close()
    Model.load(bundle, RuntimeConfig(graph_optimization="basic")).close()
    assert len(_entries(cache)) == 2


def test_a_half_written_entry_is_rebuilt(bundle, cache):
    Model.load(bundle).close()
    (entry,) = _entries(cache)
    (cache / "ort-optimized" / entry / "ok.json").unlink()  # as if the publishing step never finished
    ort_weights._live.clear()
    with Model.load(bundle) as model:
        assert model.describe()["weights"].startswith("shared") and model.check_golden().ok
    assert (cache / "ort-optimized" / entry / "ok.json").is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_falls_back_to_private_weights(bundle, cache, caplog):
    cache.mkdir(parents=True)
    os.chmod(cache, stat.S_IRUSR | stat.S_IXUSR)
    try:
        with Model.load(bundle) as model:
            assert model.describe()["weights"] == "private" and model.check_golden().ok
    finally:
        os.chmod(cache, stat.S_IRWXU)
    assert "weights not shared" in caplog.text


def test_a_cache_that_cannot_be_written_falls_back_to_private_weights(bundle, cache, caplog):
    cache.mkdir(parents=True)
    (cache / "ort-optimized").write_text("a file where the folder should be\n")
    with Model.load(bundle) as model:
        assert model.describe()["weights"] == "private" and model.check_golden().ok
    assert "weights not shared" in caplog.text


def test_a_graph_whose_saved_form_answers_differently_is_not_used(bundle, cache, monkeypatch, caplog):
    real = ort_weights.SharedWeights.__init__

    def corrupting_init(self, key, folder):  # the check session reads weights that are not the model's
        real(self, key, folder)
        self.buffer = np.zeros_like(self.buffer)

    monkeypatch.setattr(ort_weights.SharedWeights, "__init__", corrupting_init)
    with Model.load(bundle) as model:
        assert model.describe()["weights"] == "private" and model.check_golden().ok
    assert "answers differently" in caplog.text and _entries(cache) == []
