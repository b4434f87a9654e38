"""The host-side stages' settings: export, distill and prune, each a frozen dataclass.

>>> ExportSpec(opset=13, input_size=(240, 320)).dynamic_batch
True
>>> PruneConfig(target_flops=0.5, finetune=DistillConfig(epochs=2)).goal
('flops', 0.5)

A recipe's ``export:``, ``distill:`` and ``prune:`` sections map onto these one to one, and the verbs
build their flags from the fields marked with ``cli(...)`` (``commands/args.add_config_flags``), so a
default and its help live here once. This module is light on purpose (no numpy, no torch):
``edgeship --help`` imports it. The stages re-export their config (``edgeship.optimize.prune.PruneConfig``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal, Union

from .._config import cli, fraction, non_negative_float, positive_float, positive_int
from ..errors import InputError


def size_hw(text: str) -> tuple[int, int]:
    """argparse type for ``--input-size 224`` or ``240x320`` (height x width)."""
    try:
        parts = [int(v) for v in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW like 224 or 240x320, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW of at least 8, got {text!r}")
    return parts[0], parts[1]


def shape_chw(text: str) -> tuple[int, int, int]:
    """argparse type for ``--input-shape 3,224,224``."""
    try:
        parts = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W like 3,224,224, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W like 3,224,224, got {text!r}")
    return parts  # type: ignore[return-value]


@dataclass(frozen=True)
class ExportSpec:
    """How to export. ``opset`` 17 by default; 13 for older ONNX Runtime builds on ARM boards."""

    opset: int = field(default=17, metadata=cli("ONNX opset (13 for older ONNX Runtime builds on ARM boards)",
                                                 type=positive_int))
    input_size: Union[tuple[int, int], None] = field(default=None, metadata=cli(
        "input size, SIZE or HxW (default: the model's)", type=size_hw, metavar="HxW"))
    # The graph's batch, not an inference batch (bench --batch, serve --max-batch): hence its own flag name.
    batch: int = field(default=1, metadata=cli(
        "batch of the validation inputs, and of the graph itself with --static-batch", flag="--graph-batch",
        type=positive_int, metavar="N"))
    # A dynamic batch axis by default: `bench --batch 1,8` and `serve --max-batch` work out of the box;
    # a static batch (ExportSpec(dynamic_batch=False), `--static-batch`) only for engines that need one.
    dynamic_batch: bool = True
    simplify: bool = field(default=True, metadata=cli("simplify the graph with onnxslim (folds constants, fuses)"))
    atol: float = field(default=1e-4, metadata=cli("absolute tolerance of ONNX Runtime vs PyTorch",
                                                   type=non_negative_float))
    rtol: float = field(default=1e-3, metadata=cli("relative tolerance of ONNX Runtime vs PyTorch",
                                                   type=non_negative_float))
    channels: int = 3

    def __post_init__(self) -> None:
        if not 7 <= self.opset <= 23:
            raise InputError(f"opset: expected 7 to 23, got {self.opset}")
        if self.batch < 1:
            raise InputError(f"batch: must be at least 1, got {self.batch}")
        if self.input_size is not None and min(self.input_size) < 8:
            raise InputError(f"input_size: at least 8x8, got {list(self.input_size)}")
        if self.atol < 0 or self.rtol < 0:
            raise InputError("atol/rtol: must not be negative")


@dataclass(frozen=True)
class DistillConfig:
    """Training settings for distillation (and for fine-tuning after pruning)."""

    epochs: int = field(default=5, metadata=cli("training epochs", type=positive_int))
    # The training batch, not an inference batch (bench --batch): hence its own flag name.
    batch_size: int = field(default=128, metadata=cli("training batch size", flag="--train-batch", type=positive_int,
                                                      metavar="N"))
    lr: float = field(default=2e-3, metadata=cli("peak learning rate, AdamW with cosine decay", type=positive_float))
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    temperature: float = field(default=4.0, metadata=cli("softening temperature T", type=positive_float))
    # weight of the teacher's soft targets; 1 - alpha goes to the hard labels
    alpha: float = field(default=0.7, metadata=cli("weight of the teacher's soft targets (1 - alpha: the labels')",
                                                   type=fraction))
    seed: int = field(default=0, metadata=cli("random seed for data order and initialisation", type=int))
    threads: Union[int, None] = field(default=None, metadata=cli(
        "torch intra-op threads (default: torch's own setting)", type=positive_int))

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"epochs: must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"batch_size: must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise InputError(f"lr: must be positive, got {self.lr}")
        if self.temperature <= 0:
            raise InputError(f"temperature: must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha: must be within [0, 1], got {self.alpha}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads: must be at least 1, got {self.threads}")


PRUNE_GOALS = ("ratio", "target_flops", "target_params")  # at most one; none: target_flops 0.5


@dataclass(frozen=True)
class PruneConfig:
    """How much to prune. Set one of ``ratio``, ``target_flops``, ``target_params``; none: target_flops=0.5."""

    ratio: Union[float, None] = field(default=None, metadata=cli(
        "fraction of channels to remove in each prunable layer", type=fraction))
    target_flops: Union[float, None] = field(default=None, metadata=cli(
        "keep at most this fraction of the FLOPs (0.5 when no goal is given: 2x fewer)", type=fraction))
    target_params: Union[float, None] = field(default=None, metadata=cli(
        "keep at most this fraction of the parameters", type=fraction))
    round_to: int = field(default=8, metadata=cli("kept channel counts are multiples of this", type=positive_int))
    importance: Literal["l1", "l2"] = "l2"  # group weight magnitude norm
    global_pruning: bool = field(default=False, metadata=cli(
        "rank channels across layers instead of the same ratio per layer"))
    max_layer_ratio: float = 0.9  # never remove more than this fraction of one layer's channels
    ignore: list[str] = field(default_factory=list, metadata=cli(
        "module to keep whole, beside the classifier (repeatable)", metavar="NAME"))
    input_shape: Union[tuple[int, int, int], None] = field(default=None, metadata=cli(
        "input shape (default: the data's, else 3,224,224)", type=shape_chw, metavar="C,H,W"))
    search_steps: int = 8  # bisection steps for a FLOPs/params budget
    finetune: Union[DistillConfig, None] = None  # distillation from the unpruned model after pruning

    def __post_init__(self) -> None:
        chosen = [n for n in PRUNE_GOALS if getattr(self, n) is not None]
        if len(chosen) > 1:
            raise InputError(f"set only one of ratio, target_flops, target_params (got {', '.join(chosen)})")
        if self.ratio is not None and not 0.0 <= self.ratio < 1.0:
            raise InputError(f"ratio: must be within [0, 1), got {self.ratio}")
        for name in ("target_flops", "target_params"):
            v = getattr(self, name)
            if v is not None and not 0.0 < v <= 1.0:
                raise InputError(f"{name}: the fraction to keep, within (0, 1], got {v}")
        if self.round_to < 1:
            raise InputError(f"round_to: must be at least 1, got {self.round_to}")
        if not 0.0 < self.max_layer_ratio < 1.0:
            raise InputError(f"max_layer_ratio: must be within (0, 1), got {self.max_layer_ratio}")
        if self.search_steps < 1:
            raise InputError(f"search_steps: must be at least 1, got {self.search_steps}")

    @property
    def goal(self) -> tuple[str, float]:
        """("ratio" | "flops" | "params", value)."""
        if self.ratio is not None:
            return "ratio", self.ratio
        if self.target_params is not None:
            return "params", self.target_params
        return "flops", self.target_flops if self.target_flops is not None else 0.5
