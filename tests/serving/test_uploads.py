"""Edge checks without a server: form parsing, field rules, body cap and load shedding."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from jewelry_pipeline.core.images import ImageRejected
from jewelry_pipeline.serving.limits import BodyFirst, ConcurrencyLimit
from jewelry_pipeline.serving.uploads import (
    ApiError,
    BodySizeLimit,
    CheckedBodies,
    check_item_query,
    check_photo_form,
    form_value,
    image_field,
    int_field,
    json_object,
    one_value,
    read_form,
    rejected_upload,
    text_field,
)


async def _echo(request: Request) -> JSONResponse:
    try:
        form = await read_form(request, max_bytes=10_000)
        data = await image_field(form)
        k = int_field(one_value(form, "k"), "k", 10, 1, 50)
    except ApiError as exc:
        return exc.response()
    return JSONResponse({"bytes": len(data), "k": k})


async def _json_echo(request: Request) -> JSONResponse:
    try:
        body = await json_object(request, max_bytes=1_000)
    except ApiError as exc:
        return exc.response()
    return JSONResponse(body)


@pytest.fixture
def client() -> TestClient:
    app = Starlette(
        routes=[
            Route("/upload", _echo, methods=["POST"]),
            Route("/json", _json_echo, methods=["POST"]),
        ]
    )
    return TestClient(BodySizeLimit(app, limit=lambda: 20_000))


def test_a_file_upload_is_read(client):
    response = client.post(
        "/upload", files={"image": ("a.jpg", b"x" * 500, "image/jpeg")}, data={"k": "7"}
    )
    assert response.json() == {"bytes": 500, "k": 7}


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"files": {"k": (None, "3")}}, 400, "missing_field"),
        ({"files": {"image": (None, "http://127.0.0.1:9/x.jpg")}}, 400, "wrong_field_type"),
        ({"data": {"image": "x"}}, 415, "unsupported_media_type"),
        ({"files": {"image": ("a", b"x", "image/png")}, "data": {"k": "0"}}, 400, "out_of_range"),
        (
            {"files": {"image": ("a", b"x", "image/png")}, "data": {"k": "ten"}},
            400,
            "wrong_field_type",
        ),
        (
            {"files": {"image": ("a", b"x", "application/python-pickle")}},
            415,
            "unsupported_media_type",
        ),
        (
            {
                "content": b"\x80\x04K\x01.",
                "headers": {"content-type": "application/python-pickle"},
            },
            415,
            "unsupported_media_type",
        ),
        ({"json": {"image": "x"}}, 415, "unsupported_media_type"),
        (
            {
                "content": b"--b\r\nnot a form",
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
            400,
            "malformed_form",
        ),
    ],
)
def test_bad_requests_get_a_json_4xx(client, kwargs, status, reason):
    response = client.post("/upload", **kwargs)
    assert response.status_code == status
    assert response.json()["reason"] == reason and response.json()["error"]


def test_a_declared_oversized_body_is_refused_before_parsing(client):
    response = client.post("/upload", files={"image": ("a", b"x" * 30_000, "image/png")})
    assert response.status_code == 413 and response.json()["reason"] == "too_large"


def test_a_streamed_oversized_body_is_cut_off_at_the_cap(client):
    def chunks():
        for _ in range(50):
            yield b"y" * 1000

    response = client.post(
        "/upload", content=chunks(), headers={"content-type": "multipart/form-data; boundary=zz"}
    )
    assert response.status_code == 413


def test_a_repeated_field_is_refused_not_one_of_them_chosen(client):
    response = client.post(
        "/upload",
        files=[("image", ("a.jpg", b"x", "image/jpeg")), ("k", (None, "3")), ("k", (None, "40"))],
    )
    assert response.status_code == 400 and response.json()["reason"] == "repeated_field"
    repeated_key = client.post(
        "/json", content=b'{"k": 3, "k": 40}', headers={"content-type": "application/json"}
    )
    assert repeated_key.status_code == 400 and repeated_key.json()["reason"] == "repeated_field"


def test_a_json_body_is_refused_at_its_cap_without_being_read_whole(client):
    assert client.post("/json", json={"item_id": "a"}).json() == {"item_id": "a"}
    declared = client.post("/json", content=b"{}" + b" " * 2_000)
    assert declared.status_code == 413 and declared.json()["reason"] == "too_large"
    received = []

    async def receive():  # 15,000 bytes offered in 1,000-byte messages, no Content-Length
        received.append(1)
        return {"type": "http.request", "body": b" " * 1000, "more_body": len(received) < 15}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]}
    with pytest.raises(ApiError) as refused:
        asyncio.run(json_object(Request(scope, receive), max_bytes=1_000))
    assert refused.value.status == 413 and len(received) == 2


def test_decoder_reasons_map_to_statuses():
    assert rejected_upload(ImageRejected("too_large", "x")).status == 413
    assert rejected_upload(ImageRejected("unsupported_format")).status == 415
    assert rejected_upload(ImageRejected("not_an_image")).status == 415
    assert rejected_upload(ImageRejected("truncated")).status == 400
    assert rejected_upload(ImageRejected("corrupt")).status == 400


def test_field_helpers():
    assert int_field(None, "k", 10, 1, 50) == 10
    assert int_field("12", "k", 10, 1, 50) == int_field(12, "k", 10, 1, 50) == 12
    assert int_field("-1", "cluster", 0, -1, 9) == -1
    # Plain ASCII digits only: what int() would also take is refused.
    for loose in (" 12 ", "1_0", "\u0665", "+5", "5.0", True, 5.0, ["5"]):
        with pytest.raises(ApiError) as refused:
            int_field(loose, "k", 10, 1, 50)
        assert refused.value.reason == "wrong_field_type", loose
    assert text_field("", "category") is None
    assert text_field("ring", "category") == "ring"


def test_concurrency_limit_sheds_load_with_429_and_spares_other_paths():
    release = asyncio.Event()
    answers: list[int] = []

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = ConcurrencyLimit(slow_app, max_concurrency=2, paths=("/recommend",))

    async def call(path: str) -> int:
        sent = []

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            sent.append(message)

        await limited({"type": "http", "path": path, "headers": []}, receive, send)
        return sent[0]["status"]

    async def scenario():
        first = [asyncio.create_task(call("/recommend")) for _ in range(2)]
        await asyncio.sleep(0.01)
        answers.append(await call("/recommend"))  # over the limit: answered at once
        other = asyncio.create_task(
            call("/catalog")
        )  # not limited: runs while the limit is reached
        await asyncio.sleep(0.01)
        release.set()
        answers.extend(await asyncio.gather(*first, other))
        answers.append(await call("/recommend"))  # capacity is back

    asyncio.run(scenario())
    assert answers == [429, 200, 200, 200, 200]


async def _body_echo(scope, receive, send):
    """An app that reads the whole body and answers its length."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _trickle(pieces: int, size: int, pause_s: float):
    """An ASGI `receive` that sends `pieces` messages of `size` bytes, `pause_s` apart."""
    sent = 0

    async def receive():
        nonlocal sent
        await asyncio.sleep(pause_s)
        sent += 1
        return {"type": "http.request", "body": b"x" * size, "more_body": sent < pieces}

    return receive


