"""Tests for the fix to BentoML's timeout middleware: request objects are freed at once, timeouts
still 504."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import importlib.util
import json
import weakref

import pytest
import uvloop
from bentoml._internal.server.http import traffic
from bentoml._internal.server.http.traffic import TimeoutMiddleware

from jewelry_pipeline.serving.bentoml_compat import (
    _call_with_cancelled_timer,
    cancel_request_timers,
)
from jewelry_pipeline.serving.headers import SECURITY_HEADERS

REQUEST_STATE: contextvars.ContextVar = contextvars.ContextVar("request_state")


class RequestState:
    """Stands for what outer middleware keeps in the request's context (request, span)."""


async def _ok_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _slow_app(scope, receive, send) -> None:
    await asyncio.sleep(5)


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _one_request(middleware: TimeoutMiddleware, sent: list[dict]) -> weakref.ref:
    """One request through the middleware in its own task context; a weak reference to its state."""

    async def send(message: dict) -> None:
        sent.append(message)

    async def request() -> weakref.ref:
        state = RequestState()
        REQUEST_STATE.set(state)
        await middleware({"type": "http", "path": "/"}, _receive, send)
        return weakref.ref(state)

    return await asyncio.create_task(request())


def _run(coroutine):
    with asyncio.Runner(
        loop_factory=uvloop.new_event_loop
    ) as runner:  # BentoML's server runs on uvloop
        return runner.run(coroutine)


@pytest.fixture
def patched_middleware(monkeypatch):
    monkeypatch.setattr(
        TimeoutMiddleware, "__call__", TimeoutMiddleware.__call__
    )  # restored after the test
    cancel_request_timers()
    assert TimeoutMiddleware.__call__ is _call_with_cancelled_timer


def _state_alive_after_request(middleware_class: type, app) -> bool:
    async def scenario() -> bool:
        ref = await _one_request(middleware_class(app, timeout=30), [])
        await asyncio.sleep(
            0
        )  # let the loop drop the callback handle that resumed us (it holds the task)
        gc.collect()
        return ref() is not None

    return _run(scenario())


def test_bentoml_middleware_keeps_request_state_alive_for_the_timeout():
    """The defect the fix exists for, shown on a fresh, unpatched copy of BentoML's module."""
    spec = importlib.util.spec_from_file_location("bentoml_traffic_unpatched", traffic.__file__)
    unpatched = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unpatched)
    assert _state_alive_after_request(unpatched.TimeoutMiddleware, _ok_app)


def test_request_state_is_freed_when_the_request_ends(patched_middleware):
    assert not _state_alive_after_request(TimeoutMiddleware, _ok_app)


def test_answer_passes_through(patched_middleware):
    sent: list[dict] = []
    _run(_one_request(TimeoutMiddleware(_ok_app, timeout=30), sent))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"


def test_timeout_still_answers_504_json(patched_middleware):
    sent: list[dict] = []
    _run(_one_request(TimeoutMiddleware(_slow_app, timeout=0.05), sent))
    assert sent[0]["status"] == 504
    body = json.loads(sent[1]["body"])
    assert "0.05 seconds" in body["error"] and body["reason"] == "timeout"
    # The timeout middleware sits outside the app's security headers: its answer carries them.
    headers = dict(sent[0]["headers"])
    assert all(headers.get(name) == value for name, value in SECURITY_HEADERS.items()), headers
    assert headers[b"cache-control"] == b"no-store"


def test_the_bentoml_these_patches_were_written_for_is_installed():
    """Fails on a BentoML upgrade on purpose: check each patch of bentoml_compat.py against the
    new version's code, then move WRITTEN_FOR (and the pin) together."""
    import bentoml

    from jewelry_pipeline.serving.bentoml_compat import WRITTEN_FOR

    assert bentoml.__version__ == WRITTEN_FOR


def test_what_the_patches_replace_is_where_they_expect_it():
    """Each internal the patches read or replace still exists with the shape they use."""
    import inspect

    from bentoml._internal.server.http.instruments import (
        HTTPTrafficMetricsMiddleware,
        RunnerTrafficMetricsMiddleware,
    )
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from jewelry_pipeline.serving.bentoml_compat import CorkDispatcher

    assert "timeout" in inspect.signature(TimeoutMiddleware.__init__).parameters
    assert callable(TimeoutMiddleware._set_timer_out)
    for middleware in (HTTPTrafficMetricsMiddleware, RunnerTrafficMetricsMiddleware):
        assert inspect.iscoroutinefunction(middleware.__call__)
    for name in (
        "connection_made",
        "connection_lost",
        "on_message_begin",
        "on_headers_complete",
        "timeout_keep_alive_handler",
    ):
        assert callable(getattr(HttpToolsProtocol, name)), name
    cork = inspect.signature(CorkDispatcher.__init__).parameters
    assert list(cork)[1:3] == ["max_latency_in_ms", "max_batch_size"]
    assert {"fallback", "get_batch_size"} <= set(cork)
