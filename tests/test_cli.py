"""The CLI as main(argv): real commands on real bundles, and every bad input with its exit code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeship.cli import main


def test_help_imports_neither_torch_nor_onnxruntime():
    code = (
        "import sys\nfrom edgeship.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('torch', 'onnxruntime', 'onnx', 'starlette', 'llama_cpp') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_device_side_modules_do_not_import_torch():
    code = (
        "import sys\nsys.modules['torch'] = None  # any import of torch now fails loudly\n"
        "import edgeship, edgeship.bundle, edgeship.runtime, edgeship.targets, edgeship.monitor, edgeship.bench.runner\n"
        "import edgeship.bundle.bare, edgeship.photos, edgeship.targets.fit, edgeship.targets.flops\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "torch" not in subprocess.run(
        [sys.executable, "-c", "import sys, edgeship.runtime, edgeship.bundle, edgeship.targets; print(list(sys.modules))"],
        capture_output=True, text=True, check=True).stdout


def test_public_surface_is_pinned():
    import edgeship

    assert edgeship.__all__ == sorted([
        "Bundle", "EdgeshipError", "Format", "Manifest", "Model", "Postprocessing", "Prediction", "Preprocessing",
        "RuntimeConfig", "Task", "TensorSpec", "__version__", "open_bundle", "pack", "unpack", "write_bundle",
    ])
    for name in edgeship.__all__:
        assert getattr(edgeship, name) is not None


def test_predict_prints_labels_and_stage_times(tiny_bundle, tmp_path, capsys):
    from tests.support import jpeg_bytes

    img = tmp_path / "a.jpg"
    img.write_bytes(jpeg_bytes())
    out_json = tmp_path / "p.json"
    assert main(["predict", str(tiny_bundle.root), str(img), "--top-k", "2", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "class-" in text and "infer" in text and "decode" in text
    data = json.loads(out_json.read_text())
    assert len(data["results"][0]["classes"]) == 2


def test_bench_side_by_side_writes_json(tiny_bundle, tiny_onnx, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", str(tiny_bundle.root), str(tiny_onnx), "--batch", "1,4", "--runs", "5", "--warmup", "1",
               "--threads", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "batch 4" in text and "vs first" in text and "not available" in text
    report = json.loads(out.read_text())
    assert report["environment"]["threads"] == 1 and "onnxruntime" in report["environment"]["versions"]
    first, bare = report["results"]
    assert set(first["batches"]) == {"1", "4"} and first["batches"]["4"]["runs"] == 5
    assert first["batches"]["1"]["p50_ms"] > 0 and first["peak_rss_bytes"] > 0
    assert bare["assumed"]  # the bare .onnx says what it assumed
    assert first["cpu_temp_c_before"] is None or isinstance(first["cpu_temp_c_before"], float)


def test_bench_reads_sensors_from_a_fake_tree(tiny_bundle, tmp_path, capsys):
    root = tmp_path / "root"
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48312\n")
    rc = main(["bench", str(tiny_bundle.root), "--runs", "3", "--warmup", "0", "--sensors-root", str(root),
               "--json", str(tmp_path / "b.json")])
    assert rc == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["results"][0]["cpu_temp_c_before"] == pytest.approx(48.312)


def test_bundle_verify_pack_unpack(tiny_bundle, tmp_path, capsys):
    tar = tmp_path / "b.tar"
    assert main(["bundle", "verify", str(tiny_bundle.root)]) == 0
    assert "golden output reproduced" in capsys.readouterr().out
    assert main(["bundle", "pack", str(tiny_bundle.root), "-o", str(tar)]) == 0
    assert main(["bundle", "unpack", str(tar), "-o", str(tmp_path / "u")]) == 0
    assert main(["bundle", "inspect", str(tmp_path / "u")]) == 0


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["predict", "{missing}", "x.jpg"], 2, "no such file or folder"),
        (["predict", "{empty}", "x.jpg"], 2, "not a bundle"),
        (["bundle", "verify", "{text}"], 2, "unknown model format"),
        (["bench", "{bundle}", "--run", "20"], 2, "unrecognized arguments: --run 20; did you mean --runs?"),
        (["bench", "{bundle}", "--bat", "8"], 2, "unrecognized arguments: --bat 8; did you mean --batch?"),
        (["bundle", "verify", "{bundle}", "--bogus"], 2, "edgeship bundle verify: error: unrecognized"),
        (["demo", "--only", "foo"], 2, "unknown demo section 'foo'"),
        (["predict", "{bundle}", "{text}"], 2, "not a recognised image"),
        (["bench", "{bundle}", "--batch", "one"], 2, "expected comma-separated integers"),
        (["bench", "{bundle}", "--runs", "0"], 2, "expected a positive integer"),
        (["bench", "{corrupt}"], 1, "not a loadable ONNX model"),
        (["bench", "{bundle}", "--target", "toaster"], 2, "toaster"),
        (["bundle", "verify", "{tampered}"], 1, "does not match"),
        (["nonsense"], 2, "invalid choice"),
    ],
)
def test_bad_input_exit_codes_and_messages(argv, code, message, tiny_bundle, tiny_onnx, tmp_path, capsys):
    import shutil

    (tmp_path / "empty").mkdir()
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01garbage" * 10)
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_bundle.root, tampered)
    with open(tampered / "labels.txt", "a") as f:
        f.write("extra\n")
    values = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "bundle": tiny_bundle.root, "text": text,
              "corrupt": corrupt, "tampered": tampered}
    argv = [a.format(**values) for a in argv]
    assert main(argv) == code
    captured = capsys.readouterr()
    assert message in captured.err + captured.out


def test_export_unknown_architecture_fails_cleanly(tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["export", "resnet9000", "-o", str(tmp_path / "x")]) == 2
    assert "unknown model 'resnet9000'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_export_then_predict_on_cli(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "b"
    assert main(["export", "tests.models.tiny_torch:tiny_cnn", "-o", str(out), "--input-size", "32",
                 "--dynamic-batch"]) == 0
    assert "max |onnx - torch|" in capsys.readouterr().out
    assert main(["export", "tests.models.tiny_torch:tiny_cnn", "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_every_flag_with_a_default_shows_it(capsys):
    assert main(["serve", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for shown in ("--queue-size QUEUE_SIZE requests in flight per model; one more gets 503 with Retry-After (default: 64)",
                  "--max-upload-mb MAX_UPLOAD_MB largest accepted request body, in MB (default: 10)",
                  "--spinning {auto,off,run,on}", "(default: auto)", "--port PORT TCP port to listen on (default: 8000)"):
        assert shown in out


def test_a_named_verb_builds_only_its_own_parser_and_every_verb_has_an_owner():
    import subprocess
    import sys

    from edgeship.cli import VERB_MODULES, _owner, build_parser

    full = build_parser()
    verbs = next(a for a in full._actions if a.dest == "verb").choices
    for verb in verbs:  # every verb maps to the module that registers it
        only = build_parser(verb)
        assert set(next(a for a in only._actions if a.dest == "verb").choices) >= {verb}, verb
    assert _owner("nosuch") is None and _owner(None) is None and _owner("serve") in VERB_MODULES
    # `edgeship serve --help` imports no other verb's module (the start of every server pays for them)
    code = ("import sys, edgeship.cli as c\n"
            "try:\n    c.main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('edgeship.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "edgeship.commands.serve" in loaded and "edgeship.commands.quantize" not in loaded, loaded
