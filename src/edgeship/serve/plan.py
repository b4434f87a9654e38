"""What ``edgeship serve`` would plan for its memory, found by starting it without listening.

>>> predict_server_memory(["mobilenet/"], {"max_batch": 4})   # a fresh interpreter, as the server starts
{"parts": [...], "resident_bytes": ..., "peak_bytes": ..., "measured": {"rss_bytes": ...}, ...}

``edgeship fit`` reports this as its prediction of the server's RSS: the same start-up (imports,
model loads, twin, warm-up runs) in a process of its own, so that nothing the caller holds is
counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from ..errors import InputError
from .budget import report


def import_server_stack() -> None:
    """Import now what ``uvicorn.run`` imports when it starts, so that the plan measures it."""
    import importlib

    for name in ("uvloop", "httptools", "uvicorn.loops.auto", "uvicorn.loops.uvloop", "uvicorn.lifespan.on",
                 "uvicorn.protocols.http.auto", "uvicorn.protocols.http.httptools_impl"):
        try:
            importlib.import_module(name)
        except ImportError:  # uvicorn falls back to asyncio and h11 without them
            pass


def predict_server_memory(bundles: list[str], config_fields: dict[str, Any], timeout: float = 600.0) -> dict:
    """The plan ``edgeship serve BUNDLES`` with these ServeConfig fields would make: its start-up, in a
    fresh interpreter that does not listen (what ``edgeship fit`` reports as a prediction)."""
    code = ("import json, sys\n"
            "import edgeship.cli  # what `edgeship serve` has imported when it starts\n"
            "edgeship.cli.build_parser(\"serve\")\n"
            "from edgeship.serve.plan import _plan_main\n"
            "print(json.dumps(_plan_main(json.loads(sys.argv[1]))))\n")
    done = subprocess.run([sys.executable, "-c", code, json.dumps({"bundles": bundles, "config": config_fields})],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise InputError(f"the server could not start to plan its memory: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _plan_main(spec: dict) -> dict:
    import_server_stack()
    from .app import create_app
    from .config import ServeConfig

    config = ServeConfig(**{**spec["config"], "memory_budget": 1.0})  # plan, do not refuse
    app = create_app(spec["bundles"], config)
    state = app.state.edgeship
    return report(state.memory_plan, state.memory_budget)
