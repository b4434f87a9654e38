"""Build frozen dataclasses from plain dicts (JSON, YAML), naming the field that is wrong.

One mechanism for the bundle manifest, recipes and stage configs:

>>> @dataclasses.dataclass(frozen=True)
... class Spec:
...     size: int = 224
>>> from_dict(Spec, {"size": "big"}, where="recipe.export")
Traceback (most recent call last):
edgeship.errors.SchemaError: recipe.export.size: expected an integer, got 'big' (str)
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import types
import typing
from typing import Any, Callable, TypeVar

from .errors import SchemaError

T = TypeVar("T")

_SCALARS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _convert(tp: Any, value: Any, where: str, error: type[Exception]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own error names the nested field
            return _convert(options[0], value, where, error)
        failures = []
        for option in options:
            try:
                return _convert(option, value, where, error)
            except error as exc:
                failures.append(str(exc).split(": ", 1)[-1])
        raise error(f"{where}: {' or '.join(dict.fromkeys(failures))}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise error(f"{where}: expected one of {', '.join(map(repr, args))}, got {_describe(value)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise error(f"{where}: expected a list, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise error(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]", error) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]", error) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{where}: expected a mapping, got {_describe(value)}")
        vt = args[1] if args else Any
        return {str(k): _convert(vt, v, f"{where}.{k}", error) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in tp)
            raise error(f"{where}: expected one of {choices}, got {_describe(value)}") from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where, error=error)
    if tp in _SCALARS:
        ok = isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise error(f"{where}: expected {_SCALARS[tp]}, got {_describe(value)}")
        return value
    return value


def from_dict(cls: type[T], data: Any, where: str = "", error: type[Exception] = SchemaError) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types name their path."""
    if not isinstance(data, dict):
        raise error(f"{where or cls.__name__}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls)) if f.init}
    prefix = f"{where}." if where else ""
    unknown = [k for k in data if k not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        raise error(f"{prefix}{unknown[0]}: unknown field (known fields: {known})")
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise error(f"{prefix}{name}: required field is missing")
            continue
        kwargs[name] = _convert(hints[name], data[name], f"{prefix}{name}", error)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{where or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """The inverse of from_dict: enums become their values, dataclasses dicts, tuples lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def cli(help: str, *, type: Callable[[str], Any] | None = None, flag: str | None = None, unit: float = 1.0,
        metavar: str | None = None) -> dict[str, Any]:
    """Field metadata that makes a config field a command-line flag.

    >>> max_pixels: int = field(default=25_000_000, metadata=cli("largest accepted image", type=positive_int))
    >>> max_upload_bytes: int = field(default=10 << 20, metadata=cli("largest body", flag="--max-upload-mb",
    ...                               type=positive_float, unit=1 << 20))

    ``unit``: the flag is given in units of this many of the field's (MB for a byte count).
    """
    return {"cli": {"help": help, "type": type, "flag": flag, "unit": unit, "metavar": metavar}}


def cli_fields(cls: type, only: tuple[str, ...] | None, exclude: tuple[str, ...]):
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli") is not None and (only is None or f.name in only) and f.name not in exclude:
            yield f, f.metadata["cli"]



def config_from_args(cls: type, args: argparse.Namespace, only: tuple[str, ...] | None = None,
                     exclude: tuple[str, ...] = (), **fixed: Any):
    """``cls`` built from the flags ``add_config_flags`` added: flags left out keep the field's default;
    ``fixed`` values (set by the verb itself) win over flags."""
    values = {}
    for f, spec in cli_fields(cls, only, exclude):
        if getattr(args, f.name, None) is None:
            continue
        value = getattr(args, f.name)
        if spec["unit"] != 1:
            value = int(value * spec["unit"]) if isinstance(f.default, int) else value * spec["unit"]
        if isinstance(f.default, tuple):
            value = tuple(value)
        values[f.name] = value
    return cls(**{**values, **fixed})



# argparse types, shared by every verb and by config fields marked with cli(), so the same flag
# fails the same way everywhere.


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


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
fraction = _number(float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")


def text_or_file(text: str) -> str:
    """argparse type for a text that may be long: ``--prompt-template @prompt.txt`` reads the file."""
    if not text.startswith("@"):
        return text
    path = text[1:]
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: {exc}") from None
