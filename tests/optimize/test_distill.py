"""Distillation on a tiny synthetic task (loss, resume) and the Fashion-MNIST loader."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeship.errors import InputError  # noqa: E402
from edgeship.optimize.data import FASHION_MNIST_ROOT, load_fashion_mnist  # noqa: E402
from edgeship.optimize.distill import DistillConfig, distill, distillation_loss, evaluate, train  # noqa: E402
from tests.optimize import opt_fixtures as fx  # noqa: E402

torch.set_num_threads(1)
FAST = dict(epochs=3, batch_size=32, lr=5e-3, threads=1)  # tiny ops: one thread beats two on a shared machine


@pytest.fixture(scope="module")
def task():
    return fx.synthetic(256, seed=0), fx.synthetic(128, seed=1)


@pytest.fixture(scope="module")
def teacher(task):
    model = fx.tiny_cnn(width=16, seed=1)
    train(model, task[0], DistillConfig(**FAST), progress=False)
    return model


def test_loss_is_kl_times_t_squared_plus_hard_labels():
    s, t, y = torch.randn(8, 4), torch.randn(8, 4), torch.randint(0, 4, (8,))
    hard = torch.nn.functional.cross_entropy(s, y)
    assert torch.allclose(distillation_loss(s, t, y, 4.0, 0.0), hard)
    kl = torch.nn.functional.kl_div(torch.log_softmax(s / 2, 1), torch.softmax(t / 2, 1), reduction="batchmean")
    assert torch.allclose(distillation_loss(s, t, y, 2.0, 1.0), kl * 4, atol=1e-6)
    assert float(distillation_loss(t, t, y, 3.0, 1.0)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_loss_decreases_and_student_learns(task, teacher):
    train_set, val = task
    assert evaluate(teacher, val) > 0.8
    student = fx.tiny_cnn(width=8, seed=2)
    result = distill(student, teacher, train_set, DistillConfig(**FAST, temperature=3.0, alpha=0.7), val=val, progress=False)
    losses = [h.loss for h in result.history]
    assert losses[-1] < losses[0]
    assert result.history[-1].val_accuracy > 0.6
    assert result.teacher


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(task, teacher, tmp_path):
    train_set, _ = task
    cfg = DistillConfig(**FAST)
    straight = fx.tiny_cnn(width=8, seed=3)
    distill(straight, teacher, train_set, cfg, checkpoint_dir=tmp_path / "a", progress=False)

    class Crash(Exception):
        pass

    def crash_after_two(stats):
        if stats.epoch == 2:
            raise Crash

    interrupted = fx.tiny_cnn(width=8, seed=3)
    with pytest.raises(Crash):
        distill(interrupted, teacher, train_set, cfg, checkpoint_dir=tmp_path / "b", progress=False,
                on_epoch=crash_after_two)
    resumed = fx.tiny_cnn(width=8, seed=99)  # different init: everything must come from the checkpoint
    result = distill(resumed, teacher, train_set, cfg, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert result.resumed_from == 2
    assert [h.epoch for h in result.history] == [1, 2, 3]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert not list((tmp_path / "b").glob(".*.tmp"))  # atomic writes leave no temp file


def test_resume_refuses_a_checkpoint_made_with_other_settings(task, tmp_path):
    train_set, _ = task
    model = fx.tiny_cnn(width=8)
    distill(model, None, train_set, DistillConfig(**{**FAST, "epochs": 1}), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="temperature=4.0"):
        distill(fx.tiny_cnn(width=8), None, train_set, DistillConfig(**{**FAST, "epochs": 1}, temperature=2.0),
                checkpoint_dir=tmp_path, resume=True, progress=False)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=0)


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_loader_reads_the_real_files():
    test = load_fashion_mnist("test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == np.uint8
    assert sorted(np.unique(test.labels)) == list(range(10)) and len(test.classes) == 10
    x, y = test.batch(slice(0, 500))
    assert x.shape == (500, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert abs(float(x.mean())) < 0.2  # normalised with the training statistics
    assert len(load_fashion_mnist("train")) == 60000


def test_fashion_mnist_loader_rejects_corrupt_files(tmp_path):
    root = fx.fake_fashion_mnist(tmp_path / "fm")
    assert len(load_fashion_mnist("test", root)) == 20
    images = root / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-40])  # truncated download
    with pytest.raises(InputError, match="t10k-images.*(corrupt|reinstall)"):
        load_fashion_mnist("test", root)
    with gzip.open(images, "wb") as f:  # valid gzip, wrong content
        f.write(b"\x00\x00\x08\x01" + bytes(100))
    with pytest.raises(InputError, match="magic number"):
        load_fashion_mnist("test", root)
    fx.write_idx(images, 0x803, np.zeros((20, 28, 28)))
    labels = root / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(labels, "wb") as f:  # header says 20 labels, holds 5
        f.write(b"\x00\x00\x08\x01" + (20).to_bytes(4, "big") + bytes(5))
    with pytest.raises(InputError, match="header says 20"):
        load_fashion_mnist("test", root)
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("test", tmp_path / "absent")


def test_image_folder_dataset(tmp_path):
    from edgeship.optimize.data import DataSpec, load_dataset

    root = fx.image_folder(tmp_path / "imgs", per_class=3)
    spec = DataSpec(source=str(root), image_size=(16, 16))
    train_set, test_set = load_dataset(spec, "train"), load_dataset(spec, "test")
    assert train_set.classes == fx.CLASSES and train_set.shape == (3, 16, 16)
    assert len(train_set) == 12 and len(test_set) == 6
    assert test_set.mean == train_set.mean
    with pytest.raises(InputError, match="train/"):
        load_dataset(DataSpec(source=str(tmp_path)), "train")
    (root / "train" / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="bad.png"):
        load_dataset(spec, "train")


def test_distill_cli_trains_resumes_and_saves(tmp_path, capsys):
    import json

    from edgeship import cli

    name = fx.register_tiny()
    root = fx.image_folder(tmp_path / "imgs", per_class=4)
    common = ["--data", str(root), "--image-size", "16", "--epochs", "2", "--train-batch", "8", "--threads", "1", "--json", "-"]
    assert cli.main(["distill", "--student", name, "-o", str(tmp_path / "teacher"), *common]) == 0
    teacher = tmp_path / "teacher" / "model.pt"
    assert teacher.is_file()
    capsys.readouterr()
    out = tmp_path / "student"
    assert cli.main(["distill", "--student", name, "--teacher", str(teacher), "-o", str(out), *common]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["with_teacher"] and len(first["history"]) == 2 and first["test_samples"] == 8
    assert cli.main(["distill", "--student", name, "--teacher", str(teacher), "-o", str(out), "--resume", *common]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["resumed_from"] == 2 and again["test_accuracy"] == first["test_accuracy"]
