"""Knowledge distillation: a student learns the teacher's softened outputs and the true labels.

>>> result = distill(student, teacher, train_set, DistillConfig(epochs=3, temperature=4, alpha=0.7),
...                  val=test_set, checkpoint_dir="ckpt/")
>>> result.history[-1].loss, result.history[-1].val_accuracy
(0.41, 0.884)
>>> distill(student, teacher, train_set, cfg, checkpoint_dir="ckpt/", resume=True)  # after a crash

loss = alpha * KL(softmax(t / T) || softmax(s / T)) * T^2 + (1 - alpha) * CE(s, y)

The T^2 factor keeps the soft term's gradients at the scale of the hard term's whatever T is
(Hinton et al., 2015). With ``teacher=None`` only the hard term remains: plain training, which is
how the pipeline trains its teacher.

Resuming gives the same weights as an uninterrupted run: each epoch's shuffle and dropout are
seeded from (seed, epoch), the learning rate is a function of the step, and the checkpoint
holds the model, the optimizer state and the history. Checkpoints are written atomically.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from .._config import to_dict
from .._deps import require
from ..errors import InputError
from ..util import atomic_file
from .config import DistillConfig  # noqa: F401 - re-exported: the stage's config
from .data import ArrayDataset

CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    loss: float  # mean training loss over the epoch
    train_accuracy: float  # on the training batches as they were seen (model in train mode)
    val_accuracy: Union[float, None]
    lr: float  # at the end of the epoch
    seconds: float


@dataclass
class DistillResult:
    model: Any  # the trained student (the same object that was passed in)
    history: list[EpochStats]
    config: DistillConfig
    resumed_from: Union[int, None] = None  # epochs already done when a checkpoint was resumed
    seconds: float = 0.0
    checkpoint: Union[str, None] = None
    teacher: bool = True

    @property
    def val_accuracy(self) -> Union[float, None]:
        return self.history[-1].val_accuracy if self.history else None

    def summary(self) -> dict[str, Any]:
        return {"config": to_dict(self.config), "history": [dataclasses.asdict(h) for h in self.history],
                "resumed_from": self.resumed_from, "seconds": round(self.seconds, 2), "with_teacher": self.teacher}


def distillation_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float, alpha: float) -> Any:
    """alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * CE(student, labels)."""
    torch = require("torch", "optimize")
    F = torch.nn.functional
    hard = F.cross_entropy(student_logits, labels)
    if teacher_logits is None or alpha == 0.0:
        return hard
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    return alpha * soft + (1.0 - alpha) * hard


def predict_logits(module: Any, data: ArrayDataset, batch_size: int = 512) -> np.ndarray:
    """The module's outputs on every sample, in eval mode, as float32 numpy."""
    torch = require("torch", "optimize")
    was_training = module.training
    module.eval()
    out = []
    with torch.inference_mode():
        for x, _ in data.batches(batch_size):
            out.append(module(torch.from_numpy(x)).float().numpy())
    module.train(was_training)
    return np.concatenate(out)


def evaluate(module: Any, data: ArrayDataset, batch_size: int = 512) -> float:
    """Top-1 accuracy of a torch module on ``data`` (0..1)."""
    return float((predict_logits(module, data, batch_size).argmax(1) == data.labels).mean())


def _lr_at(config: DistillConfig, step: int, total: int) -> float:
    if config.schedule == "constant":
        return config.lr
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _save(path: Path, state: dict[str, Any]) -> None:
    torch = require("torch", "optimize")
    with atomic_file(path) as f:
        torch.save(state, f)


def _load(path: Path, config: DistillConfig, student: Any, optimizer: Any) -> tuple[int, list[EpochStats]]:
    torch = require("torch", "optimize")
    try:
        # Tensors and plain data only: a checkpoint folder is a file anyone with write access to it
        # could replace, and a pickled object runs code as it loads.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: checkpoint unreadable or holding more than weights ({str(exc)[:200]}); "
                         "delete it or run without --resume") from exc
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a distillation checkpoint; delete it or run without --resume")
    saved = state.get("config", {})
    now = to_dict(config)
    changed = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in now.items() if k != "threads" and saved.get(k) != v]
    if changed:
        raise InputError(
            f"{path}: the checkpoint was made with {', '.join(changed)}; resume with the same settings "
            "or start again without --resume"
        )
    try:
        student.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{path}: the checkpoint does not fit this student ({str(exc)[:200]})") from exc
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]), [EpochStats(**h) for h in state["history"]]


