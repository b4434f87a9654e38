"""Backends: the registry keyed by BackendKind, lazy imports, and the ONNX Runtime backend itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeship.errors import BackendError, InputError
from edgeship.runtime import BackendKind, RuntimeConfig
from edgeship.runtime.backends import backend_class, open_backend


def test_an_unknown_backend_is_an_input_error_naming_the_kinds():
    known = "onnxruntime, litert, openvino, tensorrt"
    for ask in (lambda: backend_class("tflite"), lambda: RuntimeConfig(backend="tflite"),
                lambda: BackendKind.parse("ONNX")):
        with pytest.raises(InputError, match=f"unknown backend .*; known backends: {known}"):
            ask()
    assert RuntimeConfig(backend="onnxruntime").backend is BackendKind.ONNXRUNTIME


def test_a_kind_without_its_module_is_a_backend_error_naming_what_is_there(monkeypatch):
    from edgeship.runtime.backends import base
    from edgeship.util import Registry

    # An install that lacks one engine's module (e.g. a trimmed device build): only ONNX Runtime is there.
    registry = Registry("backend", BackendError)
    registry.register(BackendKind.ONNXRUNTIME)(base.backend_class(BackendKind.ONNXRUNTIME))
    monkeypatch.setattr(base, "_REGISTRY", registry)
    monkeypatch.setitem(base._MODULES, BackendKind.TENSORRT, "no_such_engine_module")
    with pytest.raises(BackendError, match=r"the tensorrt backend is not part of this edgeship version "
                                           r"\(implemented: onnxruntime, litert, openvino\)"):
        backend_class(BackendKind.TENSORRT)


def test_backends_are_imported_only_when_asked_for():
    code = textwrap.dedent("""
        import sys
        import edgeship.runtime, edgeship.runtime.model, edgeship.runtime.backends
        from edgeship.runtime.session import RuntimeConfig  # the old home of the config stays light
        assert "edgeship.runtime.backends.ort" not in sys.modules, "ort backend imported eagerly"
        assert "onnxruntime" not in sys.modules, "onnxruntime imported eagerly"
        from edgeship.runtime.backends import backend_class
        cls = backend_class("onnxruntime")
        assert cls.__module__ == "edgeship.runtime.backends.ort" and cls.kind.value == "onnxruntime"
        assert "onnxruntime" not in sys.modules, "the ort module imports onnxruntime only when a session is made"
        from edgeship.runtime.session import create_session  # still importable from its old home
        from edgeship.runtime import create_session as again
        assert create_session is again
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_onnxruntime_backend_reports_specs_and_what_runs(tiny_bundle):
    backend = open_backend(BackendKind.ONNXRUNTIME, tiny_bundle.model_path, RuntimeConfig(intra_op_threads=1))
    (inp,), (out,) = backend.inputs, backend.outputs
    assert (inp.name, inp.dtype, inp.shape[1:], inp.dynamic_batch) == ("input", "float32", [3, 16, 16], True)
    assert (out.name, out.dtype, out.shape[1:]) == ("output", "float32", [4])
    info = backend.describe()
    assert info["backend"] == "onnxruntime" and info["providers"] == ["CPUExecutionProvider"]
    assert info["intra_op_threads"] == 1 and info["version"]
    (y,) = backend.run(np.zeros((2, 3, 16, 16), np.float32))
    assert y.shape == (2, 4)
    with pytest.raises(InputError, match=r"rejected an input of shape \[1, 3, 8, 8\].*expects \['batch', 3, 16, 16\]"):
        backend.run(np.zeros((1, 3, 8, 8), np.float32))
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        backend.run(np.zeros((1, 3, 16, 16), np.float32))
