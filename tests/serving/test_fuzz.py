"""Property-based: generated paths, headers, bodies and multipart parts at every public route of a
live server never get a 5xx, and the server is alive afterwards. Bounded: a fixed number of
derandomized examples each.

It found one: a JSON body nested ~1,000 levels deep made /recommend_by_id answer 500 (RecursionError
in `json.loads`); with that fix removed the raw-body case for that route fails again.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import CLASSES, jpeg

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
ROUTES = [
    ("GET", "/"),
    ("GET", "/app.js"),
    ("GET", "/status"),
    ("GET", "/catalog"),
    ("GET", "/catalog/items"),
    ("GET", "/substyles"),
    ("POST", "/substyles/edits"),
    ("POST", "/substyles/undo"),
    ("GET", "/items/{}/thumbnail"),
    ("POST", "/classify"),
    ("POST", "/recommend"),
    ("POST", "/recommend_by_id"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/docs.json"),
    ("GET", "/schema.json"),
]
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
# JSON carries what UTF-8 cannot: lone surrogates (as \ud800 escapes), NULs, very long values.
json_text = (
    st.text(st.characters(), max_size=40)
    | st.sampled_from(["\ud800", "\udfff", "a\x00b"])
    | st.integers(1_000, 60_000).map(lambda n: "9" * n)
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | json_text,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["item_id", "k"]) | json_text, inner, max_size=4)
    ),
    max_leaves=30,
)


def _deep(depth: int) -> str:
    """A JSON document nested `depth` levels deep."""
    return "[" * depth + "]" * depth


bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 100_000).map(lambda depth: _deep(depth).encode()),
    st.just(jpeg()),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "text/plain",
            "image/jpeg",
            "application/x-www-form-urlencoded",
        ]
    ),
    header_text,
)
multipart_parts = st.lists(
    st.tuples(
        st.sampled_from(["image", "k", "category", "item_id", "x"]) | text,
        st.one_of(st.binary(max_size=512), st.just(jpeg())),
        header_text,
        header_text,
    ),
    max_size=4,
)


def _send(client: httpx.Client, method: str, path: str, **kwargs) -> int:
    """The status of one request; a connection refused means the server is down, which is a
    failure."""
    return client.request(method, path, **kwargs).status_code


@pytest.fixture(scope="module")
def client(live_server):
    with live_server.client() as client:
        yield client
    assert (
        httpx.get(f"{live_server.url}/livez", timeout=10).status_code == 200
    )  # alive after everything


@pytest.mark.parametrize(
    "body",
    [
        {"item_id": "\ud800"},
        {"item_id": "item000", "k": "\ud800"},
        {"item_id": "item000", "k": "9" * 60_000},
        {"item_id": "x\x00" * 20_000},
    ],
    ids=["surrogate id", "surrogate k", "long k", "long id with NULs"],
)
def test_hostile_json_fields_get_a_short_json_4xx(client, body):
    """Found by the red team (#31): a lone surrogate answered a plain-text 500, a 60,000-character
    `k` was echoed whole."""
    answer = client.post("/recommend_by_id", content=json.dumps(body).encode())
    assert 400 <= answer.status_code < 500, answer.text[:200]
    assert answer.content.isascii() and len(answer.content) < 400, answer.content[:200]
    assert answer.json()["reason"] and answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_raw_bodies_and_headers_never_get_a_5xx(client, method, route):
    @SETTINGS
    @given(
        segment=text,
        body=bodies,
        content_type=content_types,
        extra=st.dictionaries(
            st.sampled_from(
                ["accept", "origin", "x-forwarded-for", "accept-encoding", "range", "cookie"]
            ),
            header_text,
            max_size=3,
        ),
    )
    def check(segment, body, content_type, extra):
        path = route.format(quote(segment, safe="") or "x")
        headers = {**extra, **({"content-type": content_type} if content_type is not None else {})}
        status = _send(
            client, method, path, content=body if method == "POST" else None, headers=headers
        )
        assert status < 500, (method, path, headers, body[:80])

    check()


@pytest.mark.parametrize("route", ["/classify", "/recommend", "/recommend_by_id"])
def test_generated_multipart_parts_never_get_a_5xx(client, route):
    @SETTINGS
    @given(
        parts=multipart_parts,
        query=st.dictionaries(
            st.sampled_from(["k", "category", "limit", "offset", "cluster"]), text, max_size=3
        ),
    )
    def check(parts, query):
        files = [
            (name, (filename, data, content_type)) for name, data, filename, content_type in parts
        ]
        status = client.post(
            route, files=files or None, data=None if files else {"k": "3"}, params=query
        ).status_code
        assert status < 500, (route, [(n, f, c, d[:40]) for n, (f, d, c) in files], query)

    check()


def test_generated_paths_and_queries_never_get_a_5xx(client):
    @SETTINGS
    @given(
        segments=st.lists(text, min_size=1, max_size=4),
        query=st.dictionaries(text, text, max_size=4),
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    )
    def check(segments, query, method):
        path = "/" + "/".join(quote(segment, safe="") or "_" for segment in segments)
        status = _send(client, method, path, params=query)
        assert status < 500, (method, path, query)

    check()


def test_sub_style_queries_get_an_answer_or_a_json_4xx(client):
    """Any category and k, as text: a view, a preview, or a JSON 400 with a reason."""

    @SETTINGS
    @given(
        category=st.sampled_from(CLASSES) | text,
        k=st.none() | st.integers(-5, 60).map(str) | text,
    )
    def check(category, k):
        query = {"category": category, **({} if k is None else {"k": k})}
        response = client.get("/substyles", params=query)
        if response.status_code != 200:
            assert 400 <= response.status_code < 500 and response.json()["reason"], query
        else:
            assert response.json()["category"] == category

    check()
