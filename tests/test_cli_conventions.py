"""One meaning per flag across verbs, each default once (the config's), what bench ran recorded, no 80-column cuts."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest

from edgeship.cli import build_parser, main


def _verb_parsers(parser: argparse.ArgumentParser, prefix: str = "edgeship"):
    """Every verb's parser, nested ones included (``ota status``, ``llm bench``), by its command line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _verb_parsers(sub, f"{prefix} {name}")


def _option(parser: argparse.ArgumentParser, flag: str):
    return next((a for a in parser._actions if flag in a.option_strings), None)


# --- each default lives once: in the config, shown in --help -----------------------------------

CONFIG_VERBS = [
    ("quantize", "edgeship.optimize.qconfig:QuantizeConfig", ["B", "-o", "O"], {}),
    ("export", "edgeship.optimize.config:ExportSpec", ["M", "-o", "O"], {}),
    ("distill", "edgeship.optimize.config:DistillConfig", ["--student", "s", "-o", "O"], {}),
    ("prune", "edgeship.optimize.config:PruneConfig", ["m", "-o", "O"], {}),
    ("bench", "edgeship.bench.config:BenchConfig", ["B"], {}),
    ("llm bench", "edgeship.llm.bench:LLMBenchConfig", ["M"], {}),
    ("llm chat", "edgeship.llm.chat:ChatConfig", ["M"], {}),
    ("llm chat", "edgeship.llm.engine:LoadConfig", ["M"], {}),
]


def _cls(path: str):
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("verb, cls_path, argv, fixed", CONFIG_VERBS)
def test_verb_flags_are_the_configs_fields_with_their_defaults(verb, cls_path, argv, fixed, capsys):
    from edgeship.commands.args import config_from_args

    cls = _cls(cls_path)
    parser = dict(_verb_parsers(build_parser()))[f"edgeship {verb}"]
    args = parser.parse_args(argv)
    # no flag given: exactly the config's defaults (no default restated in the verb that could drift)
    assert config_from_args(cls, args, **fixed) == cls(**fixed)
    assert main([*verb.split(), "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    marked = [f for f in dataclasses.fields(cls) if "cli" in f.metadata]
    assert marked, f"{cls.__name__} marks no field as a flag"
    for f in marked:
        flag = f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")
        assert flag in help_text, f"{verb}: {f.name} has no {flag}"
        action = _option(parser, flag)
        assert action is not None and action.default is None, f"{verb} {flag}: a default outside the config"
        if isinstance(f.default, (int, float)) and not isinstance(f.default, bool) and f.metadata["cli"]["unit"] == 1:
            assert f"(default: {f.default:g})" in " ".join(action.help.split())


def test_quantize_keeps_the_flag_names_users_have():
    parser = dict(_verb_parsers(build_parser()))["edgeship quantize"]
    args = parser.parse_args(["B", "-o", "O", "--calibration", "photos", "--method", "minmax", "--target", "rpi5",
                              "--mode", "static", "--layouts", "all,no-se", "--gate", "agreement",
                              "--min-accuracy", "0.9", "--min-agreement", "0.9", "--max-output-error", "0.2",
                              "--min-speedup", "1.1", "--eval", "E", "--calibration-samples", "8",
                              "--eval-samples", "9", "--timing-runs", "7", "--threads", "1", "--json", "r.json",
                              "--force"])
    from edgeship.commands.args import config_from_args
    from edgeship.optimize.qconfig import Layout, Method, QuantizeConfig

    config = config_from_args(QuantizeConfig, args)
    assert config.method is Method.MINMAX and config.layouts == [Layout.ALL, Layout.NO_SE]
    assert (config.calibration_samples, config.eval_samples, config.timing_runs, config.threads) == (8, 9, 7, 1)
    assert config.min_speedup == 1.1 and config.eval == "E" and args.json == "r.json" and args.force


def test_a_bad_quantize_flag_is_a_usage_error(tmp_path, capsys):
    assert main(["quantize", str(tmp_path), "-o", str(tmp_path / "o"), "--layouts", "all,bogus"]) == 2
    assert "expected a comma-separated list of all, int8-chain" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path), "-o", str(tmp_path / "o"), "--min-agreement", "1.5"]) == 2
    assert "expected a number from 0 to 1" in capsys.readouterr().err


