"""The Model seam: prepare -> run -> finish is predict, derive() makes a new session, settings are
fixed at load, close() frees the session, and runtime's imports go one way."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle import Task
from edgeship.errors import BackendError, InputError
from edgeship.runtime import Model, Prepared, RuntimeConfig
from tests.support import build_tiny_classifier, jpeg_bytes, make_tiny_bundle

RUNTIME = Path(__file__).resolve().parents[1] / "src" / "edgeship" / "runtime"


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


def _module_name(path: Path) -> str:
    rel = path.relative_to(RUNTIME.parent.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_edges(path: Path, name: str, modules: set[str]) -> set[str]:
    """Modules of edgeship that ``path`` imports when it is imported (not in functions, not TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    edges: set[str] = set()

    def visit(stmts):
        for node in stmts:
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    edges.add(child if child in modules else base)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)

    visit(ast.parse(path.read_text()).body)
    return edges


def test_runtime_imports_go_one_way():
    files = {_module_name(p): p for p in RUNTIME.rglob("*.py")}
    graph = {m: _import_time_edges(p, m, set(files)) for m, p in files.items()}
    decoders = "edgeship.runtime.decoders"
    assert f"{decoders}.detect" not in graph[f"{decoders}.classify"]
    assert f"{decoders}.classify" not in graph[f"{decoders}.detect"]
    assert not {f"{decoders}.classify", f"{decoders}.detect"} & graph[f"{decoders}.registry"]
    assert not any(e.startswith(("edgeship.serve", "edgeship.optimize", "torch")) for es in graph.values() for e in es)
    # no cycle among runtime's modules (a package importing its own submodules is not one)
    state: dict[str, int] = {}

    def walk(m: str, trail: list[str]) -> None:
        state[m] = 1
        for e in sorted(graph.get(m, ())):
            if e not in graph or m.startswith(e + "."):
                continue
            if state.get(e) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(e):], e]))
            if e not in state:
                walk(e, [*trail, e])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])
