"""The admin API: versions, update check, rollback, pin. Off unless a token file is given.

    curl -H "Authorization: Bearer $(cat token)" -X POST http://127.0.0.1:8000/admin/models/tiny/rollback

Every endpoint needs ``Authorization: Bearer TOKEN`` (compared in constant time): none or a
malformed header answers 401, a wrong token 403, both with a JSON body. Without
``--admin-token-file`` the routes answer 404: an unconfigured device exposes nothing.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import stat
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse

from .._routes import Routes
from ..errors import InputError
from .errors import ApiError


def read_token(path: str | os.PathLike) -> str:
    p = Path(path)
    try:
        mode = p.stat().st_mode
        token = p.read_text().strip()
    except OSError as exc:
        raise InputError(f"{p}: admin token file unreadable ({exc})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"{p}: the admin token file is readable by others; chmod 600 {p}")
    if len(token) < 16:
        raise InputError(f"{p}: the admin token must be at least 16 characters")
    return token


def create_admin_router(state, token: str | None) -> Routes:
    router = Routes(tag="admin")
    secret = token.encode() if token else None

    def authorize(request: Request):
        if secret is None:
            raise ApiError(404, "the admin API is off (start the server with --admin-token-file)", "not_found")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "missing bearer token (Authorization: Bearer TOKEN)", "unauthorized",
                           {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), secret):
            raise ApiError(403, "wrong admin token", "forbidden")
        ota = getattr(state, "ota", None)
        if ota is None:
            raise ApiError(409, "updates are off (start the server with --ota URL)", "conflict")
        name = request.path_params["name"]
        state.lookup(name)
        return ota, name

    @router.get("/admin/models/{name}/versions")
    async def versions(request: Request) -> JSONResponse:
        ota, name = authorize(request)
        return JSONResponse({"model": name, **ota.card(name), "history": [h for h in ota.history
                                                                          if h["model"] == name]})

    @router.post("/admin/models/{name}/check")
    async def check(request: Request) -> JSONResponse:
        ota, name = authorize(request)

        def run():
            with ota.lock:
                return ota.agent.check_logged(name)

        result = await asyncio.to_thread(run)
        return JSONResponse({"model": name, "result": result, **ota.card(name)})

    @router.post("/admin/models/{name}/rollback")
    async def rollback(request: Request) -> JSONResponse:
        ota, name = authorize(request)

        def run():
            with ota.lock:
                return ota.agent.rollback(ota.store.record(name), "rolled back through the admin API")

        try:
            result = await asyncio.to_thread(run)
        except Exception as exc:  # noqa: BLE001  e.g. no previous version
            raise ApiError(409, str(exc), "conflict") from exc
        return JSONResponse({"model": name, "result": result, **ota.card(name)})

    @router.post("/admin/models/{name}/pin")
    async def pin(request: Request) -> JSONResponse:
        ota, name = authorize(request)
        try:
            body = await request.json()
            version = body.get("version") if isinstance(body, dict) else None
        except ValueError:
            version = None
        rec = ota.store.record(name)
        current = rec.committed.version if rec.committed else None
        version = version or current
        if version != current:
            raise ApiError(409, f"can pin only the committed version {current} (roll back first to pin an older one)",
                           "conflict")
        with ota.lock:
            ota.store.save(ota.store.record(name).replace(pinned=version))
        return JSONResponse({"model": name, **ota.card(name)})

    @router.delete("/admin/models/{name}/pin")
    async def unpin(request: Request) -> JSONResponse:
        ota, name = authorize(request)
        with ota.lock:
            ota.store.save(ota.store.record(name).replace(pinned=None))
        return JSONResponse({"model": name, **ota.card(name)})

    return router
