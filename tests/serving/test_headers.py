"""HEAD on GET routes, conditional GETs and the cross-site rule, without a server."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from jewelry_pipeline.serving.headers import (
    AllowedHosts,
    HeadAndConditionalGet,
    HostAllowList,
    is_cross_site,
)


async def _tagged(_) -> Response:
    return Response(b"thumbnail bytes", media_type="image/jpeg", headers={"ETag": '"v1-a"'})


async def _untagged(_) -> Response:
    return Response(b"page", media_type="text/html")


async def _file(_) -> FileResponse:
    return FileResponse(__file__, media_type="text/plain")


def _client() -> TestClient:
    app = Starlette(
        routes=[Route("/tagged", _tagged), Route("/untagged", _untagged), Route("/file", _file)]
    )
    return TestClient(HeadAndConditionalGet(app))


@pytest.mark.parametrize("wanted", ["bytes=999999999-", "bytes=0-9", "bytes=x"])
def test_a_range_is_ignored_so_no_plain_text_416_or_partial_answer_is_made(wanted):
    whole = _client().get("/file")
    ranged = _client().get("/file", headers={"Range": wanted})
    assert ranged.status_code == 200 and ranged.content == whole.content


def test_head_answers_a_get_route_with_its_headers_and_no_body():
    client = _client()
    get, head = client.get("/untagged"), client.head("/untagged")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))


def test_a_matching_if_none_match_is_a_bodiless_304():
    client = _client()
    assert client.get("/tagged").headers["etag"] == '"v1-a"'
    for wanted in ('"v1-a"', 'W/"v1-a"', '"old", "v1-a"', "*"):
        answer = client.get("/tagged", headers={"If-None-Match": wanted})
        assert answer.status_code == 304 and answer.content == b"", wanted
        assert answer.headers["etag"] == '"v1-a"'
    stale = client.get("/tagged", headers={"If-None-Match": '"v0-a"'})
    assert stale.status_code == 200 and stale.content == b"thumbnail bytes"
    untagged = client.get("/untagged", headers={"If-None-Match": "*"})
    assert untagged.status_code == 200 and untagged.content == b"page"


@pytest.mark.parametrize(
    ("origin", "cross"),
    [
        ("http://127.0.0.1:3000", False),
        ("https://127.0.0.1:3000", False),  # behind a TLS proxy the page is https
        ("http://127.0.0.1:3001", True),
        ("https://evil.example", True),
        ("chrome-extension://127.0.0.1:3000", True),  # the host matches, the scheme is foreign
        ("file://127.0.0.1:3000", True),
        ("null", True),
    ],
)
def test_an_origin_is_same_site_only_as_an_http_page_of_the_host(origin, cross):
    headers = {b"host": b"127.0.0.1:3000", b"origin": origin.encode()}
    assert is_cross_site(headers) is cross


@pytest.mark.parametrize(
    ("setting", "host", "local", "allowed"),
    [
        (None, "127.0.0.1:3000", "127.0.0.1", True),
        (None, "localhost:3000", "127.0.0.1", True),
        (None, "[::1]:3000", "::1", True),
        (None, "192.168.1.5:3000", "192.168.1.5", True),  # the address the client connected to
        (None, "evil.example:3000", "192.168.1.5", False),  # DNS rebinding: its own name
        (None, "evil.example", "127.0.0.1", False),
        ("shop.example.com, 10.0.0.2", "SHOP.example.com", "10.0.0.2", True),
        ("shop.example.com", "127.0.0.1:3000", "127.0.0.1", False),  # a set list is the list
        ("*", "anything.example", "10.0.0.2", True),
    ],
)
def test_the_host_allow_list(setting, host, local, allowed):
    assert HostAllowList.from_setting(setting).allows(host, local) is allowed


def test_a_host_outside_the_allow_list_gets_a_json_400_and_the_app_is_not_called():
    reached = []

    async def page(_) -> Response:
        reached.append(1)
        return Response(b"page")

    app = AllowedHosts(Starlette(routes=[Route("/", page)]), HostAllowList.from_setting(None))
    client = TestClient(app, base_url="http://127.0.0.1:3000")  # TestClient's server: testserver
    refused = client.get("/", headers={"Host": "evil.example:3000"})
    assert refused.status_code == 400 and refused.json()["reason"] == "host_not_allowed"
    assert "'evil.example:3000'" in refused.json()["error"] and not reached
    assert client.get("/", headers={"Host": "localhost:3000"}).status_code == 200 and reached
