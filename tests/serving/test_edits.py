"""Sub-style edits on a bundle folder, in-process: the next version, the edit log, the same models,
a stale or refused edit that changes nothing, undo, and the rate limit."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from jewelry_pipeline.core.bundle import (
    CATALOG_FILE,
    CONFIG_FILE,
    FILES_MANIFEST,
    bundle_digest,
    read_bundle,
)
from jewelry_pipeline.core.substyles import EditRefused
from jewelry_pipeline.serving.admin import new_token, token_digest
from jewelry_pipeline.serving.edits import StaleVersion, SubstyleEditor, TooManyEdits
from jewelry_pipeline.serving.engine import RecommendationEngine
from jewelry_testing.servers import start_bentoml
from tests.serving.conftest import make_bundle

RENAME = {"op": "rename", "category": "ring", "cluster": 0, "name": "Bands"}
MERGE = {"op": "merge", "category": "necklace", "cluster": 1, "into": 0}


def _manifest(bundle) -> dict:
    return json.loads((bundle.resolve() / FILES_MANIFEST).read_text())


def test_an_edit_set_makes_the_next_version_and_undo_goes_back(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    editor = SubstyleEditor(bundle)
    first, before = editor.current_digest(), _manifest(bundle)
    done = editor.apply([RENAME, {**MERGE, "extra": ["x"] * 1000}], first, "ana")
    assert done["bundle_digest"] == editor.current_digest() != first
    after = _manifest(bundle)
    assert {n: h for n, h in after.items() if n not in (CATALOG_FILE, CONFIG_FILE)} == {
        n: h for n, h in before.items() if n not in (CATALOG_FILE, CONFIG_FILE)
    }  # the same models, index and thumbnails
    edited = read_bundle(bundle)
    assert edited.substyles["names"] == {"ring": {"0": "Bands"}}
    (entry,) = edited.substyles["edits"]
    assert entry["by"] == "ana" and entry["edits"] == [RENAME, MERGE]  # known fields only
    assert edited.version["change"]["kind"] == "substyle_edit"
    necklaces = edited.catalog[edited.catalog["category"] == "necklace"]
    assert set(necklaces["cluster"]) == {0}
    engine = RecommendationEngine(edited)
    ring = next(c for c in engine.catalog_summary()["categories"] if c["name"] == "ring")
    assert {c["cluster"]: c["name"] for c in ring["clusters"]}[0] == "Bands"

    with pytest.raises(StaleVersion, match=first):  # made against the version before
        editor.apply([RENAME], first, "ben")
    with pytest.raises(EditRefused, match="no sub-style 9"):
        editor.apply([RENAME, {**RENAME, "cluster": 9}], done["bundle_digest"], "ben")
    with pytest.raises(EditRefused, match="list of 1 to 100"):
        editor.apply({"edits": RENAME}, done["bundle_digest"], "ben")
    assert editor.current_digest() == done["bundle_digest"]  # refused: nothing written

    back = editor.undo(done["bundle_digest"], "ana")
    assert back["bundle_digest"] == first and _manifest(bundle) == before
    with pytest.raises(EditRefused, match="nothing to undo"):
        editor.undo(first, "ana")


def test_edit_requests_are_limited_per_minute(tmp_path):
    editor = SubstyleEditor(tmp_path / "unused", per_minute=2)
    editor.count_request()
    editor.count_request()
    with pytest.raises(TooManyEdits):
        editor.count_request()


def _served(client: httpx.Client) -> str:
    return client.get("/status").json()["model_version"]["bundle_digest"]


def _until_served(client: httpx.Client, digest: str, seconds: float = 60) -> None:
    """Wait (bounded) until live reload serves `digest`."""
    deadline = time.monotonic() + seconds
    while _served(client) != digest:
        assert time.monotonic() < deadline, f"{digest} was not served within {seconds:.0f} s"
        time.sleep(0.3)


def test_edits_over_http_need_a_token_and_the_version_seen_and_are_served_by_live_reload(tmp_path):
    """No token, a wrong one, no If-Match, a stale one and a refused edit change nothing; a good
    edit set is served by live reload with its names in the answers; undo serves the version
    before it again."""
    bundle = make_bundle(tmp_path / "bundle")
    ana = new_token()
    server = start_bentoml(
        bundle,
        tmp_path / "serve.log",
        {
            "JEWELRY_RELOAD_SECONDS": "1",
            "JEWELRY_WORKERS": "1",
            "JEWELRY_ADMIN_TOKENS": f"ana={token_digest(ana)}",
            "JEWELRY_EDITS_PER_MINUTE": "1000",  # the fuzz below sends many
        },
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first = _served(client)
            edits = {"edits": [RENAME]}
            token = {"Authorization": f"Bearer {ana}"}
            for headers, status, reason in (
                ({"If-Match": first}, 401, "unauthorized"),
                ({"Authorization": f"Bearer {ana[::-1]}", "If-Match": first}, 401, "unauthorized"),
                ({"Authorization": f"Basic {ana}", "If-Match": first}, 401, "unauthorized"),
                (token, 428, "if_match_required"),
                ({**token, "If-Match": "0" * 16}, 409, "stale_version"),
            ):
                refused = client.post("/substyles/edits", json=edits, headers=headers)
                assert (refused.status_code, refused.json()["reason"]) == (status, reason), headers
            unauthorized = client.post("/substyles/edits", json=edits, headers={"If-Match": first})
            assert unauthorized.headers["www-authenticate"] == "Bearer"
            current = {**token, "If-Match": f'"{first}"'}
            unknown = {"edits": [{**RENAME, "cluster": 9}]}
            bad = client.post("/substyles/edits", json=unknown, headers=current)
            assert bad.status_code == 400 and bad.json()["reason"] == "edit_refused"
            not_json = client.post("/substyles/edits", content=b"{", headers=current)
            assert not_json.status_code == 400 and not_json.json()["reason"] == "malformed_json"
            assert bundle_digest(bundle)[:16] == first  # nothing was written
            _fuzz_without_the_token(client, ana, first)
            assert bundle_digest(bundle)[:16] == first  # still nothing

            done = client.post("/substyles/edits", json=edits, headers=current)
            assert done.status_code == 200 and done.json()["by"] == "ana", done.text
            edited = done.json()["bundle_digest"]
            _until_served(client, edited)
            view = client.get("/substyles", params={"category": "ring"}).json()
            assert {s["cluster"]: s["name"] for s in view["substyles"]}[0] == "Bands"
            page = client.get("/catalog/items", params={"category": "ring", "cluster": 0}).json()
            assert {item["cluster_name"] for item in page["items"]} == {"Bands"}
            again = client.post("/substyles/edits", json=edits, headers=current)  # seen: first
            assert again.status_code == 409 and again.json()["reason"] == "stale_version"

            undone = client.post("/substyles/undo", headers={**token, "If-Match": edited})
            assert undone.status_code == 200 and undone.json()["bundle_digest"] == first
            _until_served(client, first)
            assert client.get("/livez").status_code == 200
    finally:
        server.stop()


def _fuzz_without_the_token(client: httpx.Client, token: str, digest: str) -> None:
    """Hypothesis: any Authorization and If-Match but the valid token, any body, either route:
    always a JSON 4xx with a reason, never a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    # What a client can send as a header value: printable ASCII, no surrounding spaces.
    header = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)
    near = st.sampled_from([f"Bearer {token[:-1]}", f"Bearer {token}x", token, f"bearer{token}"])
    body = st.binary(max_size=300) | st.sampled_from(
        [b'{"edits": []}', json.dumps({"edits": [RENAME]}).encode()]
    )

    @settings(
        max_examples=80,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        authorization=st.none() | header | near,
        if_match=st.none() | header | st.just(digest),
        content=body,
        route=st.sampled_from(["/substyles/edits", "/substyles/undo"]),
    )
    def check(authorization, if_match, content, route):
        headers = {"content-type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        if if_match is not None:
            headers["If-Match"] = if_match
        response = client.post(route, content=content, headers=headers)
        assert 400 <= response.status_code < 500 and response.json()["reason"], (
            route,
            headers,
            content,
            response.status_code,
        )

    check()
