"""The Model seam: prepare -> run -> finish is predict, derive() makes a new session, settings are
fixed at load, close() frees the session, and runtime's imports go one way."""

from __future__ import annotations

import numpy as np
import pytest

from edgeship.bundle import Task
from edgeship.errors import BackendError, InputError
from edgeship.runtime import Model, Prepared, RuntimeConfig
from tests.support import build_tiny_classifier, jpeg_bytes, make_tiny_bundle


def test_prepare_run_finish_is_predict(tiny_bundle):
    model = Model.load(tiny_bundle.root)
    for seed in range(3):
        data = jpeg_bytes(seed=seed)
        p = model.prepare(data)
        assert isinstance(p, Prepared) and p.x.shape == (3, 16, 16) and p.x.dtype == np.float32
        assert p.meta.width == 64 and set(p.timing) == {"decode", "preprocess"}
        outputs = model.run(p.x[None])
        assert [o.shape for o in outputs] == [(1, 4)]
        for top_k in (None, 2):
            assert model.finish([o[0] for o in outputs], p.meta, top_k) == model.predict(data, top_k=top_k).output


def test_what_the_model_says_about_itself(tiny_bundle, tmp_path):
    model = Model.load(tiny_bundle.root)
    assert (model.name, model.version, model.task) == ("tiny", "3", Task.CLASSIFY)
    assert [(s.name, s.dtype) for s in model.inputs] == [("input", "float32")]
    assert [(s.name, s.shape[1:]) for s in model.outputs] == [("output", [4])]
    assert model.dynamic_batch and model.max_batch is None and model.takes_images
    assert model.blank_input(3).shape == (3, 3, 16, 16)
    assert model.describe()["backend"] == "onnxruntime"
    fixed = make_tiny_bundle(tmp_path / "fixed", build_tiny_classifier(tmp_path / "f.onnx", dynamic_batch=False))
    fixed_model = Model.load(fixed.root)
    assert not fixed_model.dynamic_batch and fixed_model.max_batch == 1
    assert fixed_model.blank_input(3).shape == (1, 3, 16, 16)  # a fixed batch stays what the graph says


def test_derive_makes_a_new_session_with_other_threads(tiny_bundle):
    model = Model.load(tiny_bundle.root, RuntimeConfig(intra_op_threads=2))
    fewer = model.derive(intra_op_threads=1)
    assert fewer.bundle is model.bundle and fewer.session is not model.session
    assert fewer.config.intra_op_threads == 1 and model.config.intra_op_threads == 2
    assert fewer.describe()["intra_op_threads"] == 1 and model.describe()["intra_op_threads"] == 2
    assert fewer.session.get_session_options().intra_op_num_threads == 1
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(fewer.run(x)[0], model.run(x)[0], rtol=1e-5, atol=1e-6)
    assert fewer.check_golden().ok
    assert model.derive(intra_op_threads=None).config.intra_op_threads is None  # None: the engine's default
    with pytest.raises(InputError, match="unknown runtime setting.*threads; known: backend, intra_op_threads"):
        model.derive(threads=1)
    with pytest.raises(InputError, match="intra_op_threads: must be a positive integer"):
        model.derive(intra_op_threads=0)


def test_the_pixel_limit_is_set_at_load(tiny_bundle):
    small = Model.load(tiny_bundle.root, max_pixels=1000)
    with pytest.raises(InputError, match="64x48 = 3,072 pixels, over the limit of 1,000"):
        small.prepare(jpeg_bytes())
    assert small.derive(intra_op_threads=1).max_pixels == 1000  # a derived model keeps it
    assert Model.load(tiny_bundle.root).prepare(jpeg_bytes()).x.shape == (3, 16, 16)
    with pytest.raises(InputError, match="max_pixels"):
        Model.load(tiny_bundle.root, max_pixels=0)


def test_a_closed_model_says_so(tiny_bundle):
    with Model.load(tiny_bundle.root) as model:
        assert model.check_golden().ok
    with pytest.raises(BackendError, match="closed"):
        model.run(model.blank_input())
    with pytest.raises(BackendError, match="closed"):
        model.predict(jpeg_bytes())
    model.close()  # twice is fine


def test_decoders_import_one_way():
    """classify and detect register into the registry; neither imports the other, the registry neither.

    (tests/test_layers.py checks the whole package for circles; this pins the decoders' shape.)
    """
    from tests.test_layers import _internal, import_graph

    graph = _internal(import_graph())
    d = "edgeship.runtime.decoders"
    assert graph[f"{d}.classify"] == {f"{d}.registry", "edgeship.bundle"}
    assert f"{d}.classify" not in graph[f"{d}.detect"] and f"{d}.registry" in graph[f"{d}.detect"]
    assert not any(t.startswith(d) for t in graph[f"{d}.registry"])
    assert "edgeship.runtime.tasks" not in graph and "edgeship.runtime.detect" not in graph  # no old homes
