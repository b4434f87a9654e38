"""Small architectures for the Fashion-MNIST pipeline, and saving/loading (possibly pruned) modules.

>>> teacher, student = build("fmnist-teacher"), build("fmnist-student")
>>> save_checkpoint(student, "student.pt", arch="fmnist-student")
>>> load_model("student.pt")          # also a zoo name, or package.module:function

Sizes measured with torch-pruning's counter at 1x28x28: the teacher has 1.74M parameters and
16.5M MACs, the student 94k parameters and 7.6M MACs (18x fewer parameters, 2.2x fewer MACs).
The student puts its width where the image is small (7x7) and ends in global pooling, so that
structured pruning has channels to remove on every layer but the first input and the classifier.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Union

from .._deps import require
from ..errors import InputError, ModelNotFoundError
from ..util import Registry, atomic_file

FMNIST_CLASSES = 10
# Architecture builders ``fn(num_classes, in_channels) -> nn.Module`` by name.
_ZOO: Registry[str, Callable[..., Any]] = Registry("architecture", ModelNotFoundError)


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: add an architecture builder ``fn(num_classes, in_channels) -> nn.Module`` to the zoo."""
    return _ZOO.register(name)


def names() -> list[str]:
    return sorted(_ZOO.names())


def _block(nn: Any, cin: int, cout: int) -> list[Any]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register("fmnist-teacher")
def fmnist_teacher(num_classes: int = FMNIST_CLASSES, in_channels: int = 1) -> Any:
    """~1.7M parameters: three conv blocks then a wide fully connected head (cheap in MACs)."""
    nn = require("torch.nn", "optimize", "the Fashion-MNIST models")
    return nn.Sequential(
        *_block(nn, in_channels, 32), nn.MaxPool2d(2),
        *_block(nn, 32, 64), *_block(nn, 64, 64), nn.MaxPool2d(2),
        *_block(nn, 64, 128),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 7 * 7, 256), nn.ReLU(inplace=True),
        nn.Dropout(0.3), nn.Linear(256, num_classes),
    )


@register("fmnist-student")
def fmnist_student(num_classes: int = FMNIST_CLASSES, in_channels: int = 1) -> Any:
    """~94k parameters: three conv blocks, global average pooling, one linear classifier."""
    nn = require("torch.nn", "optimize", "the Fashion-MNIST models")
    return nn.Sequential(
        *_block(nn, in_channels, 32), nn.MaxPool2d(2),
        *_block(nn, 32, 64), nn.MaxPool2d(2),
        *_block(nn, 64, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes),
    )


def build(name: str, num_classes: int = FMNIST_CLASSES, in_channels: int = 1) -> Any:
    """A fresh (randomly initialised) zoo architecture."""
    if name not in _ZOO:
        raise ModelNotFoundError(f"unknown architecture {name!r}; the zoo has {', '.join(names())}")
    return _ZOO.get(name)(num_classes=num_classes, in_channels=in_channels)


def save_checkpoint(module: Any, path: Union[str, os.PathLike], arch: str | None = None, **extra: Any) -> Path:
    """Save ``module`` so that it loads again even after pruning changed its shapes (atomic write).

    Pruned modules no longer match their architecture's constructor, so the whole module is
    pickled; ``arch`` and ``extra`` (labels, accuracy, ...) are stored beside it.
    """
    torch = require("torch", "optimize")
    path = Path(path)
    with atomic_file(path) as f:
        torch.save({"format": "edgeship-module/1", "arch": arch, "module": module, **extra}, f)
    return path


def load_checkpoint(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint`. It unpickles: load only files you trust."""
    torch = require("torch", "optimize")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated file, not a torch file, missing class
        raise InputError(f"{path}: not a readable edgeship model file ({str(exc)[:200]})") from exc
    if not isinstance(data, dict) or data.get("format") != "edgeship-module/1":
        raise InputError(f"{path}: not an edgeship model file (expected one written by distill/prune)")
    return data


def load_model(ref: str, num_classes: int = FMNIST_CLASSES, in_channels: int = 1) -> Any:
    """A module from a zoo name, an edgeship ``.pt`` file, or ``package.module:function``."""
    if ref in _ZOO:
        return build(ref, num_classes, in_channels)
    if ref.endswith((".pt", ".pth")) or Path(ref).is_file():
        return load_checkpoint(ref)["module"]
    if ":" in ref:
        from .models import resolve_model

        return resolve_model(ref).module
    raise ModelNotFoundError(
        f"{ref!r}: not a zoo architecture ({', '.join(names())}), a .pt file, or package.module:function"
    )
