"""The engines edgeship knows by name; ``RuntimeConfig.backend`` is one of them.

>>> BackendKind.parse("openvino")
<BackendKind.OPENVINO: 'openvino'>
"""

from __future__ import annotations

import enum
from typing import Union

from ...errors import InputError


class BackendKind(str, enum.Enum):
    ONNXRUNTIME = "onnxruntime"
    LITERT = "litert"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"

    @classmethod
    def parse(cls, value: Union[str, "BackendKind"]) -> "BackendKind":
        """``"onnxruntime"`` or the enum itself; anything else is an InputError naming the kinds."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise InputError(f"unknown backend {value!r}; known backends: {known}") from None
