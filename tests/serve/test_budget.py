"""The server's memory plan, its budget (refusal with exit 2, or a start), GET /v1/budget and /metrics."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from edgeship.errors import InputError, MemoryBudgetError  # noqa: E402
from edgeship.monitor.memory import MB  # noqa: E402
from edgeship.serve import ServeConfig, create_app  # noqa: E402
from edgeship.serve.budget import Budget, parse_budget  # noqa: E402
from tests.serve.support import ServerProcess  # noqa: E402
from tests.serve.test_app import run  # noqa: E402


def _parts(plan: dict) -> dict[str, dict]:
    return {p["name"]: p for p in plan["parts"]}


def test_the_plan_names_each_part_where_its_figure_comes_from(classifier_bundle):
    app = create_app([classifier_bundle], ServeConfig(max_batch=4, prep_threads=2, max_pixels=1_000_000,
                                                      memory_budget=4096 * MB))

    async def fn(client):
        return (await client.get("/v1/budget")).json(), (await client.get("/metrics")).text

    budget, metrics = run(app, fn)
    parts = _parts(budget)
    assert parts["process before models"]["source"] == "measured" and parts["process before models"]["bytes"] > 10 * MB
    for name in ("tiny: session", "tiny: twin session", "tiny: first run", "tiny: batch of 4",
                 "decode threads: a 640x480 picture each"):
        assert parts[name]["source"] == "measured" and parts[name]["when"] == "resident", name
    assert parts["tiny: weights"]["source"] == "file size"
    assert parts["tiny: batch of 4"]["note"] == "a full batch's activations, run once at start"
    assert parts["tiny: inputs in flight"]["bytes"] == (4 + 2 + 4) * 3 * 32 * 32 * 4  # float32 rows of 3x32x32
    assert parts["picture decodes at the pixel limit"]["bytes"] == 2 * 1_000_000 * 24
    assert budget["resident_bytes"] == sum(p["bytes"] for p in budget["parts"] if p["when"] == "resident")
    assert budget["peak_bytes"] == sum(p["bytes"] for p in budget["parts"]) >= budget["resident_bytes"]
    assert budget["budget_bytes"] == 4096 * MB and budget["budget_source"] == "--memory-budget" and budget["fits"]
    assert budget["measured"]["rss_bytes"] > 0 and budget["measured"]["peak_rss_bytes"] >= budget["measured"]["rss_bytes"]
    assert 'edgeship_memory_planned_bytes{part="tiny: session",source="measured",when="resident"}' in metrics
    assert f"edgeship_memory_budget_bytes {float(4096 * MB)}" in metrics or "edgeship_memory_budget_bytes 4.294967296e+09" in metrics
    assert "edgeship_memory_planned_peak_bytes" in metrics and "edgeship_process_peak_resident_memory_bytes" in metrics


def test_without_spinning_auto_there_is_no_twin(classifier_bundle):
    app = create_app([classifier_bundle], ServeConfig(spinning="off", max_batch=1))
    names = [p.name for p in app.state.edgeship.memory_plan.parts]
    assert not any("twin" in n for n in names) and not any("batch of" in n for n in names)


def test_a_model_whose_row_is_large_runs_fewer_rows_per_batch(tmp_path):
    from tests.support import build_tiny_classifier, make_tiny_bundle

    # 8 channels of 512x512 float32 out of the first conv: 8 MiB of activations a row
    bundle = make_tiny_bundle(tmp_path / "big", build_tiny_classifier(tmp_path / "big.onnx", size=512), size=512)
    capped = create_app([bundle], ServeConfig(max_batch=4, max_batch_bytes=12 * MB, spinning="off"))
    state = capped.state.edgeship
    row = next(p.bytes for p in state.memory_plan.parts if p.name == "tiny: first run")
    rows = state.models["tiny"].worker.capacity
    assert row > 4 * MB, row  # measured: the conv's output alone is 8 MiB
    assert rows == max(1, min(4, 12 * MB // row)) < 4
    assert state.models["tiny"].worker.in_flight == 4 + ServeConfig().prep_threads  # input rows: as max_batch sets
    batch = [p.name for p in state.memory_plan.parts if "batch of" in p.name]
    assert batch == ([f"tiny: batch of {rows}"] if rows > 1 else [])

    async def config(client):
        return (await client.get("/v2/models/tiny/config")).json()

    assert run(capped, config)["max_batch_size"] == rows  # what Triton clients are told
    uncapped = create_app([bundle], ServeConfig(max_batch=4, max_batch_bytes=0, spinning="off"))
    assert uncapped.state.edgeship.models["tiny"].worker.capacity == 4


def test_a_plan_over_budget_is_refused_in_process_naming_the_parts(classifier_bundle):
    with pytest.raises(MemoryBudgetError) as err:
        create_app([classifier_bundle], ServeConfig(memory_budget=64 * MB))
    text = str(err.value)
    assert "does not fit the memory budget of 64 MB" in text and "process before models" in text
    assert "picture decodes at the pixel limit" in text and "lower --max-decode-mb, --max-pixels or --prep-threads" in text
    assert "(memory budget: --memory-budget)" in text


@pytest.mark.slow
def test_the_cli_refuses_a_budget_too_small_with_exit_2(classifier_bundle):
    done = subprocess.run([sys.executable, "-m", "edgeship.cli", "serve", str(classifier_bundle),
                           "--memory-budget", "80M", "--port", "9"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    err = " ".join(done.stderr.split())  # rich wraps long lines
    assert "does not fit the memory budget of 80 MB" in err and "picture decodes at the pixel limit" in err
    assert "--max-pixels" in err and "Raise --memory-budget" in err


@pytest.mark.slow
def test_a_budget_that_fits_starts_and_shows_planned_against_measured(classifier_bundle):
    srv = ServerProcess([classifier_bundle], "--memory-budget", "1G", "--max-pixels", "2000000").wait_live()
    try:
        budget = httpx.get(srv.url + "/v1/budget", timeout=10).json()
        metrics = httpx.get(srv.url + "/metrics", timeout=10).text
    finally:
        srv.stop()
    assert budget["fits"] is True and budget["budget_bytes"] == 1 << 30 and budget["budget_source"] == "--memory-budget"
    rss = budget["measured"]["rss_bytes"]
    assert rss > 0 and budget["resident_bytes"] > 0 and budget["resident_vs_measured"] == round(budget["resident_bytes"] / rss, 3)
    # the plan was measured in this very process, at start: what it holds now is about what it planned
    assert 0.8 < budget["resident_vs_measured"] < 1.2
    assert "memory: planned" in srv.output() and "measured RSS" in srv.output()
    assert "edgeship_memory_planned_resident_bytes" in metrics


def test_budget_sizes_and_shares(monkeypatch):
    assert parse_budget("512M") == 512 * MB and parse_budget("1.5G") == int(1.5 * 1024 * MB)
    assert parse_budget("800000000") == 800000000 and parse_budget("60%") == 0.6 and parse_budget("256MB") == 256 * MB
    for bad in ("lots", "0", "-5M", "150%", "0%", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a size like 512M"):
            parse_budget(bad)
    assert Budget.resolve(None, ram=1000 * MB) == Budget(750 * MB, "default: 75% of 1000 MB of RAM")
    assert Budget.resolve(0.5, ram=1000 * MB).bytes == 500 * MB and Budget.resolve(123, ram=None).bytes == 123
    monkeypatch.setattr("edgeship.serve.budget.physical_memory_bytes", lambda: None)
    assert Budget.resolve(None).bytes is None  # a system that does not say: nothing to check against
    for bad in (0, -1, 1.5, "1G", True):
        with pytest.raises(InputError, match="memory_budget: expected bytes"):
            ServeConfig(memory_budget=bad)


def test_the_llm_kv_cache_is_planned_before_it_is_loaded_and_a_context_too_big_is_refused(classifier_bundle):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from edgeship.llm.openai_api import LLMService
    from tests.llm.conftest import build_tiny_gguf

    path = build_tiny_gguf(classifier_bundle.parent / "tiny-llm.gguf")  # 2 layers, 2 KV heads of 32
    small = LLMService(path, n_ctx=256)
    parts = {p.name: p for p in small.memory_parts()}
    kv = parts["llm tiny-llm: KV cache for 256 tokens"]
    assert kv.bytes == 2 * 256 * (32 + 32) * 2 * 2 and kv.source.value == "computed"
    assert parts["llm tiny-llm: weights"].bytes == path.stat().st_size
    # The budget is this process's own size plus room: under the full suite the test process holds
    # torch and more, which the plan counts as "process before models".
    from edgeship.util import rss

    budget = rss() + 256 * MB
    app = create_app([classifier_bundle], ServeConfig(max_pixels=1_000_000, memory_budget=budget), llm=small)
    assert "llm tiny-llm: KV cache for 256 tokens" in [p.name for p in app.state.edgeship.memory_plan.parts]
    huge = LLMService(path, n_ctx=1 << 20)
    with pytest.raises(MemoryBudgetError) as err:
        create_app([classifier_bundle], ServeConfig(max_pixels=1_000_000, memory_budget=budget), llm=huge)
    assert "KV cache for 1048576 tokens" in str(err.value) and "lower --llm-ctx" in str(err.value)


def test_decode_priority_low_lowers_the_decode_threads_only(classifier_bundle):
    import os

    def nices(app):
        return {os.getpriority(os.PRIO_PROCESS, w.thread.native_id) for w in app.state.edgeship.prep_pool._workers}

    base = os.getpriority(os.PRIO_PROCESS, 0)
    normal = create_app([classifier_bundle], ServeConfig(spinning="off"))
    assert normal.state.edgeship.decoding is None and nices(normal) == {base}
    low = create_app([classifier_bundle], ServeConfig(spinning="off", decode_priority="low"))
    if sys.platform.startswith("linux"):
        assert low.state.edgeship.decoding == f"{ServeConfig().prep_threads} threads at nice 10 (--decode-priority low)"
        assert nices(low) == {max(base, 10)}
    assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the server's other threads keep theirs
    with pytest.raises(InputError, match="decode_priority: expected one of normal, low, got 'auto'"):
        ServeConfig(decode_priority="auto")
