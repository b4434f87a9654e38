"""The live dashboard, served by edgeship itself (no CDN: devices are often offline).

    GET /                            the page (charts: uPlot 1.6, vendored under static/uplot with its licence)
    GET /status[?history=1]          the JSON the page polls every second (also `edgeship monitor`)
    GET /static/uplot/{file}         uPlot's script, stylesheet and licence

The page polls ``/status`` once a second and draws latency p50/p99, throughput, queue depth,
temperature and clock over the last five minutes, with the firmware's throttle flags, the
governor's state and decisions, and the models with their versions.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse

from .._routes import Routes
from .errors import ApiError

STATIC = Path(__file__).with_name("static")
UPLOT_FILES = {"uPlot.iife.min.js": "text/javascript", "uPlot.min.css": "text/css", "LICENSE": "text/plain",
               "SOURCE.txt": "text/plain"}


def create_dashboard_router(live) -> Routes:
    router = Routes(tag="server")
    page = (STATIC / "dashboard.html").read_bytes()

    @router.get("/", include_in_schema=False)
    async def dashboard(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @router.get("/status")
    async def status(request: Request) -> JSONResponse:
        history = request.query_params.get("history") in ("1", "true")
        return JSONResponse(live.snapshot(history=history), headers={"Cache-Control": "no-store"})

    @router.get("/static/uplot/{file}", include_in_schema=False)
    async def uplot(request: Request) -> FileResponse:
        file = request.path_params["file"]
        if file not in UPLOT_FILES:  # a fixed list: no path from the request reaches the filesystem
            raise ApiError(404, f"no static file {file!r}")
        return FileResponse(STATIC / "uplot" / file, media_type=UPLOT_FILES[file],
                            headers={"Cache-Control": "public, max-age=86400"})

    return router
