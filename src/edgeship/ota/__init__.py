"""Over-the-air model updates: a signed repository, a device store with a persisted state machine, an agent.

>>> from edgeship.ota import init_repo, Store, Agent, AgentConfig
>>> init_repo("fleet-repo").publish("mobilenet-v4/")
>>> Agent(Store("/var/lib/edgeship/store"), AgentConfig("http://repo.local:8700"), root=root).check("mobilenet")

repo (publisher, python-tuf metadata) · chunking + recipe (small updates) · store + state (A/B on
disk) · client + fetch (TUF verification, HTTP Range) · agent (the update steps) · gate (golden
check, canary) · mender (Update Module) · httpd (a Range file server) · faults (crash points).
Needs the ``ota`` extra (python-tuf, cryptography); nothing here imports torch. Names resolve on use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Agent": "edgeship.ota.agent",
    "AgentConfig": "edgeship.ota.agent",
    "CanaryConfig": "edgeship.ota.gate",
    "RepoConfig": "edgeship.ota.repo",
    "Repository": "edgeship.ota.repo",
    "Store": "edgeship.ota.store",
    "UpdateState": "edgeship.ota.state",
    "init_repo": "edgeship.ota.repo",
    "open_repo": "edgeship.ota.repo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgeship.ota' has no attribute {name!r}")
