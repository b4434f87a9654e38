"""The vision (and LLM) REST server: ``edgeship serve BUNDLE ...``, or in Python:

>>> from edgeship.serve import ServeConfig, create_app
>>> app = create_app(["mobilenet/"], ServeConfig(max_batch=8, queue_size=64))

Needs the ``serve`` extra (fastapi, uvicorn, python-multipart, prometheus-client); never torch.
"""

from __future__ import annotations

from .._deps import require

require("fastapi", "serve", "the REST server")
require("prometheus_client", "serve", "the REST server's /metrics")

from .app import create_app  # noqa: E402
from .config import ServeConfig  # noqa: E402
from .state import ServedModel, ServerState, SwapResult  # noqa: E402

__all__ = ["ServeConfig", "ServedModel", "ServerState", "SwapResult", "create_app"]