def test_help_stays_light():
    # the verbs' flags come from config dataclasses: their modules must stay free of numpy and the engines
    code = ("import sys\nfrom edgeship.cli import main\nmain(['--help'])\n"
            "print([m for m in ('numpy', 'torch', 'onnxruntime', 'onnx') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# --- --json PATH and --batch: one meaning each --------------------------------------------------


def test_json_means_write_to_path_in_every_verb():
    found = []
    for name, parser in _verb_parsers(build_parser()):
        action = _option(parser, "--json")
        if action is None:
            continue
        found.append(name)
        assert action.nargs is None and action.metavar == "PATH", f"{name}: --json is not --json PATH"
        assert "PATH" in action.help and "'-'" in action.help, name
    assert {"edgeship bench", "edgeship predict", "edgeship quantize", "edgeship distill", "edgeship prune",
            "edgeship optimize", "edgeship monitor", "edgeship ota status", "edgeship llm bench",
            "edgeship export"} <= set(found)


def test_a_bare_json_says_what_it_takes(capsys):
    assert main(["distill", "--student", "s", "-o", "o", "--json"]) == 2
    assert "--json takes a PATH to write the result to ('-' for stdout)" in capsys.readouterr().err


def test_batch_is_the_inference_batch_only(capsys):
    verbs = dict(_verb_parsers(build_parser()))
    shown = [name for name, p in verbs.items()
             if (a := _option(p, "--batch")) is not None and a.help != argparse.SUPPRESS]
    assert shown == ["edgeship bench"]
    assert _option(verbs["edgeship export"], "--graph-batch") is not None
    assert _option(verbs["edgeship distill"], "--train-batch") is not None
    assert _option(verbs["edgeship prune"], "--train-batch") is not None
    for argv, new in ((["export", "m", "-o", "o", "--batch", "4"], "--graph-batch"),
                      (["distill", "--student", "s", "-o", "o", "--batch", "8"], "--train-batch"),
                      (["prune", "m", "-o", "o", "--batch", "8"], "--train-batch")):
        assert main(argv) == 2
        assert f"--batch is now {new}" in capsys.readouterr().err


def test_json_dash_prints_only_json_on_stdout(tiny_bundle, tmp_path, capsys):
    from tests.support import jpeg_bytes

    img = tmp_path / "a.jpg"
    img.write_bytes(jpeg_bytes())
    assert main(["predict", str(tiny_bundle.root), str(img), "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["results"][0]["classes"]  # stdout is the JSON alone
    assert "model load" in captured.err  # the table and notes went to stderr
    assert main(["devices", "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["devices"] and "Raspberry Pi 5" in captured.err


# --- bench --target on a smaller host ------------------------------------------------------------


def test_bench_target_caps_threads_names_missing_providers_and_records_what_ran(tiny_bundle, tmp_path, capsys,
                                                                              monkeypatch):
    import os

    from edgeship.runtime.backends.ort_options import available_providers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # a 2-core host, whatever runs the test
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_bundle.root), "--target", "jetson-orin-nx", "--runs", "3", "--warmup", "0",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    # printed whole on one line, though longer than 80 columns
    assert "note: jetson-orin-nx asks for 8 threads; this host has 2 usable cores: running 2\n" in text
    report = json.loads(out.read_text())
    fit = report["config"]["host_fit"]
    assert report["config"]["threads"] == 2 and report["environment"]["threads"] == 2
    assert fit["threads_asked"] == 8 and fit["threads_used"] == 2 and fit["usable_cores"] == 2
    assert fit["providers_preferred"][0] == "TensorrtExecutionProvider"
    ran = report["results"][0]["runtime"]
    assert ran["intra_op_threads"] == 2 and ran["providers"]  # the session's own list
    if "TensorrtExecutionProvider" not in available_providers():
        assert "TensorrtExecutionProvider" in fit["providers_unavailable"]
        line = next(line for line in text.splitlines() if "prefers" in line)
        assert "TensorrtExecutionProvider" in line and "not available" in line and "running on" in line
        assert "TensorrtExecutionProvider" not in ran["providers"]


def test_bench_keeps_threads_the_user_gave_with_a_note(tiny_bundle, tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_bundle.root), "--threads", "2", "--runs", "2", "--warmup", "0",
                 "--json", str(out)]) == 0
    assert "--threads 2 is more than this host's 1 usable cores" in capsys.readouterr().out
    assert json.loads(out.read_text())["config"]["threads"] == 2


# --- no 80-column cuts ---------------------------------------------------------------------------


def test_predict_title_never_cuts_a_long_path(tiny_bundle, tmp_path, capsys, monkeypatch):
    from tests.support import jpeg_bytes

    folder = tmp_path
    for i in range(6):  # an absolute path longer than any terminal: 200+ characters
        folder = folder / f"deeply_nested_folder_number_{i}"
    folder.mkdir(parents=True)
    img = folder / "chelsea_the_cat.jpg"
    img.write_bytes(jpeg_bytes())
    assert len(str(img)) > 200
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["predict", str(tiny_bundle.root), str(img)]) == 0
    lines = capsys.readouterr().out.splitlines()
    title = next(line for line in lines if "chelsea_the_cat.jpg" in line)
    assert title.startswith("chelsea_the_cat.jpg  (") and "ms)" in title
    # no line holds a piece of the folder path: it is shown whole or not at all
    assert not [line for line in lines if "deeply_nested" in line and str(img) not in line]
