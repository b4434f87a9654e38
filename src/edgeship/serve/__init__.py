"""The vision (and LLM) REST server: ``edgeship serve BUNDLE ...``, or in Python:

>>> from edgeship.serve import ServeConfig, create_app
>>> app = create_app(["mobilenet/"], ServeConfig(max_batch=8, queue_size=64))

Needs the ``serve`` extra (starlette, uvicorn, python-multipart, prometheus-client); never torch.
Names resolve on first use, so ``edgeship.serve.config`` (which the CLI reads to build its flags)
imports without the extra.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"ServeConfig": ".config", "ServedModel": ".state", "ServerState": ".state", "SwapResult": ".state",
            "create_app": ".app"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgeship.serve' has no attribute {name!r}")
    if _EXPORTS[name] != ".config":
        from .._deps import require

        require("starlette", "serve", "the REST server")
        require("prometheus_client", "serve", "the REST server's /metrics")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
