"""Run inside a venv where only `pip install .` (no extras) happened: the device side works without torch.

Used by `make device-install-check` (CI). Exits non-zero with the reason on failure.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

assert importlib.util.find_spec("torch") is None, "torch is installed in the device venv: `pip install .` pulled it in"

import numpy as np  # noqa: E402

import edgeship  # noqa: E402
from edgeship import bundle, monitor, runtime, targets  # noqa: E402,F401

# a real ONNX graph written by hand (no onnx package here): Identity wrapped in a bundle
from edgeship.bundle import Manifest, TensorSpec, write_bundle  # noqa: E402
from edgeship.cli import main  # noqa: E402

ONNX_IDENTITY = bytes.fromhex(  # onnx.helper: Identity x[1,3,4] -> y, opset 16, IR 8
    "080812046e6f6e653a4b0a140a01781201791a02696422084964656e746974791201675a170a017812120a100801120c0a0208010a"
    "0208030a02080462170a017912120a100801120c0a0208010a0208030a02080442040a001010"
)
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "m.onnx"
    path.write_bytes(ONNX_IDENTITY)
    m = Manifest(name="id", model="model.onnx", inputs=[TensorSpec("x", [1, 3, 4], "float32")])
    b = write_bundle(Path(tmp) / "b", m, path)
    model = runtime.Model.load(b.root)
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    assert np.array_equal(model.run(x)[0], x)
    assert main(["devices"]) == 0
assert "torch" not in sys.modules
print(f"device install ok: edgeship {edgeship.__version__} runs a bundle without torch")
