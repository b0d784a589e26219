"""Live reload on a real `bentoml serve`: a new bundle version is served without a restart while a
steady load runs (every answer 200, each wholly from one version); a corrupt version is refused and
the previous one keeps serving."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx

from jewelry_pipeline.core.bundle import CLASSIFIER_FILE, FILES_MANIFEST, bundle_digest, read_bundle
from jewelry_pipeline.serving.engine import RecommendationEngine
from jewelry_testing.servers import bentoml_serve_command, free_port, start, start_bentoml
from tests.serving.conftest import jpeg, make_bundle

QUERY = {"item_id": "item000", "k": 5}
PHOTO = jpeg(5)


def _expected(version: Path) -> dict[str, list[str]]:
    """What this version alone answers to each request of the load."""
    engine = RecommendationEngine(read_bundle(version), "expected")
    by_id = engine.recommend_by_id(QUERY["item_id"], QUERY["k"])
    by_photo = engine.recommend(engine.features(engine.prepare(PHOTO)[None]), QUERY["k"])
    return {
        "by_id": [item["item_id"] for item in by_id["items"]],
        "by_photo": [item["item_id"] for item in by_photo["items"]],
    }


def _digest_served(client: httpx.Client) -> tuple[str | None, str | None]:
    status = client.get("/status").json()
    return (status["model_version"] or {}).get("bundle_digest"), status["reload_error"]


def test_a_new_version_is_served_without_restart_and_a_corrupt_one_is_refused(tmp_path):
    link = make_bundle(tmp_path / "bundle", seed=0)
    first = link.resolve()
    server = start_bentoml(
        link,
        tmp_path / "serve.log",
        {"JEWELRY_RELOAD_SECONDS": "1", "JEWELRY_WORKERS": "2"},
    )
    answers: list[tuple[int, str | None, list[str], str]] = []
    load_errors: list[str] = []  # the load thread's own failures: a silent stop would hide them
    stop = threading.Event()

    def steady_load() -> None:
        try:
            _steady_load()
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            load_errors.append(repr(exc))

    def _steady_load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            deadline = time.monotonic() + 240
            while not stop.is_set() and len(answers) < 5000 and time.monotonic() < deadline:
                kind = "by_photo" if len(answers) % 2 else "by_id"
                if kind == "by_id":
                    response = client.post("/recommend_by_id", json=QUERY)
                else:  # through the batched model call
                    response = client.post(
                        "/recommend",
                        files={"image": ("q.jpg", PHOTO, "image/jpeg")},
                        data={"k": str(QUERY["k"]), "category": ""},
                    )
                body = response.json()
                answers.append(
                    (
                        response.status_code,
                        (body.get("model_version") or {}).get("bundle_digest"),
                        [item["item_id"] for item in body.get("items", [])],
                        kind,
                    )
                )

    load = threading.Thread(target=steady_load)
    load.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            time.sleep(2)
            second = make_bundle(tmp_path / "bundle", seed=1).resolve()  # the link moves
            assert second != first
            new = bundle_digest(second)[:16]
            deadline = time.monotonic() + 120
            while sum(digest == new for _, digest, _, _ in answers[-20:]) < 20:
                assert time.monotonic() < deadline, "the new version was never served"
                time.sleep(0.5)

            # A corrupt version: checksums no longer match. Refused; the second keeps serving.
            third = make_bundle(tmp_path / "staged", seed=2).resolve()
            model = third / CLASSIFIER_FILE
            model.write_bytes(model.read_bytes()[:-100])
            moved = tmp_path / ".bundle.next-link"
            moved.symlink_to(third)
            os.replace(moved, link)
            deadline = time.monotonic() + 60
            errors = set()
            while len(errors) < 1:
                assert time.monotonic() < deadline, "the corrupt version was never looked at"
                digest, error = _digest_served(client)
                if error:
                    errors.add(error)
                    assert digest == new
                time.sleep(0.3)
            assert "does not match its checksum" in errors.pop()
            served_after = len(answers)
            time.sleep(3)
    finally:
        stop.set()
        load.join(60)
        server.stop()
    assert not load_errors, load_errors
    assert all(status == 200 for status, _, _, _ in answers), {s for s, _, _, _ in answers}
    assert len(answers) - served_after >= 3, "no answers after the corrupt version was refused"
    expected = {bundle_digest(first)[:16]: _expected(first), new: _expected(second)}
    assert {digest for _, digest, _, _ in answers} == set(expected)  # both, and nothing else
    for _, digest, items, kind in answers:  # each answer wholly from the version it names
        assert items == expected[digest][kind], (digest, kind)
    assert all(digest == new for _, digest, _, _ in answers[served_after:])
    assert len(answers) > 50


def test_a_service_whose_first_load_failed_serves_a_good_version_once_written(tmp_path):
    """Checksums match but the classifier is not a Keras model: /readyz names the failure. A good
    version written to the same bundle path is then served, with no restart."""
    import hashlib
    import json

    link = make_bundle(tmp_path / "bundle", seed=0)
    version = link.resolve()
    (version / CLASSIFIER_FILE).write_bytes(b"PK\x03\x04 written by some other tool")
    files = json.loads((version / FILES_MANIFEST).read_text())
    files[CLASSIFIER_FILE] = hashlib.sha256((version / CLASSIFIER_FILE).read_bytes()).hexdigest()
    (version / FILES_MANIFEST).write_text(json.dumps(files))
    port = str(free_port())
    environment = {
        "PORT": port,
        "JEWELRY_BUNDLE": str(link),
        "JEWELRY_RELOAD_SECONDS": "1",
        "JEWELRY_WORKERS": "1",
    }
    server = start(bentoml_serve_command(port), environment, "/livez", tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while client.get("/status").json()["state"] != "failed":
                assert time.monotonic() < deadline, "the broken bundle never reported failed"
                time.sleep(0.3)
            assert client.get("/readyz").json()["reason"] == "load_failed"
            good = make_bundle(tmp_path / "bundle", seed=1).resolve()
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the good version was never served"
                time.sleep(0.3)
            status = client.get("/status").json()
            assert status["state"] == "ready" and status["error"] is None
            assert status["model_version"]["bundle_digest"] == bundle_digest(good)[:16]
            assert client.post("/recommend_by_id", json=QUERY).status_code == 200
    finally:
        server.stop()
