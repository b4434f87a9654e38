"""Structured pruning: remove whole channels, so the model really gets smaller and faster.

>>> result = prune(model, PruneConfig(target_flops=0.5), example_input=(3, 224, 224))
>>> result.before.flops / result.after.flops, result.ratio
(2.04, 0.297)
>>> prune(student, PruneConfig(ratio=0.3, finetune=DistillConfig(epochs=2)), train=train_set, val=test_set)

torch-pruning's dependency graph finds every layer coupled to a channel (the conv producing it,
its BatchNorm, the convs and linears consuming it, residual additions) and removes the channel
from all of them at once; importance is the group's weight magnitude. Kept channel counts are
multiples of ``round_to`` (8 by default) because convolution kernels vectorise over channel
blocks: 61 channels run no faster than 64. The classifier's outputs are never touched.

A FLOPs or parameter budget is reached by bisecting the channel ratio on copies of the model
until the smallest ratio that meets the budget is found, then pruning once with it. With
``finetune`` set, the pruned model is trained with distillation from the unpruned one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Union

from .._config import to_dict
from .._deps import require
from ..errors import InputError
from .config import PruneConfig  # noqa: F401 - re-exported: the stage's config
from .data import ArrayDataset
from .distill import DistillResult, distill
from .measure import Measurement, measure_module, torch_cost


@dataclass
class PruneResult:
    model: Any  # the pruned module (the one passed in, changed in place)
    config: PruneConfig
    ratio: float  # the channel ratio applied
    before: Measurement
    after: Measurement  # after fine-tuning when there was any
    layers: dict[str, tuple[int, int]]  # module name -> (channels before, after), for layers that changed
    search: list[tuple[float, int]] = field(default_factory=list)  # (ratio tried, MACs or params it gave)
    finetune: Union[DistillResult, None] = None
    after_prune: Union[Measurement, None] = None  # before fine-tuning (accuracy only)

    @property
    def flops_reduction(self) -> float:
        return (self.before.flops or 0) / max(self.after.flops or 1, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "config": to_dict(self.config), "ratio": self.ratio, "before": self.before.to_dict(),
            "after": self.after.to_dict(), "flops_reduction": round(self.flops_reduction, 3),
            "layers": {k: list(v) for k, v in self.layers.items()}, "search": [list(s) for s in self.search],
            "accuracy_after_prune_before_finetune": self.after_prune.accuracy if self.after_prune else None,
            "finetune": self.finetune.summary() if self.finetune else None,
        }


def _width(module: Any) -> Union[int, None]:
    for attr in ("out_channels", "out_features", "num_features"):
        if hasattr(module, attr):
            return int(getattr(module, attr))
    return None


def _widths(model: Any) -> dict[str, int]:
    nn = require("torch.nn", "optimize")
    return {n: _width(m) for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.Conv1d, nn.Conv3d)) and _width(m) is not None}


def classifier_layers(model: Any, ignore: list[str] = ()) -> list[Any]:
    """The modules whose outputs are kept: the last Linear (else the last Conv), plus ``ignore`` names."""
    nn = require("torch.nn", "optimize")
    modules = dict(model.named_modules())
    missing = [n for n in ignore if n not in modules]
    if missing:
        raise InputError(f"prune.ignore: no module named {missing[0]!r} (e.g. {', '.join(list(modules)[1:6])})")
    kept = [modules[n] for n in ignore]
    linears = [m for m in modules.values() if isinstance(m, nn.Linear)]
    convs = [m for m in modules.values() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    head = linears[-1] if linears else (convs[-1] if convs else None)
    if head is not None and head not in kept:
        kept.append(head)
    return kept


def _apply(model: Any, example: Any, ratio: float, config: PruneConfig) -> Any:
    """Prune ``model`` in place by ``ratio``."""
    tp = require("torch_pruning", "optimize", "structured pruning")
    if ratio <= 0.0:
        return model
    importance = tp.importance.GroupMagnitudeImportance(p=1 if config.importance == "l1" else 2)
    pruner = tp.pruner.MetaPruner(
        model, example, importance=importance, pruning_ratio=ratio, global_pruning=config.global_pruning,
        max_pruning_ratio=config.max_layer_ratio, ignored_layers=classifier_layers(model, config.ignore),
        round_to=config.round_to,
    )
    pruner.step()
    return model


def _cost(model: Any, shape: tuple[int, ...], what: str) -> int:
    params, macs = torch_cost(model, shape)
    return macs if what == "flops" else params


def find_ratio(model: Any, config: PruneConfig, input_shape: tuple[int, int, int]) -> tuple[float, list[tuple[float, int]]]:
    """The channel ratio to apply: ``config.ratio``, or the smallest one that meets the budget."""
    torch = require("torch", "optimize")
    what, value = config.goal
    if what == "ratio":
        return value, []
    budget = value * _cost(model, input_shape, what)
    example = torch.zeros(1, *input_shape)

    def cost_at(ratio: float) -> int:
        cost = _cost(_apply(copy.deepcopy(model), example, ratio, config), input_shape, what)
        tried.append((round(ratio, 5), cost))
        return cost

    # Scan upwards first, then bisect: the cost is not monotonic at high ratios, where rounding a
    # small layer down to zero channels makes torch-pruning leave that layer whole.
    tried: list[tuple[float, int]] = []
    lo, hi, step = 0.0, None, 0.1
    r = step
    while r <= config.max_layer_ratio + 1e-9:
        if cost_at(r) <= budget:
            hi = r
            break
        lo, r = r, r + step
    if hi is None:
        best = min(c for _, c in tried) / (budget / value)
        raise InputError(
            f"prune: the budget ({what} <= {value:g} of the original) is not reachable with at most "
            f"{config.max_layer_ratio:g} of each layer's channels removed (best: {best:.3f} of the original); "
            "raise max_layer_ratio, lower round_to, or relax the budget"
        )
    # Per-layer pruning: a ratio step below round_to / widest layer / 2 cannot change any layer's
    # rounded width. Global ranking moves channels between layers at any step: search to the end.
    resolution = 0.0 if config.global_pruning else config.round_to / max(max(_widths(model).values(), default=1), 1) / 2
    for _ in range(config.search_steps):
        if hi - lo < resolution:
            break
        mid = (lo + hi) / 2
        if cost_at(mid) <= budget:
            hi = mid
        else:
            lo = mid
    return hi, tried


def prune(
    model: Any,
    config: PruneConfig = PruneConfig(),
    *,
    train: ArrayDataset | None = None,
    val: ArrayDataset | None = None,
    input_shape: tuple[int, int, int] | None = None,
    measure: bool = True,
    threads: int = 2,
    checkpoint_dir: Any = None,
    resume: bool = False,
    progress: bool = True,
    console: Any = None,
) -> PruneResult:
    """Prune ``model`` in place and measure it before and after (see the module docstring)."""
    torch = require("torch", "optimize", "structured pruning")
    shape = tuple(input_shape or config.input_shape or (val.shape if val is not None else train.shape if train is not None else (3, 224, 224)))
    if config.finetune is not None and train is None:
        raise InputError("prune.finetune needs training data (--data)")
    model.eval()
    unpruned = copy.deepcopy(model) if config.finetune is not None else None
    before = measure_module(model, shape, val, threads) if measure else _counts(model, shape)
    widths = _widths(model)
    ratio, search = find_ratio(model, config, shape)
    _apply(model, torch.zeros(1, *shape), ratio, config)
    model.eval()
    layers = {n: (widths[n], w) for n, w in _widths(model).items() if n in widths and widths[n] != w}
    after_prune, tuned = None, None
    if config.finetune is not None:
        if val is not None:
            from .distill import evaluate

            after_prune = Measurement(accuracy=evaluate(model, val), samples=len(val))
        tuned = distill(model, unpruned, train, config.finetune, val=None, checkpoint_dir=checkpoint_dir,
                        resume=resume, progress=progress, console=console)
    after = measure_module(model, shape, val, threads) if measure else _counts(model, shape)
    return PruneResult(model, config, ratio, before, after, layers, search, tuned, after_prune)


def _counts(model: Any, shape: tuple[int, ...]) -> Measurement:
    params, macs = torch_cost(model, shape)
    return Measurement(params=params, macs=macs, flops=2 * macs)


def prunable_report(result: PruneResult) -> list[dict[str, Any]]:
    """Per-layer rows for printing: name, channels before, after."""
    return [{"layer": n, "before": b, "after": a} for n, (b, a) in result.layers.items()]


