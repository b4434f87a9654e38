"""Recipes: validation names the key; the demo recipe file matches the code; a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("yaml")

from edgeship import cli  # noqa: E402
from edgeship.errors import SchemaError  # noqa: E402
from edgeship.optimize.recipe import Recipe, load_recipe, load_recipe_text  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


main = cli.main


@pytest.mark.parametrize("text, message", [
    ("student: {model: s}\nprune: {ratio: half}", "recipe.prune.ratio: expected a number, got 'half' (str)"),
    ("student: {model: s}\ndistill: {temprature: 3}", "recipe.distill.temprature: unknown field"),
    ("student: {model: s}\nprune: {finetune: {epochs: two}}", "recipe.prune.finetune.epochs: expected an integer"),
    ("student: {model: s}\nexport: {opset: 3}", "recipe.export: opset: expected 7 to 23"),
    ("student: {model: s}\nquantize: {method: fancy}", "recipe.quantize.method: expected one of"),
    ("student: {model: s}\ndata: {train_limit: 0}", "recipe.data: train_limit: must be at least 1"),
    ("student: {model: s}\nprune: {ratio: 0.3, target_flops: 0.5}", "recipe.prune: set only one of"),
    ("student: {model: s}\ndistill: {epochs: 1}", "distill: needs a teacher"),
    ("student: {model: s}\nmesure: {threads: 2}", "recipe.mesure: unknown field"),
    ("prune: {ratio: 0.5}", "recipe.student: required field is missing"),
    ("student: [1, 2]", "recipe.student: expected a mapping"),
    ("student: {model: s\n", "recipe: not valid YAML"),
])
def test_a_bad_recipe_names_the_key(text, message):
    with pytest.raises(SchemaError) as err:
        load_recipe_text(text)
    assert message in str(err.value)


def test_cli_reports_a_bad_recipe_as_bad_usage(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("student: {model: fmnist-student}\nprune: {ratio: half}\n")
    assert main(["optimize", "--recipe", str(bad), "--check"]) == 2
    assert "prune.ratio: expected a number, got 'half'" in capsys.readouterr().err
    assert main(["optimize", "--recipe", str(tmp_path / "absent.yaml"), "--check"]) == 2


def test_the_demo_recipe_file_is_the_demo(capsys):
    pytest.importorskip("torch")
    from edgeship.optimize.pipeline import fashion_mnist_recipe

    recipe = load_recipe(REPO / "recipes" / "fashion-mnist.yaml")
    assert isinstance(recipe, Recipe)
    assert recipe == fashion_mnist_recipe(quick=False)
    assert main(["optimize", "--recipe", str(REPO / "recipes" / "fashion-mnist.yaml"), "--check"]) == 0
    assert "target_flops: 0.5" in capsys.readouterr().out


def test_tiny_recipe_end_to_end(tmp_path):
    """distill -> prune -> export on a tiny image folder: every row measured, provenance written."""
    pytest.importorskip("torch")
    pytest.importorskip("torch_pruning")
    from edgeship.bundle import open_bundle
    from edgeship.optimize.pipeline import run_recipe
    from tests.optimize import opt_fixtures as fx

    name = fx.register_tiny()
    root = fx.image_folder(tmp_path / "imgs", per_class=8)
    recipe = load_recipe_text(f"""
name: tiny
data: {{source: "{root}", image_size: [16, 16]}}
teacher: {{model: {name}, train: {{epochs: 2, batch_size: 16, threads: 1}}}}
student: {{model: {name}}}
distill: {{epochs: 2, batch_size: 16, threads: 1}}
prune: {{ratio: 0.5, finetune: {{epochs: 1, batch_size: 16, threads: 1}}}}
export: {{dynamic_batch: true}}
measure: {{threads: 1, runs: 5, warmup: 1}}
""")
    result = run_recipe(recipe, tmp_path / "out", progress=False)
    stages = [r.stage for r in result.report.rows]
    assert stages == ["teacher", "student (distilled)", "student (pruned, fine-tuned)"]
    for row in result.report.rows:
        m = row.measurement
        assert m.params and m.flops and m.file_bytes and m.p50_ms and m.accuracy is not None and m.samples == 16
    rows = {r.stage: r.measurement for r in result.report.rows}
    assert rows["student (pruned, fine-tuned)"].flops < rows["student (distilled)"].flops
    bundle = open_bundle(result.bundle)
    assert [s.stage for s in bundle.manifest.provenance] == ["distill", "prune", "export"]
    assert bundle.manifest.provenance[1].metrics["flops_after"] < bundle.manifest.provenance[1].metrics["flops_before"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["stage"] for r in report["rows"]] == stages
    from edgeship.optimize.report import Report

    again = Report.from_dict(report)
    assert [r.measurement for r in again.rows] == [r.measurement for r in result.report.rows]
    assert again.table().row_count == 3
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("<svg") >= 3 and "student (distilled)" in html
