"""The predict route is in the OpenAPI description (/docs/openapi.json), and still reads its own body."""

from __future__ import annotations

import asyncio

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

from tests.support import jpeg_bytes  # noqa: E402


def test_predict_is_described_with_its_bodies_and_answers(tiny_bundle):
    pytest.importorskip("swagger_ui_bundle")
    from edgeship.serve.app import create_app
    from edgeship.serve.config import ServeConfig

    app = create_app([tiny_bundle.root], ServeConfig(prep_threads=1, docs=True))

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            schema = (await c.get("/docs/openapi.json")).json()
            answer = await c.post("/v1/models/tiny/predict?top_k=2", content=jpeg_bytes(),
                                  headers={"content-type": "image/jpeg"})
            form = await c.post("/v1/models/tiny/predict", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")})
            return schema, answer, form

    schema, answer, form = asyncio.run(main())
    assert schema["openapi"].startswith("3.0.")  # the packaged Swagger UI (4.15) draws nothing of a 3.1 document
    op = schema["paths"]["/v1/models/{name}/predict"]["post"]
    body = op["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert body["image/jpeg"]["schema"]["format"] == "binary"
    assert {p["name"] for p in op["parameters"]} == {"name", "top_k"}
    assert {"200", "400", "404", "413", "415", "503"} <= set(op["responses"])
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "classes" in schema["components"]["schemas"][ok]["properties"]
    # Every $ref resolves in the document (a client generator would fail on a dangling one).
    refs = {v.rsplit("/", 1)[-1] for r in op["responses"].values() for v in _refs(r)}
    assert refs <= set(schema["components"]["schemas"])
    assert "/v2/models/{name}/config" in schema["paths"] and "/v2/repository/index" in schema["paths"]
    # Every route's operation: its path parameters, its tag, and the error shape its prefix answers.
    infer = schema["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["name", "version"] and infer["tags"] == ["kserve"]
    assert infer["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith("/V2Error")
    ready = schema["paths"]["/health/ready"]["get"]
    assert ready["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert "reasons" in ready["description"]
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert "/" not in schema["paths"] and "/docs" not in schema["paths"]  # hidden: the pages themselves
    assert {v.rsplit("/", 1)[-1] for v in _refs(schema)} <= set(schema["components"]["schemas"])
    # The route itself is unchanged: raw bytes and a multipart form both answer.
    assert answer.status_code == 200 and len(answer.json()["classes"]) == 2
    assert form.status_code == 200 and form.json()["model"] == "tiny"


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)