def distill(
    student: Any,
    teacher: Any,
    data: ArrayDataset,
    config: DistillConfig = DistillConfig(),
    *,
    val: ArrayDataset | None = None,
    checkpoint_dir: Union[str, os.PathLike, None] = None,
    resume: bool = False,
    progress: bool = True,
    console: Any = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> DistillResult:
    """Train ``student`` on ``data`` against ``teacher``'s soft targets (or labels only when None)."""
    torch = require("torch", "optimize", "distillation")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if len(data) == 0:
        raise InputError(f"{data.name}: no training samples")
    t_start = time.perf_counter()
    # Without augmentation the teacher's logits are fixed per sample: compute them once.
    soft = torch.from_numpy(predict_logits(teacher, data)) if teacher is not None else None

    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    start, history, resumed_from = 0, [], None
    if resume:
        if ckpt is None:
            raise InputError("resume needs a checkpoint folder (--checkpoint-dir)")
        if ckpt.is_file():
            start, history = _load(ckpt, config, student, optimizer)
            resumed_from = start

    n = len(data)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    bar = _progress(console) if progress else None
    try:
        if bar is not None:
            bar.start()
            if resumed_from:
                bar.console.print(f"resumed from {ckpt} after epoch {resumed_from}")
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            torch.manual_seed(config.seed * 7919 + epoch)  # dropout
            order = torch.randperm(n, generator=gen).numpy()
            student.train()
            loss_sum, correct, seen = 0.0, 0, 0
            task = bar.add_task(f"epoch {epoch + 1}/{config.epochs}", total=steps_per_epoch, loss=float("nan"), acc=0.0) if bar else None
            lr = config.lr
            for i in range(steps_per_epoch):
                idx = np.sort(order[i * config.batch_size:(i + 1) * config.batch_size])
                x, y = data.batch(idx)
                x, y = torch.from_numpy(x), torch.from_numpy(y)
                lr = _lr_at(config, epoch * steps_per_epoch + i, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                logits = student(x)
                loss = distillation_loss(logits, soft[idx] if soft is not None else None, y,
                                         config.temperature, config.alpha)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(y)
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += len(y)
                if bar is not None:
                    bar.update(task, advance=1, loss=loss_sum / seen, acc=correct / seen)
            val_acc = evaluate(student, val) if val is not None else None
            stats = EpochStats(epoch + 1, loss_sum / seen, correct / seen, val_acc, lr, time.perf_counter() - t0)
            history.append(stats)
            if bar is not None:
                bar.remove_task(task)
                tail = f"  val {val_acc:.2%}" if val_acc is not None else ""
                bar.console.print(f"epoch {stats.epoch}/{config.epochs}  loss {stats.loss:.4f}  "
                                  f"acc {stats.train_accuracy:.2%}{tail}  {stats.seconds:.1f}s")
            if ckpt is not None:
                _save(ckpt, {"epoch": epoch + 1, "model": student.state_dict(), "optimizer": optimizer.state_dict(),
                             "history": [dataclasses.asdict(h) for h in history], "config": to_dict(config)})
            if on_epoch is not None:  # after the checkpoint: a callback that raises simulates a crash
                on_epoch(stats)
    finally:
        if bar is not None:
            bar.stop()
    student.eval()
    return DistillResult(student, history, config, resumed_from, time.perf_counter() - t_start,
                         str(ckpt) if ckpt else None, teacher is not None)


def train(model: Any, data: ArrayDataset, config: DistillConfig = DistillConfig(), **kwargs: Any) -> DistillResult:
    """Plain supervised training (hard labels only): :func:`distill` without a teacher."""
    return distill(model, None, data, config, **kwargs)


def _progress(console: Any = None) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..util import console as make_console

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}"), TimeElapsedColumn(),
        console=console or make_console(stderr=True), transient=False,
    )
