"""The device side: numpy + onnxruntime + pillow only. Never imports torch."""

from .model import GoldenCheck, Model, Prediction
from .preprocess import ImageMeta, Preprocessor, load_image
from .session import RuntimeConfig, create_session

__all__ = [
    "GoldenCheck",
    "ImageMeta",
    "Model",
    "Prediction",
    "Preprocessor",
    "RuntimeConfig",
    "create_session",
    "load_image",
]
