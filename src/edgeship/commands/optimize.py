"""``edgeship distill``, ``edgeship prune`` and ``edgeship optimize --recipe RECIPE.yaml``."""

from __future__ import annotations

import argparse

from ..optimize.config import PRUNE_GOALS, DistillConfig, PruneConfig
from .args import add_config_flags, add_json_flag, lazy, positive_int, renamed_flag


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="'fashion-mnist' (Debian package dataset-fashion-mnist) or a folder with train/ and test/ class subfolders")
    p.add_argument("--train-limit", type=positive_int, default=None, metavar="N", help="train on a seeded subset of N samples")
    p.add_argument("--test-limit", type=positive_int, default=None, metavar="N", help="evaluate on N test samples (default: all)")
    p.add_argument("--image-size", type=int, default=None, metavar="N", help="image folders: resize to NxN (default 64)")


def _train_args(p: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    add_config_flags(p, DistillConfig, exclude=exclude)
    renamed_flag(p, "--batch", "--train-batch", "the training batch; bench --batch is the inference batch")


def register(sub) -> None:
    d = sub.add_parser(
        "distill", help="train a small student on a teacher's soft targets (knowledge distillation)",
        description=(
            "Distill TEACHER into STUDENT: loss = alpha * KL(teacher/T || student/T) * T^2 + (1 - alpha) * CE(labels). "
            "Models: a zoo name (fmnist-teacher, fmnist-student), an edgeship .pt file, or package.module:function. "
            "Without --teacher the student is trained on the labels alone. Checkpoints every epoch; --resume continues."
        ),
    )
    d.add_argument("--student", required=True, metavar="MODEL")
    d.add_argument("--teacher", default=None, metavar="MODEL", help="a trained teacher (.pt); omit to train on labels only")
    _data_args(d)
    _train_args(d)
    d.add_argument("-o", "--out", required=True, metavar="DIR", help="writes DIR/model.pt, DIR/distill.json, DIR/checkpoints/")
    d.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints/last.pt")
    add_json_flag(d, "the result")
    d.set_defaults(run=lazy("edgeship.commands.optimize:run_distill"))

    p = sub.add_parser(
        "prune", help="remove channels (structured pruning) and measure the model before and after",
        description=(
            "Prune MODEL by removing whole channels with torch-pruning's dependency graph; the classifier keeps "
            "its outputs and kept channel counts are multiples of --round-to. Give --ratio, or a budget with "
            "--target-flops / --target-params (the fraction to keep). With --data and --finetune-epochs the pruned "
            "model is fine-tuned with distillation from the unpruned one. Params, FLOPs, ONNX file size and "
            "ONNX Runtime latency are measured before and after."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="zoo name, edgeship .pt file, torchvision name, or package.module:function")
    add_config_flags(p.add_mutually_exclusive_group(), PruneConfig, only=PRUNE_GOALS)
    add_config_flags(p, PruneConfig, exclude=PRUNE_GOALS)
    _data_args(p)
    p.add_argument("--finetune-epochs", type=int, default=0, metavar="N", help="fine-tune N epochs with distillation (needs --data)")
    _train_args(p, exclude=("epochs", "threads"))  # --finetune-epochs instead; --threads below serves both
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="writes DIR/model.pt and DIR/prune.json")
    p.add_argument("--export", action="store_true", help="also export the pruned model as a bundle in DIR/bundle")
    p.add_argument("--threads", type=positive_int, default=2, help="threads for torch and ONNX Runtime (default 2)")
    add_json_flag(p, "the result")
    p.set_defaults(run=lazy("edgeship.commands.optimize:run_prune"))

    o = sub.add_parser(
        "optimize", help="run a recipe: distill -> prune -> export -> quantize, every stage measured",
        description=(
            "Run RECIPE.yaml (sections: name, data, teacher, student, distill, prune, export, quantize, measure; "
            "each maps onto one config class). Writes the bundle, report.json and report.html under --out."
        ),
    )
    o.add_argument("--recipe", required=True, metavar="RECIPE.yaml")
    o.add_argument("-o", "--out", default=None, metavar="DIR", help="output folder (default: results/<recipe name>)")
    o.add_argument("--resume", action="store_true", help="continue training stages from their checkpoints")
    o.add_argument("--check", action="store_true", help="validate the recipe, print it with every default, and stop")
    add_json_flag(o, "the report")
    o.set_defaults(run=lazy("edgeship.commands.optimize:run_optimize"))


def _data_spec(args):
    from ..optimize.data import DataSpec

    return DataSpec(source=args.data or "fashion-mnist", train_limit=args.train_limit, test_limit=args.test_limit,
                    image_size=(args.image_size,) * 2 if args.image_size else None,
                    seed=args.seed if args.seed is not None else DistillConfig.seed)


def _model(ref: str, classes: int, channels: int):
    from ..errors import ModelNotFoundError
    from ..optimize.zoo import load_model

    try:
        return load_model(ref, classes, channels)
    except ModelNotFoundError:
        if ":" in ref or ref.endswith((".pt", ".pth")):
            raise
        from ..optimize.models import resolve_model  # a torchvision architecture name

        return resolve_model(ref).module


def run_distill(args) -> int:
    from pathlib import Path

    from ..optimize.data import load_dataset
    from ..optimize.distill import distill
    from ..optimize.zoo import save_checkpoint
    from ..util import console as make_console
    from ..util import write_json
    from .args import config_from_args, emit_json, json_to_stdout

    console = make_console(stderr=json_to_stdout(args))
    config = config_from_args(DistillConfig, args)  # before the data loads: a bad flag fails at once
    spec = _data_spec(args)
    train_set, test_set = load_dataset(spec, "train"), load_dataset(spec, "test")
    student = _model(args.student, len(train_set.classes), train_set.shape[0])
    teacher = _model(args.teacher, len(train_set.classes), train_set.shape[0]) if args.teacher else None
    if teacher is None:
        console.print("no --teacher: training the student on the labels only", style="yellow")
    out = Path(args.out)
    result = distill(student, teacher, train_set, config, val=test_set, checkpoint_dir=out / "checkpoints",
                     resume=args.resume, console=make_console(stderr=True))
    save_checkpoint(student, out / "model.pt", arch=args.student, classes=train_set.classes,
                    accuracy=result.val_accuracy)
    summary = {**result.summary(), "model": str(out / "model.pt"), "test_accuracy": result.val_accuracy,
               "test_samples": len(test_set)}
    write_json(out / "distill.json", summary)
    console.print(f"[green]saved[/green] {out / 'model.pt'}: test accuracy {result.val_accuracy:.2%} "
                  f"on {len(test_set)} samples", highlight=False)
    emit_json(args.json, summary, say=console.print)
    return 0


def run_prune(args) -> int:
    from pathlib import Path

    from rich.table import Table

    from ..errors import InputError
    from ..optimize.data import load_dataset
    from ..optimize.prune import prune
    from ..optimize.report import human
    from ..optimize.zoo import save_checkpoint
    from ..util import console as make_console
    from ..util import write_json
    from .args import config_from_args, emit_json, json_to_stdout

    finetune = None
    if args.finetune_epochs:
        finetune = config_from_args(DistillConfig, args, exclude=("epochs", "threads"), epochs=args.finetune_epochs,
                                    threads=args.threads)
    config = config_from_args(PruneConfig, args, finetune=finetune)  # before the data loads: bad flags fail at once
    require_torch_threads(args.threads)
    console = make_console(stderr=json_to_stdout(args))
    train_set = test_set = None
    if args.data:
        spec = _data_spec(args)
        train_set, test_set = load_dataset(spec, "train"), load_dataset(spec, "test")
    if args.finetune_epochs and train_set is None:
        raise InputError("--finetune-epochs needs --data")
    classes = len(train_set.classes) if train_set is not None else 10
    channels = train_set.shape[0] if train_set is not None else (args.input_shape or (3,))[0]
    model = _model(args.model, classes, channels)
    out = Path(args.out)
    with console.status(f"pruning {args.model} ..."):
        result = prune(model, config, train=train_set, val=test_set, threads=args.threads,
                       checkpoint_dir=out / "checkpoints", console=make_console(stderr=True))
    save_checkpoint(model, out / "model.pt", arch=args.model)
    summary = {**result.summary(), "model": str(out / "model.pt")}
    if args.export:
        from ..optimize.export import ExportSpec, export_module

        c, h, w = result.config.input_shape or (test_set.shape if test_set is not None else (3, 224, 224))
        exported = export_module(model, out / "bundle", ExportSpec(input_size=(h, w), channels=c, dynamic_batch=True),
                                 name=Path(args.model).stem, labels=test_set.classes if test_set is not None else None,
                                 overwrite=True)
        summary["bundle"] = str(exported.bundle.root)
    write_json(out / "prune.json", summary)
    table = Table(title=f"{args.model}: pruned by ratio {result.ratio:.3f} (measured)")
    for col in ("", "params", "FLOPs", "ONNX size", "accuracy", "p50 ms", "p95 ms"):
        table.add_column(col, justify="left" if not col else "right")
    for name, m in (("before", result.before), ("after", result.after)):
        table.add_row(name, human(m.params), human(m.flops), human(m.file_bytes, "B"),
                      f"{m.accuracy:.2%}" if m.accuracy is not None else "-",
                      f"{m.p50_ms:.3f}" if m.p50_ms else "-", f"{m.p95_ms:.3f}" if m.p95_ms else "-")
    console.print(table)
    console.print(f"FLOPs {result.flops_reduction:.2f}x fewer; {len(result.layers)} layers narrowed; saved {out / 'model.pt'}",
                  highlight=False)
    emit_json(args.json, summary, say=console.print)
    return 0


def require_torch_threads(threads: int | None) -> None:
    if threads:
        from .._deps import require

        require("torch", "optimize", "pruning").set_num_threads(threads)


def run_optimize(args) -> int:
    import json
    from pathlib import Path

    from ..optimize.recipe import dump_recipe, load_recipe
    from ..util import console as make_console
    from .args import emit_json, json_to_stdout

    console = make_console(stderr=json_to_stdout(args))
    recipe = load_recipe(args.recipe)
    if args.check:
        console.print(dump_recipe(recipe), highlight=False, markup=False)
        return 0
    from ..optimize.pipeline import run_recipe

    out = Path(args.out) if args.out else Path("results") / recipe.name
    result = run_recipe(recipe, out, resume=args.resume, console=make_console(stderr=True))
    console.print(result.report.table())
    console.print(f"bundle: {result.bundle}; report: {result.files.get('html')}", highlight=False)
    emit_json(args.json, json.loads(result.report.to_json()), say=console.print)
    return 0
