"""The device side: numpy + a backend (ONNX Runtime today) + pillow only. Never imports torch.

>>> from edgeship.runtime import Model, RuntimeConfig
>>> Model.load("bundle/", RuntimeConfig(intra_op_threads=2)).predict("cat.jpg").output
"""

from typing import Any

from .backends import BackendKind
from .config import RuntimeConfig
from .model import GoldenCheck, Model, Prediction, Prepared
from .preprocess import ImageMeta, Preprocessor, load_image

__all__ = [
    "BackendKind",
    "GoldenCheck",
    "ImageMeta",
    "Model",
    "Prediction",
    "Prepared",
    "Preprocessor",
    "RuntimeConfig",
    "create_session",
    "load_image",
]


def __getattr__(name: str) -> Any:
    if name == "create_session":  # ONNX Runtime's module loads only when this is asked for
        from .backends.ort import create_session

        return create_session
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
