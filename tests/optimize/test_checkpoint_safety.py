"""Checkpoints as hostile input: a .pt file is data, never code.

edgeship's own checkpoints hold a state dict, the architecture's name and the layer sizes pruning
left; they load with ``torch.load(weights_only=True)``. A file crafted so that unpickling it runs
code (its ``__reduce__`` writes a marker file) must be refused wherever a path is accepted: the
MODEL of prune, the --student/--teacher of distill, a --resume checkpoint.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from edgeship.errors import InputError  # noqa: E402
from tests.optimize import opt_fixtures as fx  # noqa: E402

SHAPE = (3, 16, 16)


class _Payload:
    """Unpickling this calls ``open(marker, "w").write(...)``: code chosen by whoever wrote the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _crafted(path, marker, **fields):
    torch.save({"format": "edgeship-module/1", "arch": "x", "module": _Payload(marker), **fields}, path)
    return path


def test_a_pruned_model_round_trips_through_a_weights_only_checkpoint(tmp_path):
    from edgeship.optimize.prune import PruneConfig, prune
    from edgeship.optimize.zoo import load_checkpoint, read_checkpoint, save_checkpoint

    name = fx.register_tiny()
    from edgeship.optimize.zoo import build

    model = build(name, num_classes=4, in_channels=3)
    prune(model, PruneConfig(ratio=0.5), input_shape=SHAPE, measure=False)
    model.eval()
    path = save_checkpoint(model, tmp_path / "pruned.pt", arch=name, classes=["a", "b", "c", "d"], accuracy=0.5)
    raw = torch.load(path, weights_only=True)  # plain data and tensors only: nothing to unpickle
    assert raw["arch"] == name and raw["classes"] == ["a", "b", "c", "d"]
    loaded = load_checkpoint(path)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert torch.equal(loaded["module"](x), model(x))
    assert [tuple(p.shape) for p in loaded["module"].parameters()] == [tuple(p.shape) for p in model.parameters()]
    assert read_checkpoint(path)["accuracy"] == 0.5
    # pruning the loaded model again records the architecture, not the file name
    again = save_checkpoint(loaded["module"], tmp_path / "again.pt", arch=str(path))
    assert read_checkpoint(again)["arch"] == name


def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path):
    from edgeship.optimize.zoo import load_checkpoint, load_model

    marker = tmp_path / "marker"
    evil = _crafted(tmp_path / "evil.pt", marker)
    for load in (load_model, load_checkpoint):
        with pytest.raises(InputError, match="refusing to load: it holds Python objects"):
            load(str(evil))
    assert not marker.exists()
    # any existing path counts, whatever its suffix
    other = _crafted(tmp_path / "weights.bin", marker)
    with pytest.raises(InputError, match="refusing to load"):
        load_model(str(other))
    assert not marker.exists()


@pytest.mark.parametrize("argv", [
    lambda p: ["prune", str(p), "--ratio", "0.5", "--input-shape", "3,16,16"],
    lambda p: ["distill", "--student", str(p), "--data", "DATA", "--epochs", "1"],
    lambda p: ["distill", "--student", "STUDENT", "--teacher", str(p), "--data", "DATA", "--epochs", "1"],
])
def test_the_cli_refuses_a_crafted_model_file(tmp_path, argv, capsys):
    from edgeship import cli

    marker = tmp_path / "marker"
    evil = _crafted(tmp_path / "model.pt", marker)
    data = fx.image_folder(tmp_path / "imgs", per_class=2)
    args = [a.replace("DATA", str(data)).replace("STUDENT", fx.register_tiny()) for a in argv(evil)]
    code = cli.main([*args, "--threads", "1", "-o", str(tmp_path / "out")])
    assert code == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()


def test_a_crafted_resume_checkpoint_is_refused(tmp_path):
    from edgeship.optimize.distill import CHECKPOINT, DistillConfig, distill

    marker = tmp_path / "marker"
    (tmp_path / "ckpt").mkdir()
    _crafted(tmp_path / "ckpt" / CHECKPOINT, marker, epoch=1)
    data = fx.synthetic(32, 12)
    with pytest.raises(InputError, match="holding more than weights"):
        distill(fx.tiny_cnn(width=8), None, data, DistillConfig(epochs=1, batch_size=16), checkpoint_dir=tmp_path / "ckpt",
                resume=True, progress=False)
    assert not marker.exists()


def test_a_checkpoint_naming_an_import_path_is_not_imported(tmp_path):
    from edgeship.optimize.zoo import load_checkpoint, save_checkpoint

    path = save_checkpoint(fx.tiny_cnn(width=8), tmp_path / "m.pt", arch="os:getpid")
    with pytest.raises(InputError, match="is an import path"):
        load_checkpoint(path)