async def _post(app, path: str, receive) -> tuple[int, bytes]:
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_body_is_read_whole_first_and_a_slow_one_is_a_408():
    app = BodyFirst(_body_echo, paths=("/recommend",), grace_s=0.2, min_bytes_per_s=10_000)
    assert asyncio.run(_post(app, "/recommend", _trickle(5, 1000, 0.01))) == (200, b"5000")
    # 10 bytes every 0.1 s: under 10,000 bytes/s, refused once the grace is spent.
    started = time.monotonic()
    status, body = asyncio.run(_post(app, "/recommend", _trickle(1000, 10, 0.1)))
    assert status == 408 and json.loads(body)["reason"] == "body_too_slow"
    assert time.monotonic() - started < 2
    # Other paths stream through untouched, however slowly.
    assert asyncio.run(_post(app, "/catalog", _trickle(3, 10, 0.15))) == (200, b"30")


def test_slow_uploads_hold_no_model_slot():
    """Twice as many slow uploads as slots, while normal requests keep getting 200: the slots are
    taken only once a body has arrived."""
    limited = ConcurrencyLimit(_body_echo, max_concurrency=2, paths=("/recommend",))
    app = BodyFirst(limited, paths=("/recommend",), grace_s=0.5, min_bytes_per_s=1_000)

    async def scenario():
        slow = [
            asyncio.create_task(_post(app, "/recommend", _trickle(100, 1, 0.05))) for _ in range(4)
        ]
        await asyncio.sleep(0.1)
        normal = [await _post(app, "/recommend", _trickle(1, 100, 0)) for _ in range(5)]
        return normal, await asyncio.gather(*slow)

    normal, slow = asyncio.run(scenario())
    assert normal == [(200, b"100")] * 5
    assert [status for status, _ in slow] == [408] * 4


