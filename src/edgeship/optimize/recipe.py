"""The optimization recipe: one YAML file, one section per stage, each section one config dataclass.

>>> recipe = load_recipe("recipes/fashion-mnist.yaml")
>>> recipe.prune
PruneConfig(ratio=None, target_flops=0.5, ..., finetune=DistillConfig(epochs=3, ...))
>>> load_recipe_text("prune: {ratio: half}")
Traceback (most recent call last):
edgeship.errors.SchemaError: recipe.prune.ratio: expected a number, got 'half' (str)

Sections and the dataclass each maps onto:

    name: str                 the bundle's name
    data:      DataSpec       edgeship.optimize.data
    teacher:   ModelSpec      {model: zoo name | file.pt | package.module:function, train: DistillConfig}
    student:   ModelSpec
    distill:   DistillConfig  edgeship.optimize.distill      (omit: no distillation)
    prune:     PruneConfig    edgeship.optimize.prune        (omit: no pruning)
    export:    ExportSpec     edgeship.optimize.export
    quantize:  QuantizeConfig edgeship.optimize.quantize     (omit: FP32 bundle)
    measure:   MeasureSpec    threads and timing runs for the report

Validation happens here, before anything trains: an unknown key or a wrong type names its path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .._config import from_dict, to_dict
from .._deps import require
from ..errors import InputError, SchemaError
from .data import DataSpec
from .distill import DistillConfig
from .export import ExportSpec
from .prune import PruneConfig
from .quantize import QuantizeConfig


@dataclass(frozen=True)
class ModelSpec:
    """A model the recipe starts from, and whether to train it first (hard labels only)."""

    model: str  # a zoo name (fmnist-teacher, fmnist-student), an edgeship .pt file, or package.module:function
    train: Union[DistillConfig, None] = None

    def __post_init__(self) -> None:
        if not self.model:
            raise InputError("model: must name a zoo architecture, a .pt file or package.module:function")


@dataclass(frozen=True)
class MeasureSpec:
    """How each stage's row is measured."""

    threads: int = 2  # ONNX Runtime intra-op threads for latency and accuracy
    runs: int = 200  # timed batch-1 runs per stage (after warm-up)
    warmup: int = 20

    def __post_init__(self) -> None:
        for name in ("threads", "runs"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise InputError(f"warmup: must be 0 or more, got {self.warmup}")


@dataclass(frozen=True)
class Recipe:
    student: ModelSpec
    name: str = "model"
    data: DataSpec = field(default_factory=DataSpec)
    teacher: Union[ModelSpec, None] = None
    distill: Union[DistillConfig, None] = None
    prune: Union[PruneConfig, None] = None
    export: ExportSpec = field(default_factory=ExportSpec)
    quantize: Union[QuantizeConfig, None] = None
    measure: MeasureSpec = field(default_factory=MeasureSpec)

    def __post_init__(self) -> None:
        if self.distill is not None and self.teacher is None:
            raise InputError("distill: needs a teacher section (the model to distill from)")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from a mapping; errors name the key path (``recipe.prune.ratio: ...``)."""
    return from_dict(Recipe, data, where=source, error=SchemaError)


def load_recipe_text(text: str, source: str = "recipe") -> Recipe:
    yaml = require("yaml", "optimize", "reading recipes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchemaError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    return parse_recipe(data if data is not None else {}, source)


def load_recipe(path: Union[str, os.PathLike]) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from exc
    return load_recipe_text(text, "recipe")


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML, every default written out (what ``--print-recipe`` shows)."""
    yaml = require("yaml", "optimize", "writing recipes")
    data = recipe.to_dict()
    order = ["name", "data", "teacher", "student", "distill", "prune", "export", "quantize", "measure"]
    return yaml.safe_dump({k: data[k] for k in sorted(data, key=order.index)}, sort_keys=False)
