"""Every use of BentoML's internals and every patch under it, in one place, written for
BentoML 1.4.39 (`WRITTEN_FOR`); tests/serving/test_bentoml_compat.py fails if an upgrade moves them.

- The batcher: BentoML's `CorkDispatcher`, the one behind `batchable` APIs. Only a one-argument
  API can be `batchable`, and `/recommend` takes `k` and `category`; the model call of all three
  routes shares one batcher, called in-process with the decoded arrays.
- Request timeout: BentoML's `TimeoutMiddleware` schedules `loop.call_later(timeout, ...)` for each
  request and never cancels it; the timer kept each request's objects alive for 30 s (~600,000
  objects at ~400 calls/s; full collections stalled the loop 300-500 ms). `cancel_request_timers`
  cancels it when the request ends; a timeout is still a 504, now JSON with a `reason` and the
  security headers.
- Header timeout: Uvicorn's httptools protocol has none; a connection that sent nothing, or its
  headers a line every two seconds, was held over a minute (#31). `install_header_timeout` closes a
  connection whose request head is not complete within the deadline.
- Route labels: BentoML's traffic metrics label series by the raw path, so made-up paths added
  series without bound; `label_metrics_by_route` gives them the route template (unknown paths:
  `UNMATCHED`), and `RestoreRequestPath`, the service's first middleware, puts the real path back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml._internal.server.http.instruments import (
    HTTPTrafficMetricsMiddleware,
    RunnerTrafficMetricsMiddleware,
)
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from jewelry_pipeline.serving.headers import DEFAULT_CACHE_CONTROL, SECURITY_HEADERS
from jewelry_pipeline.serving.json_answers import error_answer

logger = logging.getLogger(__name__)

WRITTEN_FOR = "1.4.39"
__all__ = [
    "WRITTEN_FOR",
    "CorkDispatcher",
    "RestoreRequestPath",
    "UNMATCHED",
    "cancel_request_timers",
    "install_header_timeout",
    "label_metrics_by_route",
    "leaf_routes",
    "route_template",
]


async def _call_with_cancelled_timer(
    self: TimeoutMiddleware, scope: dict, receive: Any, send: Any
) -> None:
    """`TimeoutMiddleware.__call__`, cancelling its timer once the request is over."""
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    response_started = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, response_started)

    async def _send(message: dict) -> None:
        if not response_started.done():
            response_started.set_result(None)
        await send(message)

    request = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        await response_started
    except TimeoutError:
        if request.cancel():
            # This middleware sits outside the app's own: the answer carries their headers itself.
            await error_answer(
                504,
                f"not able to process the request in {self.timeout} seconds",
                "timeout",
                headers={
                    **{name.decode(): value.decode() for name, value in SECURITY_HEADERS.items()},
                    "cache-control": DEFAULT_CACHE_CONTROL.decode(),
                },
            )(scope, receive, send)
    else:
        await request
    finally:
        timer.cancel()


def cancel_request_timers() -> None:
    """Make BentoML's timeout middleware cancel its per-request timer (idempotent)."""
    TimeoutMiddleware.__call__ = _call_with_cancelled_timer


def install_header_timeout(seconds: float) -> None:
    """Give Uvicorn's httptools protocol a header deadline of `seconds` (idempotent)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    if getattr(HttpToolsProtocol, "_jewelry_header_timeout", None) is not None:
        HttpToolsProtocol._jewelry_header_timeout = float(seconds)
        return
    made = HttpToolsProtocol.connection_made
    lost = HttpToolsProtocol.connection_lost
    begin = HttpToolsProtocol.on_message_begin
    complete = HttpToolsProtocol.on_headers_complete

    def start_deadline(protocol: Any) -> None:
        if getattr(protocol, "_header_deadline", None) is None:
            protocol._header_deadline = protocol.loop.call_later(
                HttpToolsProtocol._jewelry_header_timeout, protocol.timeout_keep_alive_handler
            )

    def stop_deadline(protocol: Any) -> None:
        deadline = getattr(protocol, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            protocol._header_deadline = None

    def connection_made(self, transport) -> None:
        made(self, transport)
        start_deadline(self)

    def connection_lost(self, exc) -> None:
        stop_deadline(self)
        lost(self, exc)

    def on_message_begin(self) -> None:
        begin(self)
        start_deadline(self)

    def on_headers_complete(self) -> None:
        stop_deadline(self)
        complete(self)

    HttpToolsProtocol._jewelry_header_timeout = float(seconds)
    HttpToolsProtocol.connection_made = connection_made
    HttpToolsProtocol.connection_lost = connection_lost
    HttpToolsProtocol.on_message_begin = on_message_begin
    HttpToolsProtocol.on_headers_complete = on_headers_complete
    logger.debug("Uvicorn header timeout: %.1f s", seconds)


UNMATCHED = "/{unmatched}"
# The scope key carrying the client's path past BentoML's outer middlewares.
REAL_PATH = "jewelry.real_path"


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
