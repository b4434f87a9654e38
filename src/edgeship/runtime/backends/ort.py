"""The ONNX Runtime backend: one ``InferenceSession``, its options from a RuntimeConfig.

>>> backend = OrtBackend("model.onnx", RuntimeConfig(intra_op_threads=2))
>>> backend.describe()
{'backend': 'onnxruntime', 'version': '1.22.0', 'providers': ['CPUExecutionProvider'], 'intra_op_threads': 2, ...}
>>> session = create_session("model.onnx", cfg)     # the bare session, for code that times ORT itself
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ...errors import BackendError, BundleError, InputError
from .base import Backend, BackendKind, register_backend
from .ort_options import _DTYPES, available_providers, resolve_providers, session_options

__all__ = ["OrtBackend", "available_providers", "create_session", "resolve_providers", "session_options"]

if TYPE_CHECKING:
    from ...bundle import TensorSpec
    from ..config import RuntimeConfig

log = logging.getLogger("edgeship.runtime")


_INSTALL = {
    "CUDAExecutionProvider": "pip install onnxruntime-gpu (in place of onnxruntime) on a host with an NVIDIA GPU",
    "TensorrtExecutionProvider": "pip install onnxruntime-gpu and TensorRT's libraries (pip install tensorrt)",
    "OpenVINOExecutionProvider": "pip install onnxruntime-openvino (in place of onnxruntime), or use --backend openvino",
}


def explicit_providers(cfg: "RuntimeConfig") -> list:
    """The providers list for ``cfg.provider``: that provider (with ``cfg.options``) and the CPU after it.

    A provider this onnxruntime does not have is a BackendError naming what to install: asking for
    a GPU and silently getting the CPU would make every figure that follows a lie.
    """
    import onnxruntime as ort

    from ..config import PROVIDERS

    assert cfg.provider is not None  # called only for a config that names a provider
    name = PROVIDERS[cfg.provider]
    have = available_providers()
    if name not in have:
        raise BackendError(
            f"the {cfg.provider} provider ({name}) is not in this onnxruntime {ort.__version__} "
            f"(it has {', '.join(have)}); {_INSTALL.get(name, 'install an onnxruntime build with it')}"
        )
    first = (name, cfg.option_dict) if cfg.options else name
    return [first] if name == "CPUExecutionProvider" else [first, "CPUExecutionProvider"]


def create_session(model_path: Union[str, os.PathLike], cfg: "RuntimeConfig | None" = None, weights: Any = None):
    """An onnxruntime.InferenceSession for ``model_path``; load failures become BundleError.

    ``weights``: a SharedWeights (ort_weights.py) to load the cached optimized graph from instead.
    """
    import onnxruntime as ort

    from ..config import RuntimeConfig

    cfg = cfg or RuntimeConfig()
    path = Path(model_path)
    if not path.is_file():
        raise BundleError(f"{path}: model file not found")
    providers = explicit_providers(cfg) if cfg.provider else resolve_providers(cfg.providers)
    opts = session_options(cfg)
    source = str(path)
    if weights is not None:
        weights.attach(opts)
        source = str(weights.model_path)
    try:
        session = ort.InferenceSession(source, opts, providers=providers)
        if weights is not None:
            session._edgeship_weights = weights  # the mapping lives as long as the session that borrows it
    except Exception as exc:  # ORT raises Fail / InvalidProtobuf / RuntimeException
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if cfg.provider and cfg.provider != "cpu":
            raise BackendError(f"{path}: ONNX Runtime could not start the {cfg.provider} provider with options "
                               f"{cfg.option_dict or '{}'} ({first[:240]})") from exc
        raise BundleError(
            f"{path}: ONNX Runtime cannot load this model ({first[:240]}); "
            "check the file is complete and was exported with a supported opset"
        ) from exc
    if cfg.provider:
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if wanted not in session.get_providers():  # ORT falls back to the CPU when a provider fails to start
            raise BackendError(f"{path}: ONNX Runtime did not start {wanted} (the session runs on "
                               f"{', '.join(session.get_providers())}); check the GPU driver and libraries")
    return session


def _spec(arg) -> "TensorSpec":
    from ...bundle import TensorSpec

    return TensorSpec(arg.name, [d if isinstance(d, int) else (d or None) for d in arg.shape], _DTYPES.get(arg.type, arg.type))


@register_backend(BackendKind.ONNXRUNTIME)
class OrtBackend(Backend):
    """ONNX Runtime on the providers the config asks for: an explicit ``provider`` or an error; a
    preference list (a preset's ``providers``) skips those the host lacks."""

    suffixes = (".onnx",)

    def __init__(self, model_path: Union[str, os.PathLike], config: "RuntimeConfig"):
        super().__init__(model_path, config)
        self.weights = _shared_weights(model_path, config)
        self.weights_note = "shared: mapped from the optimized-graph cache" if self.weights else "private"
        try:
            self._session = create_session(model_path, config, self.weights)
        except BundleError:
            if self.weights is None:
                raise
            log.warning("%s: the cached optimized graph did not load; loading the model itself", model_path)
            self.weights, self.weights_note = None, "private (the cached optimized graph did not load)"
            self._session = create_session(model_path, config)
        self._inputs = [_spec(a) for a in self._session.get_inputs()]
        self._outputs = [_spec(a) for a in self._session.get_outputs()]
        self._input_name = self._inputs[0].name
        self._output_names = [o.name for o in self._outputs]

    @classmethod
    def import_engine(cls) -> None:
        import onnxruntime  # noqa: F401

    @property
    def inputs(self) -> list["TensorSpec"]:
        return self._inputs

    @property
    def outputs(self) -> list["TensorSpec"]:
        return self._outputs

    @property
    def session(self):
        """The InferenceSession itself, for code that measures ONNX Runtime as such (fit, bench)."""
        session = self._session
        if session is None:
            raise BackendError(f"{self.model_path}: this ONNX Runtime session was closed")
        return session

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        session = self.session  # a local: a close() during the run does not pull it away
        try:
            return session.run(self._output_names, {self._input_name: batch})
        except Exception as exc:  # ORT InvalidArgument / RuntimeException
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            want = self._inputs[0]
            raise InputError(
                f"the model rejected an input of shape {list(batch.shape)} {batch.dtype} "
                f"(it expects {want.shape} {want.dtype}): {first[:200]}"
            ) from exc

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        c = self.config
        session = self._session
        return {
            "backend": self.kind.value,
            "version": ort.__version__,
            "providers": session.get_providers() if session is not None else [],
            "provider_options": ({k: v for k, v in session.get_provider_options().items() if v}
                                 if session is not None and c.options else {}),
            "intra_op_threads": c.intra_op_threads,  # None: ONNX Runtime's default, one per physical core
            "inter_op_threads": c.inter_op_threads,
            "execution_mode": c.execution_mode,
            "graph_optimization": c.graph_optimization,
            "allow_spinning": c.allow_spinning,
            "stop_spinning_after_run": c.stop_spinning_after_run,
            "weights": self.weights_note,
        }

    def close(self) -> None:
        self._session = None
        self.weights = None  # a run still under way holds the session, and the session the mapping


def _shared_weights(model_path: Union[str, os.PathLike], config: "RuntimeConfig"):
    """The model's SharedWeights when the config asks for them and the CPU runs it; None otherwise."""
    if (not config.shared_weights or config.provider not in (None, "cpu")
            or resolve_providers(config.providers) != ["CPUExecutionProvider"]):
        return None
    if not Path(model_path).is_file():
        return None  # create_session says what is wrong
    from .ort_weights import SharedWeights

    try:
        return SharedWeights.get(model_path, config)
    except Exception as exc:  # noqa: BLE001  a read-only cache, a graph ORT cannot save: run as before
        log.warning("%s: weights not shared (%s: %s); each session holds its own", model_path,
                    type(exc).__name__, str(exc)[:200])
        return None
