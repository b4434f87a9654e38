"""Routes on Starlette alone, declared the way the routers read best::

    routes = Routes(tag="kserve")

    @routes.get("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
    async def metadata(request: Request) -> JSONResponse:
        ...

    app = Starlette(routes=[*routes, *other_routes])

Each handler takes the request and returns a Response; path parameters are in
``request.path_params``. The server is built on Starlette without FastAPI: FastAPI's import
(pydantic's models of the OpenAPI document among it) made 16 MB of the server's memory, and
the handlers here use none of its parameter parsing. The OpenAPI document is written from these
routes by serve/openapi.py.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette import routing
from starlette.types import Scope


class Route(routing.Route):
    """A Starlette route that puts itself in the request's scope (``scope["route"]``), where the
    request counter reads the path template it labels by; ``tag`` and ``operation`` are for the
    OpenAPI document (``operation``: the route's OpenAPI operation, written by hand)."""

    def __init__(self, path: str, endpoint: Callable, *, methods: list[str], tag: str = "",
                 include_in_schema: bool = True, operation: dict[str, Any] | None = None):
        super().__init__(path, endpoint, methods=methods, include_in_schema=include_in_schema)
        self.tag, self.operation = tag, operation

    def matches(self, scope: Scope) -> tuple[routing.Match, Scope]:
        match, child = super().matches(scope)
        if match is not routing.Match.NONE:
            child["route"] = self
        return match, child


class Routes(list):
    """A list of Routes filled by decorators: ``@routes.get(path, *more_paths)``, ``.post``, ``.delete``."""

    def __init__(self, tag: str = ""):
        super().__init__()
        self.tag = tag

    def add(self, method: str, *paths: str, include_in_schema: bool = True,
            operation: dict[str, Any] | None = None) -> Callable[[Callable], Callable]:
        def register(endpoint: Callable) -> Callable:
            self.extend(Route(p, endpoint, methods=[method], tag=self.tag, include_in_schema=include_in_schema,
                              operation=operation) for p in paths)
            return endpoint

        return register

    def get(self, *paths: str, include_in_schema: bool = True) -> Callable[[Callable], Callable]:
        return self.add("GET", *paths, include_in_schema=include_in_schema)

    def post(self, *paths: str, include_in_schema: bool = True,
             operation: dict[str, Any] | None = None) -> Callable[[Callable], Callable]:
        return self.add("POST", *paths, include_in_schema=include_in_schema, operation=operation)

    def delete(self, *paths: str) -> Callable[[Callable], Callable]:
        return self.add("DELETE", *paths)


__all__ = ["Route", "Routes"]
