"""A minimal server for the LLM tests: the LLM router, /v1/models, /health/ready and /metrics, under uvicorn.

    python tests/llm/serve_app.py MODEL --port 8123 [--threads 1] [--ctx 2048]

The real `edgeship serve --llm` mounts the same router; this app keeps the LLM tests independent of
the vision server.
"""

from __future__ import annotations

import argparse
import contextlib

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from edgeship.llm.openai_api import LLMService, create_llm_router


def build_app(model: str, n_ctx: int, threads: int | None, queue_size: int) -> FastAPI:
    registry = CollectorRegistry()
    service = LLMService(model, n_ctx=n_ctx, n_threads=threads, queue_size=queue_size, registry=registry)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(lifespan=lifespan)
    app.include_router(create_llm_router(service))

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [service.model_card()]}

    @app.get("/health/ready")
    async def ready():
        ok, reason = service.ready()
        return JSONResponse({"ok": ok, "reason": reason}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--queue-size", type=int, default=8)
    a = p.parse_args()
    uvicorn.run(build_app(a.model, a.ctx, a.threads, a.queue_size), host="127.0.0.1", port=a.port,
                log_level="warning", access_log=False)
