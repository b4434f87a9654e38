"""What every verb's parser shares: the lazy runner and argparse types that fail the same way everywhere.

>>> p.add_argument("--batch", type=csv_ints, default=[1])
>>> p.set_defaults(run=lazy("edgeship.commands.bench:run"))   # imported only when the verb runs
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
from typing import Any, Callable

from .._config import csv_ints, non_negative_float, positive_float, positive_int

__all__ = ["add_config_flags", "config_from_args", "csv_ints", "lazy", "non_negative_float", "positive_float",
           "positive_int"]


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A runner that imports ``module:function`` only when the verb runs."""

    def run(args: argparse.Namespace) -> int:
        module, _, func = target.partition(":")
        return getattr(importlib.import_module(module), func)(args)

    return run


# --- flags built from a config dataclass, so each default and its help live once --------------


def _flag(f: dataclasses.Field) -> str:
    return f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of ``cls`` that carries ``_config.cli(...)`` metadata; its default is the field's."""
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("cli")
        if spec is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        metavar = spec["metavar"] or _flag(f).lstrip("-").replace("-", "_").upper()
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "metavar": metavar}
        shown = default / spec["unit"] if isinstance(default, (int, float)) and spec["unit"] != 1 else default
        if isinstance(default, enum.Enum):
            kwargs["choices"] = [m.value for m in type(default)]
            kwargs.pop("metavar")
            shown = default.value
        elif isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs.pop("metavar")
        elif spec["type"] is not None:
            kwargs["type"] = spec["type"]
        if default is None:  # no default, or one computed at run time that the help describes
            tail = ""
        else:
            tail = f" (default: {shown:g})" if isinstance(shown, float) else f" (default: {shown})"
        parser.add_argument(_flag(f), help=spec["help"] + tail, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace, **fixed: Any):
    """``cls`` built from the flags ``add_config_flags`` added: flags left out keep the field's default."""
    values = dict(fixed)
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("cli")
        if spec is None or getattr(args, f.name, None) is None:
            continue
        value = getattr(args, f.name)
        if spec["unit"] != 1:
            value = int(value * spec["unit"]) if isinstance(f.default, int) else value * spec["unit"]
        values[f.name] = value
    return cls(**values)
