"""Request metrics labelled by route template, never by the raw path a client sent.

BentoML 1.4's traffic metrics label every series with `scope["path"]`, so each distinct item id (or
any path a client makes up) created new series without bound. `label_metrics_by_route` makes them
see the route template (`/items/{item_id}/thumbnail`; unknown paths as `UNMATCHED`), and
`RestoreRequestPath`, the first of the service's own middlewares, puts the real path back before
routing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bentoml._internal.server.http.instruments import (
    HTTPTrafficMetricsMiddleware,
    RunnerTrafficMetricsMiddleware,
)

UNMATCHED = "/{unmatched}"
REAL_PATH = (
    "jewelry.real_path"  # scope key carrying the client's path past BentoML's outer middlewares
)


def leaf_routes(routes: list[Any]) -> list[Any]:
    """Routes with a `path_regex`, through routers included in others (FastAPI's `_IncludedRouter`,
    as `bentoml.asgi_app` binds the class's routes, keeps them under `original_router`)."""
    leaves = []
    for route in routes:
        if getattr(route, "path_regex", None) is not None:
            leaves.append(route)
        children = getattr(route, "routes", None) or getattr(
            getattr(route, "original_router", None), "routes", None
        )
        leaves.extend(leaf_routes(list(children or [])))
    return leaves


def route_template(path: str, routes: list[Any], exact: tuple[str, ...]) -> str:
    """The template of the route (of `leaf_routes`) that serves `path`, a known exact path, or
    `UNMATCHED`."""
    if path in exact:
        return path
    for route in routes:
        if route.path_regex.match(path):
            return route.path
    return UNMATCHED


def label_metrics_by_route(template: Callable[[str], str]) -> None:
    """Make BentoML's traffic-metrics middlewares label requests by `template(path)`
    (idempotent)."""
    for middleware in (RunnerTrafficMetricsMiddleware, HTTPTrafficMetricsMiddleware):
        original = getattr(middleware.__call__, "__wrapped_by_route__", middleware.__call__)

        async def labelled_call(
            self, scope: dict, receive: Any, send: Any, _original=original
        ) -> None:
            if scope.get("type") != "http" or REAL_PATH in scope:
                return await _original(self, scope, receive, send)
            labelled = {
                **scope,
                "path": template(scope["path"]),
                REAL_PATH: (scope["path"], scope.get("raw_path")),
            }
            return await _original(self, labelled, receive, send)

        labelled_call.__wrapped_by_route__ = original
        middleware.__call__ = labelled_call


class RestoreRequestPath:
    """ASGI middleware: gives routing back the client's path that `label_metrics_by_route`
    replaced."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if REAL_PATH in scope:
            scope = dict(scope)
            scope["path"], scope["raw_path"] = scope.pop(REAL_PATH)
        return await self.app(scope, receive, send)
