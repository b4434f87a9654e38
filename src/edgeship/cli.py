"""The ``edgeship`` command: one group, each verb registered by a light module that imports its
implementation only when it runs (``edgeship --help`` imports neither torch nor onnxruntime).

Exit codes: 0 ok, 1 failed, 2 bad usage (unknown flag, malformed argument, bad input file).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import EdgeshipError, InputError, MissingDependencyError, SchemaError

# Each entry: a module with ``register(subparsers)`` adding its verb(s). Light imports only.
VERB_MODULES = [
    "edgeship.commands.export",
    "edgeship.commands.quantize",
    "edgeship.commands.optimize",
    "edgeship.commands.predict",
    "edgeship.commands.bench",
    "edgeship.commands.bundle",
    "edgeship.commands.devices",
    "edgeship.commands.serve",
    "edgeship.commands.llm",
    "edgeship.commands.demo",
    "edgeship.commands.ota",
]

USAGE_ERRORS = (InputError, SchemaError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeship",
        description=(
            "Take a trained model to an edge device and keep it running: "
            "distill / prune / export / quantize -> bundle -> bench / predict / serve / fit."
        ),
    )
    parser.add_argument("--version", action="version", version=f"edgeship {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A runner that imports ``module:function`` only when the verb runs."""

    def run(args: argparse.Namespace) -> int:
        module, _, func = target.partition(":")
        return getattr(importlib.import_module(module), func)(args)

    return run


def csv_ints(text: str) -> list[int]:
    """argparse type for ``--batch 1,8``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,8, got {text!r}")
    return values


def _number(kind: type, ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


# argparse types shared by every verb, so the same flag fails the same way everywhere
positive_int = _number(int, lambda v: v >= 1, "a positive integer")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")


def main(argv: Sequence[str] | None = None) -> int:
    from rich.markup import escape  # messages hold 'edgeship[llm]', not markup

    from .util import console

    err = console(stderr=True)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
        return int(exc.code or 0)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except MissingDependencyError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 1
    except USAGE_ERRORS as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    except EdgeshipError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
