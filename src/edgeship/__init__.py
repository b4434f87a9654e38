"""edgeship: take a trained model from the cloud to an edge device and keep it running there.

>>> import edgeship
>>> model = edgeship.Model.load("effnet-lite0/")
>>> model.predict("cat.jpg").output["classes"][0]

Nothing heavy is imported here: names resolve on first use, so ``import edgeship`` stays cheap
and never pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Bundle": "edgeship.bundle",
    "Manifest": "edgeship.bundle",
    "Preprocessing": "edgeship.bundle",
    "Postprocessing": "edgeship.bundle",
    "TensorSpec": "edgeship.bundle",
    "Task": "edgeship.bundle",
    "Format": "edgeship.bundle",
    "open_bundle": "edgeship.bundle",
    "write_bundle": "edgeship.bundle",
    "pack": "edgeship.bundle",
    "unpack": "edgeship.bundle",
    "Model": "edgeship.runtime",
    "Prediction": "edgeship.runtime",
    "RuntimeConfig": "edgeship.runtime",
    "EdgeshipError": "edgeship.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgeship' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
