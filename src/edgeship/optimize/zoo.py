"""Small architectures for the Fashion-MNIST pipeline, and saving/loading (possibly pruned) modules.

>>> teacher, student = build("fmnist-teacher"), build("fmnist-student")
>>> save_checkpoint(student, "student.pt", arch="fmnist-student")   # state dict + layer sizes
>>> load_model("student.pt")          # also a zoo name, or package.module:function

Sizes measured with torch-pruning's counter at 1x28x28: the teacher has 1.74M parameters and
16.5M MACs, the student 94k parameters and 7.6M MACs (18x fewer parameters, 2.2x fewer MACs).
The student puts its width where the image is small (7x7) and ends in global pooling, so that
structured pruning has channels to remove on every layer but the first input and the classifier.
"""

from __future__ import annotations

import os
import pickle
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


CHECKPOINT_FORMAT = "edgeship-checkpoint/2"
# Module attributes that pruning changes and that a rebuilt architecture must take over: the
# channel and feature counts of the layers torch-pruning narrows (plain ints or int tuples).
_SIZE_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
               "num_channels", "num_groups", "normalized_shape", "num_embeddings", "embedding_dim")
_PLAIN = (str, int, float, bool, type(None))


def _plain(value: Any) -> bool:
    """JSON-like data only: what ``torch.load(weights_only=True)`` reads back without unpickling objects."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _arch_of(module: Any, arch: str | None) -> str | None:
    # A module loaded from a checkpoint keeps the architecture it was built from: pruning
    # "student.pt" again must record "fmnist-student", not the file name.
    if arch is None or arch.endswith((".pt", ".pth")) or Path(arch).is_file():
        return getattr(module, "edgeship_arch", None)
    return arch


def save_checkpoint(module: Any, path: Union[str, os.PathLike], arch: str | None = None, **extra: Any) -> Path:
    """Save ``module`` as a state dict plus what rebuilds it: architecture name and layer sizes (atomic write).

    Pruned modules no longer match their architecture's constructor; the sizes of every narrowed
    layer are stored beside the weights, so loading builds ``arch`` and resizes it. The file holds
    tensors and plain data only, so it loads with ``torch.load(weights_only=True)``: no pickled
    object, no code run. ``extra`` (labels, accuracy, ...) must be plain data too.
    """
    torch = require("torch", "optimize")
    arch = _arch_of(module, arch)
    for key, value in extra.items():
        if not _plain(value):
            raise InputError(f"checkpoint field {key!r}: only plain data (str, numbers, lists, dicts) is stored, "
                             f"got {type(value).__name__}")
    sizes = {}
    for name, sub in module.named_modules():
        attrs = {a: getattr(sub, a) for a in _SIZE_ATTRS if _plain(getattr(sub, a, object()))}
        if attrs:
            sizes[name] = {"type": type(sub).__name__, **{a: list(v) if isinstance(v, tuple) else v
                                                          for a, v in attrs.items()}}
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    path = Path(path)
    with atomic_file(path) as f:
        torch.save({**extra, "format": CHECKPOINT_FORMAT, "arch": arch, "sizes": sizes, "state_dict": state}, f)
    return path


def read_checkpoint(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """The raw content of an edgeship checkpoint, read with ``weights_only=True`` (tensors and plain data).

    A file that needs anything else to load (a pickled module, or a crafted pickle whose objects
    would run code when loaded) is refused with InputError; nothing in it is executed.
    """
    torch = require("torch", "optimize")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for objects, RuntimeError/EOFError for damaged files
        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc).lower() or "Weights only" in str(exc):
            raise InputError(
                f"{path}: refusing to load: it holds Python objects, not only weights (loading them could run "
                "code). edgeship checkpoints hold a state dict and the architecture's name; older ones "
                "(edgeship-module/1, a pickled module) must be re-created with this version"
            ) from None
        raise InputError(f"{path}: not a readable edgeship model file ({str(exc)[:200]})") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not an edgeship model file (expected one written by distill/prune, "
                         f"format {CHECKPOINT_FORMAT})")
    return data


def _rebuild(arch: Any, path: Path) -> Any:
    """A fresh module of architecture ``arch``: a zoo name or a torchvision/EfficientNet-Lite name, never code."""
    if not isinstance(arch, str) or not arch:
        raise InputError(f"{path}: the checkpoint names no architecture to rebuild")
    if arch in _ZOO:
        return build(arch)
    if ":" in arch:
        # Importing the named function would run code the checkpoint chose.
        raise InputError(f"{path}: its architecture {arch!r} is an import path; rebuild it yourself "
                         f"(load_model({arch!r})) and load the checkpoint's state_dict into it")
    from .models import resolve_model

    try:
        return resolve_model(arch).module
    except ModelNotFoundError as exc:
        raise InputError(f"{path}: cannot rebuild its architecture ({exc})") from exc


def _resize(module: Any, sizes: Any, state: dict[str, Any], path: Path) -> None:
    """Give ``module`` the layer sizes recorded in the checkpoint (what pruning removed)."""
    torch = require("torch", "optimize")
    if not isinstance(sizes, dict):
        raise InputError(f"{path}: malformed checkpoint (sizes)")
    subs = dict(module.named_modules())
    for name, record in sizes.items():
        sub = subs.get(name)
        if sub is None or not isinstance(record, dict) or record.get("type") != type(sub).__name__:
            raise InputError(f"{path}: layer {name!r} does not match the architecture "
                             f"({record.get('type') if isinstance(record, dict) else record!r} vs "
                             f"{type(sub).__name__ if sub is not None else 'missing'})")
        for attr, value in record.items():
            if attr in _SIZE_ATTRS and hasattr(sub, attr):
                setattr(sub, attr, tuple(value) if isinstance(value, list) else value)
    for key, tensor in state.items():
        owner, _, leaf = key.rpartition(".")
        sub = subs.get(owner)
        if sub is None or not isinstance(tensor, torch.Tensor):
            continue  # load_state_dict(strict=True) names it
        if leaf in sub._parameters and sub._parameters[leaf] is not None:
            if sub._parameters[leaf].shape != tensor.shape:
                sub._parameters[leaf] = torch.nn.Parameter(torch.empty_like(tensor),
                                                           requires_grad=sub._parameters[leaf].requires_grad)
        elif leaf in sub._buffers and sub._buffers[leaf] is not None and sub._buffers[leaf].shape != tensor.shape:
            sub._buffers[leaf] = torch.empty_like(tensor)


def load_checkpoint(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint`: its fields, and ``module`` rebuilt with its weights.

    Safe on files from anywhere: ``torch.load(weights_only=True)``, and the architecture is built
    by name from the zoo or torchvision (an import path is refused, as it would run code).
    """
    path = Path(path)
    data = read_checkpoint(path)
    state = data.get("state_dict")
    if not isinstance(state, dict):
        raise InputError(f"{path}: malformed checkpoint (no state_dict)")
    module = _rebuild(data.get("arch"), path)
    _resize(module, data.get("sizes", {}), state, path)
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{path}: the weights do not fit architecture {data['arch']!r} ({str(exc)[:300]})") from exc
    module.eval()
    module.edgeship_arch = data["arch"]
    return {**data, "module": module}


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