def _checked_client(seen: list[bytes]) -> TestClient:
    """`CheckedBodies` over an app that records the bodies it is given."""

    async def record(request: Request) -> JSONResponse:
        seen.append(await request.body())
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[Route(path, record, methods=["POST", "GET"]) for path in ("/photo", "/item")]
    )
    checks = {
        "/photo": lambda request: check_photo_form(
            request, 10_000, {"k": lambda raw: int_field(raw, "k", 10, 1, 50)}
        ),
        "/item": lambda request: check_item_query(request, (10, 1, 50)),
    }
    return TestClient(CheckedBodies(app, checks=checks))


@pytest.mark.parametrize(
    "path, kwargs, status, reason",
    [
        (
            "/photo",
            {"files": {"image": (None, "http://127.0.0.1:9/a.jpg")}},
            400,
            "wrong_field_type",
        ),
        (
            "/photo",
            {"files": {"image": ("a.jpg", b"x")}, "data": {"k": " 5 "}},
            400,
            "wrong_field_type",
        ),
        (
            "/photo",
            {"files": {"image": ("a.jpg", b"x")}, "data": {"k": "1_0"}},
            400,
            "wrong_field_type",
        ),
        ("/photo", {"files": {"image": ("a" * 201 + ".jpg", b"x")}}, 400, "bad_filename"),
        (
            "/photo",
            {
                "content": b'--b\r\nContent-Disposition: form-data; name="image"; '
                b'filename="a\x00.jpg"\r\n\r\nx\r\n--b--\r\n',
                "headers": {"content-type": "multipart/form-data; boundary=b"},
            },
            400,
            "bad_filename",
        ),
        ("/photo", {"json": {"image": "x"}}, 415, "unsupported_media_type"),
        ("/item", {"json": {"item_id": True}}, 400, "wrong_field_type"),
        ("/item", {"json": {"item_id": "a", "k": 51}}, 400, "out_of_range"),
        ("/item", {"content": b'{"item_id": "a", "item_id": "b"}'}, 400, "repeated_field"),
    ],
)
def test_a_checked_body_that_fails_is_refused_and_never_reaches_the_route(
    path, kwargs, status, reason
):
    """What BentoML's lenient parser would take (or fetch) is refused before it sees the body."""
    seen: list[bytes] = []
    response = _checked_client(seen).post(path, **kwargs)
    assert (response.status_code, response.json()["reason"]) == (status, reason)
    assert seen == []


def test_a_checked_body_that_passes_reaches_the_route_unchanged():
    seen: list[bytes] = []
    client = _checked_client(seen)
    photo = client.post("/photo", files={"image": ("a.jpg", b"jpeg")}, data={"k": "7"})
    body = b'{"item_id": 3, "k": "4"}'
    item = client.post("/item", content=body, headers={"content-type": "application/json"})
    assert photo.status_code == item.status_code == 200
    assert b"jpeg" in seen[0] and b'name="k"' in seen[0] and seen[1] == body


def test_a_wrong_method_on_a_checked_route_is_a_json_405():
    seen: list[bytes] = []
    response = _checked_client(seen).get("/photo")
    assert response.status_code == 405 and response.json()["reason"] == "method_not_allowed"
    assert response.headers["allow"] == "POST" and seen == []


def test_form_values_are_read_as_bentoml_reads_them():
    """BentoML's client sends `category="ring"` as the JSON text `"ring"`; curl sends `ring`."""
    assert form_value('"ring"') == form_value("ring") == "ring"
    assert form_value("2024") == 2024 and text_field(form_value("2024"), "category") == "2024"
    with pytest.raises(ApiError, match="must be text"):
        text_field(form_value("[1, 2]"), "category")
