"""The engine on the tiny random GGUF, through the real llama.cpp."""

from __future__ import annotations

import threading

import pytest

from edgeship.errors import InputError
from edgeship.llm.engine import Engine, LoadConfig, SamplingConfig, _stop_prefix_len, check_fits
from edgeship.llm.errors import ContextLengthError, LLMError

GREEDY = SamplingConfig(temperature=0.0, max_tokens=24)


def _prompt(engine, text="hello there"):
    return engine.chat_prompt([{"role": "user", "content": text}])


def test_info_reads_the_gguf(tiny_engine):
    info = tiny_engine.info
    assert info.architecture == "llama"
    assert info.quantization == "F32"
    assert info.chat_template == "gguf"
    assert info.context_length == 256 and info.vocab_size == 266
    assert info.n_params > 0 and info.file_bytes > info.n_params * 4 * 0.9


def test_chat_prompt_uses_the_template_in_the_gguf(tiny_engine):
    prompt = _prompt(tiny_engine)
    assert prompt.text == "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"
    assert prompt.tokens[0] == 1  # <|im_start|> is one special token, not its characters
    assert 2 in prompt.tokens  # <|im_end|>


def test_greedy_is_deterministic_and_counts_tokens(tiny_engine):
    runs = []
    for _ in range(2):
        gen = tiny_engine.generate(_prompt(tiny_engine), GREEDY)
        runs.append(("".join(gen), gen.completion_tokens, gen.finish_reason))
        assert gen.prompt_tokens == len(_prompt(tiny_engine))
        assert gen.ttft_s > 0
    assert runs[0] == runs[1]
    assert 1 <= runs[0][1] <= 24
    assert runs[0][2] in ("stop", "length")


def test_max_tokens_and_ignore_eos(tiny_engine):
    gen = tiny_engine.generate(_prompt(tiny_engine), SamplingConfig(temperature=0.0, max_tokens=7, ignore_eos=True))
    list(gen)
    assert (gen.completion_tokens, gen.finish_reason) == (7, "length")
    assert gen.decode_tps > 0


def test_seeded_sampling_repeats(tiny_engine):
    cfg = SamplingConfig(temperature=1.0, max_tokens=12, seed=1234, ignore_eos=True)
    a = "".join(tiny_engine.generate(_prompt(tiny_engine), cfg))
    b = "".join(tiny_engine.generate(_prompt(tiny_engine), cfg))
    assert a == b


def test_stop_string_cuts_the_text(tiny_engine):
    prompt = tiny_engine.tokenize("the cat sat on the mat")
    free = "".join(tiny_engine.generate(prompt, SamplingConfig(temperature=0.0, max_tokens=30, ignore_eos=True)))
    stop = free[5:8]
    assert stop and stop in free
    gen = tiny_engine.generate(prompt, SamplingConfig(temperature=0.0, max_tokens=30, ignore_eos=True, stop=(stop,)))
    text = "".join(gen)
    assert text == free[: free.index(stop)]
    assert gen.finish_reason == "stop"


def test_stop_prefix_is_held_back():
    assert _stop_prefix_len("hello wor", ("world",), 5) == 3
    assert _stop_prefix_len("hello", ("world",), 5) == 0
    assert _stop_prefix_len("ab<", ("<|end|>", "x"), 7) == 1


def test_cancel_stops_between_tokens(tiny_engine):
    cancel = threading.Event()
    gen = tiny_engine.generate(_prompt(tiny_engine), SamplingConfig(temperature=0.0, max_tokens=50, ignore_eos=True),
                               cancel=cancel)
    for i, _ in enumerate(gen):
        if i == 2:
            cancel.set()
    assert gen.finish_reason == "cancelled"
    assert gen.completion_tokens < 10  # pieces and tokens differ where bytes form no complete character yet
    # The model is usable right after.
    after = tiny_engine.generate(_prompt(tiny_engine), SamplingConfig(temperature=0.0, max_tokens=3, ignore_eos=True))
    list(after)
    assert after.completion_tokens == 3


def test_prompt_longer_than_the_context_says_by_how_much(tiny_engine):
    long_prompt = list(range(3, 3 + 200)) * 2  # 400 tokens, context 256
    with pytest.raises(ContextLengthError, match=r"145 tokens too many"):
        tiny_engine.generate(long_prompt)
    with pytest.raises(ContextLengthError, match=r"50 in the prompt, 300 for the completion\): 94 tokens too many"):
        check_fits(50, 300, 256)
    check_fits(55, 200, 256)  # fits exactly... with one to spare


def test_bad_configs_and_files(tmp_path):
    with pytest.raises(InputError, match="temperature"):
        SamplingConfig(temperature=3.0)
    with pytest.raises(InputError, match="max_tokens"):
        SamplingConfig(max_tokens=-1)
    with pytest.raises(InputError, match="n_threads"):
        LoadConfig(n_threads=0)
    with pytest.raises(InputError, match="no such GGUF"):
        Engine.load(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(LLMError, match="could not load"):
        Engine.load(junk, LoadConfig(n_ctx=64, n_threads=1))
