"""Sub-style edits on a bundle folder, in-process: the next version, the edit log, the same models,
a stale or refused edit that changes nothing, undo, the rate limit and the MLflow record; then over
HTTP on a live server."""

from __future__ import annotations

import json
import subprocess
import sys
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
from jewelry_pipeline.serving.edit_record import EDIT_LOG_ARTIFACT, EditRecorder
from jewelry_pipeline.serving.edits import StaleVersion, SubstyleEditor, TooManyEdits
from jewelry_pipeline.serving.engine import RecommendationEngine
from jewelry_testing.servers import clean_env, start_bentoml
from tests.conftest import PROJECT_ROOT
from tests.serving.conftest import edit_recorder, make_bundle

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


def _recorded(recorder: EditRecorder, run_id: str) -> tuple[dict, dict]:
    """A recorded run's tags and its edit log."""
    from mlflow import MlflowClient

    client = MlflowClient(recorder.tracking_uri)
    run = client.get_run(run_id)
    local = client.download_artifacts(run_id, EDIT_LOG_ARTIFACT)
    return run.data.tags, json.loads(open(local).read())


def test_each_edit_set_and_undo_is_an_mlflow_run_with_its_log(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    recorder = edit_recorder(tmp_path)
    editor = SubstyleEditor(bundle, recorder=recorder)
    first = editor.current_digest()
    done = editor.apply([RENAME, MERGE], first, "ana")
    tags, log = _recorded(recorder, done["mlflow_run_id"])
    assert tags["jewelry.change"] == "substyle_edit" and tags["jewelry.by"] == "ana"
    assert (tags["jewelry.previous_bundle_digest"], tags["jewelry.bundle_digest"]) == (
        first,
        done["bundle_digest"],
    )
    assert (
        log["by"] == "ana" and log["edits"] == [RENAME, MERGE] and log["at"] == tags["jewelry.at"]
    )
    assert log == read_bundle(bundle).substyles["edits"][-1]  # what the bundle keeps

    back = editor.undo(done["bundle_digest"], "ben")
    tags, log = _recorded(recorder, back["mlflow_run_id"])
    assert tags["jewelry.change"] == "substyle_undo" and tags["jewelry.by"] == "ben"
    assert tags["jewelry.bundle_digest"] == first and log["edits"] == []


def test_an_edit_stands_when_mlflow_cannot_record_it(tmp_path, caplog):
    bundle = make_bundle(tmp_path / "bundle")
    (tmp_path / "not-a-folder").write_text("")
    broken = EditRecorder(f"sqlite:///{tmp_path / 'not-a-folder' / 'mlflow.db'}", "x")
    editor = SubstyleEditor(bundle, recorder=broken)
    done = editor.apply([RENAME], editor.current_digest(), "ana")
    assert done["mlflow_run_id"] is None and editor.current_digest() == done["bundle_digest"]
    assert read_bundle(bundle).substyles["names"] == {"ring": {"0": "Bands"}}
    assert "not recorded in MLflow" in caplog.text


def test_the_recorder_follows_the_environment_then_the_project_config(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert EditRecorder.from_environment(tmp_path) is None  # no store named: the bundle only
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "conf" / "base" / "mlflow.yml").write_text(
        "server: {mlflow_tracking_uri: 'sqlite:///base.db'}\n"
        "tracking: {experiment: {name: shop, create_experiment_kwargs: {artifact_location: a}}}\n"
    )
    assert EditRecorder.from_environment(tmp_path) == EditRecorder("sqlite:///base.db", "shop", "a")
    (tmp_path / "conf" / "local" / "mlflow.yml").write_text(
        "server: {mlflow_tracking_uri: 'http://127.0.0.1:5000'}\n"
    )
    assert EditRecorder.from_environment(tmp_path).tracking_uri == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert EditRecorder.from_environment(tmp_path) == EditRecorder("sqlite:///env.db", "shop", "a")
    (tmp_path / "conf" / "local" / "mlflow.yml").write_text("tracking: {experiment: shop}\n")
    assert EditRecorder.from_environment(tmp_path) is None  # unreadable: recording off, no crash
    (tmp_path / "conf" / "local" / "mlflow.yml").write_text("server: [\n")
    assert EditRecorder.from_environment(tmp_path) is None


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
    recorder = edit_recorder(tmp_path)
    server = start_bentoml(
        bundle,
        tmp_path / "serve.log",
        {
            "MLFLOW_TRACKING_URI": recorder.tracking_uri,
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
            tags, log = _recorded(recorder, done.json()["mlflow_run_id"])
            assert tags["jewelry.by"] == "ana" and tags["jewelry.bundle_digest"] == edited
            assert log["edits"] == [RENAME]
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


def test_edits_to_the_store_served_bundle_are_new_model_versions_and_undo_deletes_one(tmp_path):
    """`make serve`'s default: the store's latest bundle. An edit saves the next model version,
    which live reload serves; undo deletes it, and the version it came from is served again."""
    home = tmp_path / "bentoml"
    env = {**clean_env(), "BENTOML_HOME": str(home)}
    script = (
        "import sys; from tests.serving.conftest import package_twice; package_twice(sys.argv[1])"
    )
    packaged = subprocess.run(  # one promoted bundle in a store of its own (one store per process)
        [sys.executable, "-c", script, str(tmp_path)],
        env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'runs.db'}"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert packaged.returncode == 0, packaged.stderr[-3000:]
    models = home / "models" / "jewelry-bundle"

    def versions() -> list[str]:
        return sorted(p.name for p in models.iterdir() if p.is_dir())

    (stored,) = versions()
    ana = new_token()
    server = start_bentoml(
        None,
        tmp_path / "serve.log",
        {
            "BENTOML_HOME": str(home),
            "MLFLOW_TRACKING_URI": edit_recorder(tmp_path).tracking_uri,
            "JEWELRY_RELOAD_SECONDS": "1",
            "JEWELRY_WORKERS": "1",
            "JEWELRY_ADMIN_TOKENS": f"ana={token_digest(ana)}",
        },
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first, token = _served(client), {"Authorization": f"Bearer {ana}"}
            done = client.post(
                "/substyles/edits", json={"edits": [RENAME]}, headers={**token, "If-Match": first}
            )
            assert done.status_code == 200 and done.json()["mlflow_run_id"], done.text
            edited = done.json()["bundle_digest"]
            assert edited != first and len(versions()) == 2 and stored in versions()
            _until_served(client, edited)
            view = client.get("/substyles", params={"category": "ring"}).json()
            assert {s["cluster"]: s["name"] for s in view["substyles"]}[0] == "Bands"

            undone = client.post("/substyles/undo", headers={**token, "If-Match": edited})
            assert undone.status_code == 200 and undone.json()["bundle_digest"] == first
            assert versions() == [stored] and (models / "latest").read_text().strip() == stored
            _until_served(client, first)
            again = client.post("/substyles/undo", headers={**token, "If-Match": first})
            assert again.status_code == 400 and "nothing to undo" in again.json()["error"]
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
