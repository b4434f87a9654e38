"""Structured pruning on tiny CNNs: real shape changes, rounded widths, budgets, fine-tuning, measuring."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from edgeship.errors import InputError  # noqa: E402
from edgeship.optimize.distill import DistillConfig  # noqa: E402
from edgeship.optimize.prune import PruneConfig, prune  # noqa: E402
from tests.optimize import opt_fixtures as fx  # noqa: E402

torch.set_num_threads(1)
SHAPE = (3, 16, 16)


def convs(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_pruning_removes_channels_and_keeps_the_classifier():
    model = fx.tiny_cnn(num_classes=5, width=32)
    before_shapes = [tuple(c.weight.shape) for c in convs(model)]
    before_params = n_params(model)
    result = prune(model, PruneConfig(ratio=0.5), input_shape=SHAPE, measure=False)
    after_shapes = [tuple(c.weight.shape) for c in convs(model)]
    assert after_shapes != before_shapes
    assert after_shapes[0][0] < before_shapes[0][0]  # the first conv lost output channels ...
    assert after_shapes[1][1] == after_shapes[0][0]  # ... and the next one the matching inputs
    assert after_shapes[0][1] == 3  # the image's channels stay
    assert n_params(model) < before_params * 0.5
    assert result.after.params == n_params(model) and result.before.params == before_params
    head = model[-1]
    assert head.out_features == 5 and head.in_features == convs(model)[-1].out_channels
    with torch.no_grad():
        assert model(torch.randn(2, *SHAPE)).shape == (2, 5)
    assert result.layers["0"] == (32, after_shapes[0][0])


@pytest.mark.parametrize("round_to", [8, 16])
def test_kept_channels_are_multiples_of_round_to(round_to):
    model = fx.tiny_cnn(width=32)
    result = prune(model, PruneConfig(ratio=0.4, round_to=round_to), input_shape=SHAPE, measure=False)
    widths = [c.out_channels for c in convs(model)]
    assert all(w % round_to == 0 for w in widths), widths
    assert widths != [32, 64, 128]
    assert all(b > a for b, a in result.layers.values())


def test_flops_budget_is_reached_by_search():
    model = fx.tiny_cnn(width=32)
    result = prune(model, PruneConfig(target_flops=0.5), input_shape=SHAPE, measure=False)
    assert result.after.flops <= 0.5 * result.before.flops
    assert result.flops_reduction >= 2.0
    assert 0 < result.ratio < 0.9 and result.search


def test_params_budget():
    model = fx.tiny_cnn(width=32)
    result = prune(model, PruneConfig(target_params=0.6), input_shape=SHAPE, measure=False)
    assert result.after.params <= 0.6 * result.before.params


def test_unreachable_budget_and_bad_settings_say_why():
    with pytest.raises(InputError, match="not reachable"):
        prune(fx.tiny_cnn(width=8), PruneConfig(target_flops=0.01, max_layer_ratio=0.5), input_shape=SHAPE, measure=False)
    with pytest.raises(InputError, match="no module named 'nope'"):
        prune(fx.tiny_cnn(), PruneConfig(ratio=0.5, ignore=["nope"]), input_shape=SHAPE, measure=False)
    with pytest.raises(ValueError, match="only one of"):
        PruneConfig(ratio=0.5, target_flops=0.5)
    with pytest.raises(ValueError, match="ratio"):
        PruneConfig(ratio=1.5)


def test_ignored_layer_keeps_its_width():
    model = fx.tiny_cnn(width=32)
    prune(model, PruneConfig(ratio=0.5, ignore=["3"]), input_shape=SHAPE, measure=False)
    assert model[3].out_channels == 64 and model[0].out_channels < 32


def test_finetune_with_distillation_and_measurements(tmp_path):
    train_set, val = fx.synthetic(192, size=16, seed=0), fx.synthetic(96, size=16, seed=1)
    model = fx.tiny_cnn(width=16)
    from edgeship.optimize.distill import train

    train(model, train_set, DistillConfig(epochs=3, batch_size=32, lr=5e-3, threads=1), progress=False)
    cfg = PruneConfig(ratio=0.5, finetune=DistillConfig(epochs=2, batch_size=32, lr=2e-3, threads=1))
    result = prune(model, cfg, train=train_set, val=val, threads=1, checkpoint_dir=tmp_path, progress=False)
    assert result.finetune is not None and len(result.finetune.history) == 2 and result.finetune.teacher
    assert result.after_prune is not None and result.after_prune.accuracy is not None
    b, a = result.before, result.after  # measured on exported ONNX files in ONNX Runtime
    assert a.params < b.params and a.flops < b.flops and a.file_bytes < b.file_bytes
    assert a.p50_ms > 0 and a.p95_ms >= a.p50_ms and 0.0 <= a.accuracy <= 1.0 and a.samples == len(val)
    with pytest.raises(InputError, match="training data"):
        prune(fx.tiny_cnn(), cfg, input_shape=SHAPE, measure=False)


def test_prune_cli_writes_the_model_and_a_measured_summary(tmp_path, capsys):
    import json

    from edgeship import cli
    from edgeship.optimize.zoo import load_checkpoint

    name = fx.register_tiny()
    root = fx.image_folder(tmp_path / "imgs", per_class=4)
    code = cli.main(["prune", name, "--data", str(root), "--image-size", "16", "--target-flops", "0.6",
                     "--threads", "1", "-o", str(tmp_path / "out"), "--json", "-"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["after"]["flops"] <= 0.6 * summary["before"]["flops"]
    assert summary["after"]["accuracy"] is not None and summary["after"]["file_bytes"] > 0
    pruned = load_checkpoint(tmp_path / "out" / "model.pt")["module"]
    assert n_params(pruned) == summary["after"]["params"]
    assert cli.main(["prune", name, "--ratio", "half", "-o", str(tmp_path / "x")]) == 2
    # --json OUT writes the same summary to a file, as every verb's --json does, and still prints the table
    out_json = tmp_path / "prune.json"
    assert cli.main(["prune", name, "--ratio", "0.5", "--threads", "1", "-o", str(tmp_path / "y"),
                     "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["after"]["params"] > 0
    assert "params" in capsys.readouterr().out
