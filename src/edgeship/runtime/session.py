"""Where ``RuntimeConfig`` and ONNX Runtime sessions used to live; both names still import from here.

>>> from edgeship.runtime.session import RuntimeConfig, create_session
>>> session = create_session("model.onnx", RuntimeConfig(intra_op_threads=4))

The settings now live in ``runtime.config``, the ONNX Runtime code in ``runtime.backends.ort``
(imported only when one of its names is asked for).
"""

from __future__ import annotations

from typing import Any

from .config import RuntimeConfig

_ORT_NAMES = ("available_providers", "create_session", "resolve_providers", "session_options")

__all__ = ["RuntimeConfig", *_ORT_NAMES]


def __getattr__(name: str) -> Any:
    if name in _ORT_NAMES:
        from .backends import ort

        return getattr(ort, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
