"""The KV cache edgeship plans from a GGUF header is the one llama.cpp allocates."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeship.llm.memory import LLMDims, llm_parts
from edgeship.monitor.memory import MB


def test_dims_and_parts_of_the_tiny_model(tiny_gguf, tiny_ctx):
    dims = LLMDims.read(tiny_gguf)
    assert (dims.architecture, dims.n_layer, dims.n_embd, dims.n_head, dims.n_head_kv) == ("llama", 2, 128, 4, 2)
    assert dims.key_length == dims.value_length == 32 and dims.file_bytes == tiny_gguf.stat().st_size
    assert dims.kv_cache_bytes(tiny_ctx) == 2 * tiny_ctx * 64 * 2 * 2
    parts = {p.name: p for p in llm_parts(tiny_gguf, tiny_ctx, name="tiny")}
    assert [p.source.value for p in parts.values()] == ["file size", "computed", "predicted"]
    assert parts["llm tiny: compute buffers"].when.value == "peak"


def test_a_file_that_is_no_gguf_is_an_input_error(tmp_path):
    from edgeship.errors import InputError

    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(InputError, match="not a readable GGUF"):
        LLMDims.read(bad)


@pytest.mark.slow
def test_the_kv_cache_planned_for_smollm2_is_what_llama_cpp_makes_resident(smollm2):
    """Loaded at two contexts in fresh processes, SmolLM2's RSS differs by the planned KV caches' difference."""
    code = ("import sys\nfrom edgeship.llm.engine import Engine, LoadConfig\nfrom edgeship.monitor.memory import usage\n"
            "a = usage()\ne = Engine.load(sys.argv[1], LoadConfig(n_ctx=int(sys.argv[2]), n_threads=1))\n"
            "print(usage().anon_bytes - a.anon_bytes)\n")

    def grown(n_ctx: int) -> int:
        done = subprocess.run([sys.executable, "-c", code, str(smollm2), str(n_ctx)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1])

    dims = LLMDims.read(smollm2)
    planned = dims.kv_cache_bytes(4096) - dims.kv_cache_bytes(512)
    assert planned == 90 * MB - int(11.25 * MB)  # llama.cpp's own log: 90.00 MiB at 4096, 11.25 MiB at 512
    assert grown(4096) - grown(512) == pytest.approx(planned, rel=0.05)
