"""Edge guards: bodies read whole at a minimum rate before a model slot is taken, load shedding
(429 over N in flight), and a failed bundle load named on /readyz."""

from __future__ import annotations

import asyncio
import time

from jewelry_pipeline.serving.json_answers import SafeJSONResponse, error_answer


class BodyFirst:
    """ASGI middleware: the body of a POST to `paths` is read whole before the request goes on,
    at `min_bytes_per_s` on average after `grace_s`; a slower or stalled body is a 408.

    Behind it the load shedding counts only requests whose photo has arrived, so slow uploads
    cannot hold the model slots (found: 7 uploads at ~50 bytes/s kept 3 slots for 30 s). The body
    is bounded by the body-size cap outside this middleware.
    """

    def __init__(self, app, paths: tuple[str, ...], grace_s: float, min_bytes_per_s: float):
        self.app = app
        self.paths = tuple(paths)
        self.grace_s = float(grace_s)
        self.min_bytes_per_s = float(min_bytes_per_s)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        started, chunks, received = time.monotonic(), [], 0
        while True:
            allowed = self.grace_s + received / self.min_bytes_per_s
            try:
                message = await asyncio.wait_for(
                    receive(), max(0.0, started + allowed - time.monotonic())
                )
            except TimeoutError:
                answer = error_answer(
                    408,
                    f"the request body came slower than {self.min_bytes_per_s:.0f} bytes/s "
                    f"(after {self.grace_s:.0f} s): send it faster or smaller",
                    "body_too_slow",
                    headers={"Connection": "close"},
                )
                return await answer(scope, receive, send)
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        return await self.app(scope, replaying(body, receive), send)


def replaying(body: bytes, receive):
    """An ASGI `receive` that gives `body` whole once, then the connection's own messages."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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
