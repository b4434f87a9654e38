"""What a backend is (an engine that runs one model file) and how one is found, by kind.

>>> backend = open_backend(BackendKind.ONNXRUNTIME, "model.onnx", RuntimeConfig(intra_op_threads=2))
>>> backend.inputs[0], backend.describe()["providers"]
(TensorSpec(name='input', shape=['batch', 3, 224, 224], dtype='float32', layout=None), ['CPUExecutionProvider'])
>>> outputs = backend.run(batch)
>>> backend.close()

Each implementation registers itself with ``@register_backend(kind)`` in its own module; that
module is imported only when its kind is first asked for, so asking for ONNX Runtime never imports
LiteRT, and importing this package imports no engine at all.
"""

from __future__ import annotations

import abc
import importlib
import os
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Union

import numpy as np

from ...errors import BackendError
from ...util import Registry
from .kinds import BackendKind

if TYPE_CHECKING:
    from ...bundle import TensorSpec
    from ..config import RuntimeConfig


# The module that implements each kind, imported on first use. Not named after the engine's own
# package (``openvino.py`` would shadow nothing under absolute imports, but reads as if it did).
_MODULES: dict[BackendKind, str] = {
    BackendKind.ONNXRUNTIME: "ort",
    BackendKind.LITERT: "litert",
    BackendKind.OPENVINO: "ov",
    BackendKind.TENSORRT: "trt",
}
_REGISTRY: Registry[BackendKind, type["Backend"]] = Registry("backend", BackendError)


class Backend(abc.ABC):
    """One model file loaded into one engine, with its settings fixed for its life.

    A backend is safe to ``run`` from several threads at once (the server's health check runs
    beside its inference thread). ``close`` frees the engine's memory; a run started before it
    finishes, one started after raises BackendError.
    """

    kind: ClassVar[BackendKind]
    suffixes: ClassVar[tuple[str, ...]] = ()  # the model files it reads (".onnx", ".tflite", ...)

    def __init__(self, model_path: Union[str, os.PathLike], config: "RuntimeConfig"):
        self.model_path = model_path
        self.config = config

    @classmethod  # noqa: B027  an optional hook: an engine without a heavy import keeps this no-op
    def import_engine(cls) -> None:
        """Import the engine's own (heavy) package now, e.g. before measuring what a model adds."""

    @property
    @abc.abstractmethod
    def inputs(self) -> list["TensorSpec"]:
        """The graph's inputs, as the engine reports them (dynamic dims are strings or None)."""

    @property
    @abc.abstractmethod
    def outputs(self) -> list["TensorSpec"]:
        """The graph's outputs, in the order ``run`` returns them."""

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Feed ``batch`` (already the first input's dtype) to the first input; all outputs in order.

        An input the engine rejects raises InputError saying what it expected.
        """

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What actually runs: the engine, its version, devices/providers, threads, options (JSON-safe)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free the engine's session; idempotent."""


def register_backend(kind: BackendKind) -> Callable[[type[Backend]], type[Backend]]:
    """Class decorator: ``@register_backend(BackendKind.LITERT)`` next to the implementation."""

    def deco(cls: type[Backend]) -> type[Backend]:
        cls.kind = kind
        return _REGISTRY.register(kind)(cls)

    return deco


def backend_class(kind: Union[str, BackendKind]) -> type[Backend]:
    """The class registered for ``kind``, importing its module on first use."""
    kind = BackendKind.parse(kind)
    if kind not in _REGISTRY:
        module = f"{__package__}.{_MODULES[kind]}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists; something it imports does not
                raise
        if kind not in _REGISTRY:
            have = ", ".join(k.value for k in implemented()) or "none"
            raise BackendError(f"the {kind.value} backend is not part of this edgeship version (implemented: {have})")
    return _REGISTRY.get(kind)


def implemented() -> list[BackendKind]:
    """The kinds whose module ships with this edgeship (their engine may still be missing)."""
    here = os.path.dirname(__file__)
    return [k for k in BackendKind if k in _REGISTRY or os.path.isfile(os.path.join(here, _MODULES[k] + ".py"))]


def open_backend(kind: Union[str, BackendKind], model_path: Union[str, os.PathLike], config: "RuntimeConfig") -> Backend:
    """Load ``model_path`` into the engine of ``kind`` with ``config``."""
    return backend_class(kind)(model_path, config)
