"""``edgeship optimize --recipe``: teacher -> distill -> prune -> export -> quantize, each stage measured.

>>> result = run_recipe(load_recipe("recipes/fashion-mnist.yaml"), "results/fmnist")
>>> result.bundle, [r.stage for r in result.report.rows]
(PosixPath('results/fmnist/bundle'), ['teacher', 'student (distilled)', 'student (pruned)', 'student (INT8)'])
>>> fashion_mnist_demo("results/demo", quick=True)["goals"]

Each stage's model is exported and measured in ONNX Runtime on this host: parameters, FLOPs,
file size, accuracy on the whole test split, p50/p95 latency at batch 1. The rows go to a table,
``report.json`` and ``report.html``; the stages go to the final bundle's provenance.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from .. import __version__
from .._config import to_dict
from .._deps import require
from ..bundle import Preprocessing, Resize, Stage, StageName, now_iso
from .data import ArrayDataset, DataSpec, load_dataset
from .distill import DistillConfig, DistillResult, distill, train
from .measure import Measurement, measure_module, measure_onnx
from .recipe import MeasureSpec, ModelSpec, Recipe
from .report import Report


@dataclass
class PipelineResult:
    report: Report
    bundle: Path  # the final bundle (INT8 when the quantizer chose it, else FP32)
    files: dict[str, Path] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)  # per-stage summaries (histories, search, quantize)


def _preprocessing(data: ArrayDataset) -> Preprocessing:
    c, h, w = data.shape
    return Preprocessing(size=(h, w), resize=Resize.DIRECT, resize_to=None, scale=1 / 255, color="L" if c == 1 else "RGB",
                         mean=tuple(data.mean), std=tuple(data.std))


def _tool() -> str:
    torch = require("torch", "optimize")
    return f"edgeship {__version__}, torch {torch.__version__}"


def run_recipe(recipe: Recipe, out: Union[str, os.PathLike], *, resume: bool = False, progress: bool = True,
               console: Any = None) -> PipelineResult:
    """Run every stage ``recipe`` names, writing models, bundles and the report under ``out``."""
    torch = require("torch", "optimize", "the optimize pipeline")
    from ..bench.env import environment
    from ..util import console as make_console
    from .export import export_module
    from .zoo import load_model, save_checkpoint

    console = console or make_console(stderr=True)
    say: Callable[[str], None] = console.print if progress else (lambda line: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ms: MeasureSpec = recipe.measure
    torch.set_num_threads(ms.threads)
    t_start = time.perf_counter()

    train_set = load_dataset(recipe.data, "train")
    test_set = load_dataset(recipe.data, "test")
    shape, classes = train_set.shape, train_set.classes
    say(f"data: {train_set.name} {len(train_set)} training, {test_set.name} {len(test_set)} test samples, input {list(shape)}")
    report = Report(f"{recipe.name}: every stage measured", env=environment(ms.threads))
    stages: dict[str, Any] = {}
    provenance: list[Stage] = []
    ckpts = out / "checkpoints"
    common = dict(resume=resume, progress=progress, console=console)

    def measured(module: Any) -> Measurement:
        return measure_module(module, shape, test_set, ms.threads, ms.runs, ms.warmup)

    def fit(spec: ModelSpec, role: str) -> tuple[Any, DistillResult | None]:
        model = load_model(spec.model, len(classes), shape[0])
        result = None
        if spec.train is not None:
            say(f"[bold]{role}[/bold]: training {spec.model} on {len(train_set)} samples")
            result = train(model, train_set, spec.train, checkpoint_dir=ckpts / role, **common)
            stages[f"train-{role}"] = result.summary()
        return model, result

    teacher = None
    if recipe.teacher is not None:
        teacher, _ = fit(recipe.teacher, "teacher")
        save_checkpoint(teacher, out / "teacher.pt", arch=recipe.teacher.model, classes=classes)
        m = measured(teacher)
        report.add("teacher", m, str(out / "teacher.pt"))
        say(f"teacher: accuracy {m.accuracy:.2%}")

    student, trained = fit(recipe.student, "student")
    if recipe.distill is not None:
        say(f"[bold]distill[/bold]: {recipe.student.model} from {recipe.teacher.model}, T={recipe.distill.temperature}, alpha={recipe.distill.alpha}")
        result = distill(student, teacher, train_set, recipe.distill, checkpoint_dir=ckpts / "distill", **common)
        stages["distill"] = result.summary()
        label, history = "student (distilled)", result
    else:
        label, history = ("student (trained)" if trained else "student"), trained
    save_checkpoint(student, out / "student.pt", arch=recipe.student.model, classes=classes)
    m = measured(student)
    report.add(label, m, str(out / "student.pt"))
    student_row = m
    say(f"{label}: accuracy {m.accuracy:.2%}")
    if history is not None:
        provenance.append(Stage(StageName.DISTILL if recipe.distill else StageName.TRAIN, now_iso(), _tool(),
                                params={**to_dict(history.config), "model": recipe.student.model,
                                        "teacher": recipe.teacher.model if recipe.distill else None,
                                        "train_samples": len(train_set)},
                                metrics={**m.to_dict(), "loss": history.history[-1].loss}))

    final_label = "student (FP32)"
    if recipe.prune is not None:
        say(f"[bold]prune[/bold]: {recipe.prune.goal[0]} {recipe.prune.goal[1]:g}, channels rounded to {recipe.prune.round_to}")
        pr = prune_stage(student, recipe, train_set, test_set, ckpts, common)
        stages["prune"] = pr.summary()
        save_checkpoint(student, out / "pruned.pt", arch=recipe.student.model, classes=classes)
        final_label = "student (pruned" + (", fine-tuned)" if recipe.prune.finetune else ")")
        provenance.append(Stage(StageName.PRUNE, now_iso(), _tool(), params=to_dict(recipe.prune),
                                metrics={"ratio": pr.ratio, "params_before": pr.before.params,
                                         "params_after": pr.after.params, "flops_before": pr.before.flops,
                                         "flops_after": pr.after.flops, "layers": {k: list(v) for k, v in pr.layers.items()}}))

    spec = dataclasses.replace(recipe.export, input_size=recipe.export.input_size or tuple(shape[1:]), channels=shape[0])
    fp32_dir = out / ("bundle-fp32" if recipe.quantize is not None else "bundle")
    say(f"[bold]export[/bold]: ONNX opset {spec.opset} -> {fp32_dir}")
    exported = export_module(student, fp32_dir, spec, name=recipe.name, labels=classes,
                             preprocessing=_preprocessing(train_set), provenance=provenance,
                             source={"model": recipe.student.model}, overwrite=True)
    m = measure_onnx(exported.bundle.model_path, test_set, ms.threads, ms.runs, ms.warmup,
                     params=int(sum(p.numel() for p in student.parameters())))
    report.add(final_label, m, str(fp32_dir))
    fp32_row = m
    say(f"{final_label}: accuracy {m.accuracy:.2%}, {m.flops / max(student_row.flops or 1, 1):.2f} of the student's FLOPs")
    final, files = fp32_dir, {"teacher": out / "teacher.pt", "student": out / "student.pt", "bundle_fp32": fp32_dir}

    if recipe.quantize is not None:
        from .quantize import quantize

        say(f"[bold]quantize[/bold]: {recipe.quantize.mode.value}, calibration {recipe.quantize.calibration}")
        final = out / "bundle"
        q = quantize(exported.bundle, recipe.quantize, final, overwrite=True, log=lambda line: say(f"  {line}"))
        stages["quantize"] = q.to_dict()
        if q.chosen is not None:
            m = measure_onnx(q.bundle.model_path, test_set, ms.threads, ms.runs, ms.warmup, params=fp32_row.params)
            report.add(f"student ({q.choice})", m, str(final),
                       f"chosen: {q.chosen.speedup:.2f}x FP32 in the quantizer's timing" if q.chosen.speedup else "chosen")
        else:
            # The speed gate kept FP32: the INT8 candidates' files are gone, their measured figures stay.
            best = max((c for c in q.candidates if c.accuracy is not None or c.agreement is not None),
                       key=lambda c: c.speedup or 0, default=None)
            if best is not None:
                m = Measurement(fp32_row.params, fp32_row.macs, fp32_row.flops, None, best.accuracy,
                                q.data.get("evaluation_samples"), best.p50_ms, best.p95_ms, recipe.quantize.threads)
                report.add(f"student ({best.name}, not chosen)", m, "",
                           f"speed gate kept FP32 ({best.speedup}x); accuracy on {m.samples} samples")
            say(f"quantize kept FP32: {q.reason}")
        files["bundle"] = final

    report.extra = {"recipe": recipe.to_dict(), "stages": stages, "seconds": round(time.perf_counter() - t_start, 1),
                    "bundle": str(final)}
    files.update(report.write(out))
    return PipelineResult(report, final, files, stages)


def prune_stage(student: Any, recipe: Recipe, train_set: ArrayDataset, test_set: ArrayDataset, ckpts: Path,
                common: dict[str, Any]) -> Any:
    from .prune import prune

    return prune(student, recipe.prune, train=train_set, val=test_set, input_shape=train_set.shape, measure=False,
                 threads=recipe.measure.threads, checkpoint_dir=ckpts / "prune", **common)


# ---- the Fashion-MNIST demo -------------------------------------------------------------------------


def fashion_mnist_recipe(quick: bool = False) -> Recipe:
    """The demo recipe (``recipes/fashion-mnist.yaml`` holds the same, with ``quick=False``)."""
    from .export import ExportSpec
    from .prune import PruneConfig
    from .quantize import QuantizeConfig

    n, e = (6000, 1) if quick else (20000, 3)
    return Recipe(
        name="fashion-mnist-student",
        student=ModelSpec("fmnist-student"),
        data=DataSpec(source="fashion-mnist", train_limit=n, seed=0),
        teacher=ModelSpec("fmnist-teacher", DistillConfig(epochs=e, lr=2e-3, alpha=0.0)),
        distill=DistillConfig(epochs=e + 1, batch_size=64, lr=3e-3, temperature=4.0, alpha=0.7),
        prune=PruneConfig(target_flops=0.5, round_to=8, global_pruning=True,
                          finetune=DistillConfig(epochs=e, batch_size=64, lr=1e-3, temperature=4.0, alpha=0.7)),
        export=ExportSpec(opset=17, dynamic_batch=True),
        quantize=QuantizeConfig(calibration="fashion-mnist", calibration_samples=256, eval_samples=10000,
                                min_accuracy=0.99),
        measure=MeasureSpec(threads=2, runs=100 if quick else 300, warmup=20),
    )


DEMO_GOALS = {"prune_flops_reduction_min": 2.0, "prune_accuracy_drop_max_points": 1.5, "int8_accuracy_kept_min": 0.99}


def goals(report: Report) -> dict[str, Any]:
    """The issue's Fashion-MNIST goals, checked on the measured rows."""
    rows = {r.stage: r.measurement for r in report.rows}
    student = next((m for s, m in rows.items() if s.startswith("student (distilled")), None)
    pruned = next((m for s, m in rows.items() if s.startswith("student (pruned")), None)
    int8 = next((m for s, m in rows.items() if "int8" in s.lower()), None)
    out: dict[str, Any] = {"thresholds": DEMO_GOALS}
    if student and pruned and student.flops and pruned.flops:
        out["prune_flops_reduction"] = round(student.flops / pruned.flops, 3)
        out["prune_accuracy_drop_points"] = round((student.accuracy - pruned.accuracy) * 100, 3)
        out["prune_ok"] = (out["prune_flops_reduction"] >= DEMO_GOALS["prune_flops_reduction_min"]
                           and out["prune_accuracy_drop_points"] <= DEMO_GOALS["prune_accuracy_drop_max_points"])
    if pruned and int8 and int8.accuracy is not None and pruned.accuracy:
        out["int8_accuracy_kept"] = round(int8.accuracy / pruned.accuracy, 4)
        out["int8_ok"] = out["int8_accuracy_kept"] >= DEMO_GOALS["int8_accuracy_kept_min"]
        out["int8_speedup"] = round(pruned.p50_ms / int8.p50_ms, 3) if int8.p50_ms else None
    return out


def fashion_mnist_demo(out_dir: Union[str, os.PathLike], quick: bool = False, progress: bool = True,
                       console: Any = None) -> dict[str, Any]:
    """Teacher, distilled student, pruned student and its INT8 version on Fashion-MNIST, measured.

    Returns ``{"report": {...}, "goals": {...}, "bundle": path, "files": {...}, "seconds": s}``, all
    JSON-serialisable; ``Report.from_dict(result["report"]).table()`` is the rich table.
    """
    result = run_recipe(fashion_mnist_recipe(quick), out_dir, progress=progress, console=console)
    checked = goals(result.report)
    result.report.extra["goals"] = checked
    files = result.report.write(out_dir)
    return {"report": result.report.to_dict(), "goals": checked, "bundle": str(result.bundle),
            "files": {k: str(v) for k, v in {**result.files, **files}.items()},
            "seconds": result.report.extra.get("seconds")}
