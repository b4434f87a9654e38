"""The ``edgeship`` command: one group, each verb registered by a light module that imports its
implementation only when it runs (``edgeship --help`` imports neither torch nor onnxruntime).

Exit codes: 0 ok, 1 failed, 2 bad usage (unknown flag, malformed argument, bad input file).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from . import __version__
from .errors import EdgeshipError, InputError, MissingDependencyError, ModelNotFoundError, SchemaError

# Each entry: a module with ``register(subparsers)`` adding its verb(s). Light imports only.
VERB_MODULES = [
    "edgeship.commands.export",
    "edgeship.commands.quantize",
    "edgeship.commands.optimize",
    "edgeship.commands.predict",
    "edgeship.commands.bench",
    "edgeship.commands.tune",
    "edgeship.commands.variant",
    "edgeship.commands.bundle",
    "edgeship.commands.devices",
    "edgeship.commands.serve",
    "edgeship.commands.llm",
    "edgeship.commands.describe",
    "edgeship.commands.demo",
    "edgeship.commands.monitor",
    "edgeship.commands.ota",
]

USAGE_ERRORS = (InputError, SchemaError, ModelNotFoundError)


class _Help(argparse.HelpFormatter):
    """Every flag with a default shows it, unless its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and action.option_strings and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


class VerbParser(argparse.ArgumentParser):
    """A verb's parser: no abbreviated flags (``--run`` is not ``--runs``), defaults in --help, and an
    unknown flag reported against the verb's own usage with the closest known flags."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)
        self.set_defaults(_verb_parser=self)

    def error(self, message: str):
        if message == "argument --json: expected one argument":
            from .commands.args import JSON_MISSING_PATH

            message = JSON_MISSING_PATH
        super().error(message)

    def reject_unknown(self, extras: list[str]) -> None:
        import difflib

        known = [o for a in self._actions for o in a.option_strings]
        flags = [e.split("=", 1)[0] for e in extras if e.startswith("-")]
        hint = ""
        if flags:
            close = difflib.get_close_matches(flags[0], known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


# The module that registers each verb, so that a command line naming one builds only its parser:
# `edgeship serve` then imports none of the other verbs' configs (about 0.1 s of every start).
VERB_OWNERS = {"fit": "edgeship.commands.devices", "distill": "edgeship.commands.optimize",
               "prune": "edgeship.commands.optimize"}


def _owner(verb: str | None) -> str | None:
    """The module that registers ``verb``, or None when it is no known verb."""
    if not verb:
        return None
    module = VERB_OWNERS.get(verb, f"edgeship.commands.{verb}")
    return module if module in VERB_MODULES else None


def build_parser(verb: str | None = None) -> VerbParser:
    """The whole command line, or with ``verb`` (e.g. "serve") only the parser of the module that
    registers it (what ``main`` builds when the command line names a known verb)."""
    parser = VerbParser(
        prog="edgeship",
        description=(
            "Take a trained model to an edge device and keep it running: "
            "distill / prune / export / quantize -> bundle -> bench / predict / serve / fit."
        ),
    )
    parser.add_argument("--version", action="version", version=f"edgeship {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=VerbParser)
    owner = _owner(verb)
    for name in [owner] if owner else VERB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)  # a leading flag (--help, --version): the whole parser
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            getattr(args, "_verb_parser", parser).reject_unknown(extras)
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
        return int(exc.code or 0)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except MissingDependencyError as exc:
        _error(exc)
        return 1
    except USAGE_ERRORS as exc:
        _error(exc)
        return 2
    except EdgeshipError as exc:
        _error(exc)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _error(exc: BaseException) -> None:
    # rich is imported only here: a verb that prints nothing with it (serve) keeps it out of its memory
    from rich.markup import escape  # messages hold 'edgeship[llm]', not markup

    from .util import console

    console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)


if __name__ == "__main__":
    sys.exit(main())
