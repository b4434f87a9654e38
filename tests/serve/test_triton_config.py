"""Triton's model configuration of a graph exported with a fixed batch, in-process (ASGI), no torch."""

from __future__ import annotations

import asyncio

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

from tests.support import build_tiny_classifier, make_tiny_bundle  # noqa: E402


def test_a_fixed_batch_graph_has_max_batch_size_0_and_dims_with_the_batch_axis(tmp_path):
    from edgeship.serve.app import create_app
    from edgeship.serve.config import ServeConfig

    onnx_path = build_tiny_classifier(tmp_path / "fixed.onnx", dynamic_batch=False)
    bundle = make_tiny_bundle(tmp_path / "fixed", onnx_path)
    app = create_app([bundle.root], ServeConfig(prep_threads=1))

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return (await c.get("/v2/models/tiny/config")).json(), (await c.get("/v2/models/stats")).json()

    cfg, stats = asyncio.run(main())
    assert cfg["max_batch_size"] == 0 and "dynamic_batching" not in cfg
    assert cfg["input"][0]["dims"] == [1, 3, 16, 16] and cfg["output"][0]["dims"] == [1, 4]
    (stat,) = stats["model_stats"]  # listed before its first request, every count 0
    assert (stat["name"], stat["version"], stat["inference_count"]) == ("tiny", "3", 0)
    assert stat["inference_stats"]["success"] == {"count": 0, "ns": 0}
