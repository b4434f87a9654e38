"""What every verb's parser shares: the lazy runner, flags built from config dataclasses, ``--json PATH``,
and argparse types that fail the same way everywhere.

>>> add_config_flags(p, BenchConfig)                 # --batch, --runs, ... with each field's default and help
>>> add_json_flag(p, "the report")                   # --json PATH (or '-': stdout), the same in every verb
>>> renamed_flag(p, "--batch", "--graph-batch", "the batch baked into the graph")
>>> p.set_defaults(run=lazy("edgeship.commands.bench:run"))   # imported only when the verb runs
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
from typing import Any, Callable

from .._config import (
    cli_fields,
    config_from_args,
    csv_ints,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from ..util import emit_json

__all__ = ["add_config_flags", "add_json_flag", "add_runtime_flags", "config_from_args", "csv_ints", "emit_json",
           "fraction", "json_to_stdout", "lazy", "load_model", "non_negative_float", "non_negative_int",
           "positive_float", "positive_int", "renamed_flag", "runtime_from_args", "runtime_given"]


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A runner that imports ``module:function`` only when the verb runs."""

    def run(args: argparse.Namespace) -> int:
        module, _, func = target.partition(":")
        return getattr(importlib.import_module(module), func)(args)

    return run


# --- flags built from a config dataclass, so each default and its help live once --------------


def _flag(f: dataclasses.Field) -> str:
    return f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")


def add_config_flags(parser: Any, cls: type, only: tuple[str, ...] | None = None, exclude: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls`` that carries ``_config.cli(...)`` metadata; its default is the field's.

    ``parser`` may be a mutually exclusive group; ``only``/``exclude`` pick fields (a verb that sets one itself).
    A list field (``default_factory=list``) becomes a repeatable flag.
    """
    for f, spec in cli_fields(cls, only, exclude):
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
        if f.default_factory is list:
            kwargs["action"] = "append"
        if isinstance(default, tuple):
            shown = ",".join(map(str, default))
        if default is None:  # no default, or one computed at run time that the help describes
            tail = ""
        else:
            tail = f" (default: {shown:g})" if isinstance(shown, float) else f" (default: {shown})"
        parser.add_argument(_flag(f), help=spec["help"] + tail, **kwargs)


# --- one meaning per flag name across verbs ----------------------------------------------------


JSON_MISSING_PATH = "--json takes a PATH to write the result to ('-' for stdout), e.g. --json result.json"


def add_json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json PATH``: write ``what`` as JSON to PATH (``-``: to stdout, the human output going to stderr).

    A bare ``--json`` is an error naming the form (cli.VerbParser): it once printed in some verbs."""
    parser.add_argument("--json", default=None, metavar="PATH",
                        help=f"write {what} as JSON to PATH ('-': to stdout, the table then goes to stderr)")


def json_to_stdout(args: argparse.Namespace) -> bool:
    """Whether ``--json -`` asked for the JSON on stdout (then tables and notes go to stderr)."""
    return getattr(args, "json", None) == "-"


class _Renamed(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is now {self.const}")


def renamed_flag(parser: argparse.ArgumentParser, old: str, new: str, meaning: str) -> None:
    """``old`` fails with a pointer to ``new`` (hidden from --help): a renamed flag never means something else."""
    parser.add_argument(old, nargs="?", action=_Renamed, const=f"{new} ({meaning})", help=argparse.SUPPRESS)


# --- how a model runs: the same flags on predict, bench and serve -----------------------------

RUNTIME_FLAGS = ("backend", "provider", "provider_option", "bundle_variant")


def add_runtime_flags(parser: argparse.ArgumentParser, threads: bool = False) -> None:
    """--backend, --provider, --provider-option key=value (repeatable), --bundle-variant (and --threads)."""
    parser.add_argument("--backend", choices=["onnxruntime", "openvino", "litert", "tensorrt"], default=None,
                        help="engine (default: this host's recorded choice from `edgeship tune`, else the model "
                             "file's: ONNX Runtime for .onnx, LiteRT for .tflite)")
    parser.add_argument("--provider", choices=["cpu", "cuda", "tensorrt", "openvino"], default=None,
                        help="ONNX Runtime execution provider; one this host lacks is an error, never a silent CPU run")
    parser.add_argument("--provider-option", action="append", default=None, metavar="KEY=VALUE",
                        help="engine option, repeatable (ORT provider options, OpenVINO properties, TensorRT "
                             "max_batch/workspace_mb/...)")
    parser.add_argument("--bundle-variant", default=None, metavar="NAME",
                        help="run a variant declared inside the bundle (see `edgeship variant list`)")
    if threads:
        parser.add_argument("--threads", type=positive_int, default=None, help="intra-op threads")


def runtime_given(args: argparse.Namespace) -> bool:
    """Whether any runtime flag was given on the command line (then no recorded choice applies)."""
    return any(getattr(args, f, None) for f in RUNTIME_FLAGS)


def runtime_from_args(args: argparse.Namespace, base: Any = None):
    """A RuntimeConfig from the runtime flags over ``base`` (threads from --threads when given)."""
    from ..runtime.config import RuntimeConfig, parse_options

    base = base or RuntimeConfig()
    changes = {"backend": args.backend, "provider": args.provider, "variant": args.bundle_variant,
               "intra_op_threads": getattr(args, "threads", None)}
    if args.provider_option:
        changes["options"] = parse_options(args.provider_option)
    return base.replace(**changes)


def load_model(path: str, args: argparse.Namespace, base: Any = None, say: Callable[[str], None] = print, **kwargs):
    """Open the bundle and load it as the flags say; without runtime flags, as ``edgeship tune`` recorded
    for this host (a choice made for another host is not applied, and ``say`` is told so)."""
    from ..bundle import open_bundle
    from ..runtime import Model
    from ..targets.choice import recorded_runtime

    bundle = open_bundle(path)
    config = runtime_from_args(args, base)
    if not runtime_given(args):
        recorded = recorded_runtime(bundle, config)
        if recorded.note:
            say(recorded.note)
        if recorded.config is not None:
            config = recorded.config
    return Model(bundle, config, **kwargs)
