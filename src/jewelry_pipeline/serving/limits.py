"""Edge guards: load shedding (429 over N in flight), and a failed bundle load named on /readyz."""

from __future__ import annotations

from jewelry_pipeline.serving.json_answers import SafeJSONResponse


class ConcurrencyLimit:
    """ASGI middleware: a request to `paths` over `max_concurrency` in flight is answered 429.

    Health, metrics, the page, thumbnails and the internal model endpoint are never limited.
    """

    def __init__(self, app, max_concurrency: int, paths: tuple[str, ...]):
        self.app = app
        self.max_concurrency = int(max_concurrency)
        self.paths = tuple(paths)
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.max_concurrency:
            response = SafeJSONResponse(
                {
                    "error": f"over {self.max_concurrency} requests in flight; retry shortly",
                    "reason": "too_many_requests",
                },
                status_code=429,
                headers={"Retry-After": "1"},
            )
            return await response(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class LoadFailure:
    """ASGI middleware: once the bundle has failed to load, `/readyz` answers 503 with the cause as
    JSON.

    BentoML's own probe would only say "not ready", which reads like "still loading"; `failure()`
    returns the cause, or None while loading or once loaded.
    """

    def __init__(self, app, failure):
        self.app = app
        self.failure = failure

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/readyz" and (cause := self.failure()):
            response = SafeJSONResponse(
                {"error": f"the model bundle failed to load: {cause}", "reason": "load_failed"},
                status_code=503,
            )
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
