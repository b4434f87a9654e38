"""Engines that run a model file, registered by kind and imported only when asked for.

>>> from edgeship.runtime.backends import BackendKind, open_backend
>>> backend = open_backend("onnxruntime", "model.onnx", RuntimeConfig())
>>> backend_class("tflite")
Traceback (most recent call last):
edgeship.errors.InputError: unknown backend 'tflite'; known backends: onnxruntime, litert, openvino, tensorrt

A new engine is one module here, with ``@register_backend(BackendKind.X)`` on its Backend subclass
and its module name in ``base._MODULES``.
"""

from .base import Backend, backend_class, implemented, open_backend, register_backend
from .kinds import BackendKind

__all__ = ["Backend", "BackendKind", "backend_class", "implemented", "open_backend", "register_backend"]
