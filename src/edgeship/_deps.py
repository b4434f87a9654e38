"""Import optional dependencies with an error that names the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming ``pip install 'edgeship[extra]'``.

    >>> torch = require("torch", "optimize", "exporting a PyTorch model")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"'{module.split('.')[0]}' is needed{why} but is not installed: "
            f"pip install 'edgeship[{extra}]'"
        ) from exc
