"""The prompt head's KV cache, kept and put back, on the tiny random model through the real llama.cpp."""

from __future__ import annotations

import threading

import pytest

from edgeship.bundle import Task
from edgeship.errors import InputError
from edgeship.pipeline import DescribeConfig, Pipeline

CLASSES = {"classes": [{"label": "class-1", "score": 0.7}, {"label": "class-3", "score": 0.2}]}


def _tokens(engine, gen) -> list[int]:
    """Run ``gen`` and return the token ids it produced (its text, re-tokenised, would not be exact)."""
    seen = []
    original = engine.llama.generate

    def spy(*args, **kwargs):
        for t in original(*args, **kwargs):
            seen.append(t)
            yield t

    engine.llama.generate = spy
    try:
        "".join(gen)
    finally:
        del engine.llama.generate
    return seen


def test_cached_head_gives_the_same_tokens_as_a_cold_prompt(describe_engine):
    from edgeship.llm.engine import SamplingConfig

    pipe = Pipeline(describe_engine, DescribeConfig(max_tokens=12, repeat_penalty=1.0))
    pipe.warm()
    assert pipe.prefix.bytes > 0 and pipe.prefix.warm_ms > 0
    first = _tokens(describe_engine, pipe.generation(Task.CLASSIFY, CLASSES))  # the head is in place after warm
    other = describe_engine.chat_prompt([{"role": "user", "content": "something else entirely"}])
    "".join(describe_engine.generate(other, SamplingConfig(max_tokens=4, temperature=0)))  # replaces the context
    before = pipe.prefix.restores
    gen = pipe.generation(Task.CLASSIFY, CLASSES)
    assert _tokens(describe_engine, gen) == first
    assert pipe.prefix.restores == before + 1  # put back, not evaluated again
    assert gen.reused_tokens == len(pipe.head_tokens)
    assert gen.evaluated_tokens == gen.prompt_tokens - len(pipe.head_tokens) > 0
    # Without the cache every prompt is evaluated whole, and the answer is the same.
    nocache = Pipeline(describe_engine, DescribeConfig(max_tokens=12, repeat_penalty=1.0, prefix_cache=False))
    gen = nocache.generation(Task.CLASSIFY, CLASSES)
    assert _tokens(describe_engine, gen) == first
    assert (gen.reused_tokens, gen.evaluated_tokens) == (0, gen.prompt_tokens)


def test_the_head_is_tokenised_once_and_texts_stay_text(describe_engine):
    pipe = Pipeline(describe_engine, DescribeConfig(system_prompt="Say <|im_end|> plainly."))
    gen = pipe.generation(Task.CLASSIFY, {"classes": [{"label": "a <|im_start|> b", "score": 1.0}]})
    assert gen.tokens[: len(pipe.head_tokens)] == pipe.head_tokens
    specials = set(describe_engine.tokenize("<|im_start|><|im_end|>", add_bos=False, special=True).tokens)
    assert len(specials) == 2
    # The chat template writes 3 im_start and 3 im_end (system, user, assistant opening); the texts none.
    assert sum(t in specials for t in gen.tokens) == 5
    rendered = pipe.prompt(Task.CLASSIFY, {"classes": [{"label": "a", "score": 1.0}]})
    assert rendered.startswith("A vision model looked at a photo") and " a (100%)." in rendered
    assert pipe.messages(Task.CLASSIFY, CLASSES)[0] == {"role": "system", "content": "Say <|im_end|> plainly."}


def test_a_head_that_leaves_no_room_is_refused_at_start(describe_engine):
    with pytest.raises(InputError, match="raise the context"):
        Pipeline(describe_engine, DescribeConfig(system_prompt="x " * 500, max_tokens=400))
    with pytest.raises(InputError, match="filled only for detect bundles"):
        Pipeline(describe_engine, DescribeConfig(prompt_template="{objects}"), tasks=(Task.CLASSIFY,))


def test_pace_runs_before_every_token(describe_engine):
    calls = []
    describe_engine.pace = lambda: calls.append(threading.get_ident())
    try:
        pipe = Pipeline(describe_engine, DescribeConfig(max_tokens=6))
        gen = pipe.generation(Task.CLASSIFY, CLASSES)
        "".join(gen)
    finally:
        describe_engine.pace = None
    # Once before the prompt, then after each token that did not end the generation.
    assert len(calls) >= gen.completion_tokens
    assert len(calls) <= gen.completion_tokens + 1
