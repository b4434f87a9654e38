"""`edgeship llm bench|quantize|chat` as main(argv), on the tiny random GGUF."""

from __future__ import annotations

import io
import json
import sys

import pytest

from edgeship.cli import main


def test_bench_prints_spread_over_three_runs_and_writes_json(tiny_gguf, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["llm", "bench", str(tiny_gguf), "--threads", "1", "--prompt-tokens", "32", "--gen-tokens", "16",
               "--repeat", "3", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    for label in ("load time", "time to first token", "prompt processing", "generation", "peak RSS",
                  "RSS added by the model", "mean", "std", "min", "max", "F32", "3 runs"):
        assert label in text, label
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 3
    assert all(r["prompt_tokens"] == 32 and r["completion_tokens"] == 16 for r in data["runs"])
    for key in ("load_s", "ttft_s", "prompt_tps", "decode_tps"):
        s = data["summary"][key]
        assert s["n"] == 3 and s["min"] <= s["mean"] <= s["max"] and s["std"] >= 0
    assert data["config"]["logits_all"] is False and data["config"]["n_threads"] == 1
    assert data["model"]["quantization"] == "F32"
    env = data["environment"]
    assert env["threads"] == 1 and env["cores_logical"] >= 1 and "llama-cpp-python" in env["versions"]


def test_quantize_reports_size_speed_and_perplexity_of_both(tiny_gguf, tmp_path, capsys):
    out, report = tmp_path / "tiny.Q8_0.gguf", tmp_path / "q.json"
    rc = main(["llm", "quantize", str(tiny_gguf), str(out), "--type", "q8_0", "--threads", "1", "--repeat", "1",
               "--json", str(report)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert out.is_file() and not list(tmp_path.glob(".*.tmp"))
    data = json.loads(report.read_text())
    src, dst = data["source"], data["output"]
    assert (src["quantization"], dst["quantization"]) == ("F32", "Q8_0")
    assert dst["file_bytes"] < 0.4 * src["file_bytes"]
    for side in (src, dst):
        assert side["decode_tps"] > 0 and side["prompt_tps"] > 0 and side["perplexity"] > 1
    # Q8_0 keeps a random model's predictions close to F32's.
    assert abs(dst["perplexity"] / src["perplexity"] - 1) < 0.1
    assert data["requantized"] is False
    for label in ("file size", "perplexity", "generation (tok/s)", "Q8_0"):
        assert label in text
    # The quantized file loads and reports its type.
    from edgeship.llm.engine import Engine, LoadConfig

    with Engine.load(out, LoadConfig(n_ctx=64, n_threads=1)) as engine:
        assert engine.info.quantization == "Q8_0"


def test_quantize_bad_input(tiny_gguf, tmp_path, capsys):
    assert main(["llm", "quantize", str(tiny_gguf), str(tmp_path / "o.gguf"), "--type", "Q9_9"]) == 2
    assert "unknown quantization type" in capsys.readouterr().err
    assert main(["llm", "quantize", str(tiny_gguf), str(tmp_path / "o.bin"), "--type", "Q8_0"]) == 2
    assert main(["llm", "quantize", str(tiny_gguf), str(tiny_gguf), "--type", "Q8_0", "--force"]) == 2
    existing = tmp_path / "exists.gguf"
    existing.write_bytes(b"x")
    assert main(["llm", "quantize", str(tiny_gguf), str(existing), "--type", "Q8_0"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["llm", "quantize", str(tmp_path / "missing.gguf"), str(tmp_path / "o.gguf"), "--type", "Q8_0"]) == 2  # a missing input file is bad input
    assert main(["llm", "bench", str(tiny_gguf), "--prompt-tokens", "0"]) == 2  # argparse: bad usage


def test_chat_streams_answers_from_stdin(tiny_gguf, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n\n/reset\nsecond question\n/exit\nnever read\n"))
    rc = main(["llm", "chat", str(tiny_gguf), "--threads", "1", "--ctx", "256", "--max-tokens", "8",
               "--temperature", "0"])
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.out.count("\n") == 2  # two answers, one line each (random text may be empty)
    assert "conversation cleared" in captured.err


def test_chat_function_keeps_history_and_drops_old_turns(tiny_engine):
    from edgeship.llm.chat import ChatConfig, chat

    out, err = io.StringIO(), io.StringIO()
    # Each message is ~60 tokens in a 256-token context: old turns must be dropped to keep going.
    lines = "".join(f"message {i} " + "abc " * 25 + "\n" for i in range(6))
    answers = chat(tiny_engine, ChatConfig(max_tokens=8, temperature=0.0), stdin=io.StringIO(lines), stdout=out,
                   stderr=err)
    assert answers == 6 and err.getvalue() == ""


def test_without_the_llm_extra_the_error_names_it(tiny_gguf, monkeypatch, capsys):
    from edgeship.cli import build_parser
    from edgeship.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    for argv in (["llm", "bench", str(tiny_gguf)], ["llm", "chat", str(tiny_gguf)],
                 ["llm", "quantize", str(tiny_gguf), "out.gguf", "--type", "Q4_0"]):
        args = build_parser().parse_args(argv)
        with pytest.raises(MissingDependencyError, match=r"pip install 'edgeship\[llm\]'"):
            args.run(args)
        assert main(argv) == 1
        assert "pip install 'edgeship" in capsys.readouterr().err


def test_llm_without_a_verb_is_bad_usage(capsys):
    assert main(["llm"]) == 2
