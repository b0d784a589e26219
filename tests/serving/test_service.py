"""The real `bentoml serve` process on 127.0.0.1: endpoints, readiness, promotion and bad inputs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from PIL import Image

from jewelry_pipeline.core.bundle import CLASSIFIER_FILE, FILES_MANIFEST
from jewelry_testing.hostile import hostile_uploads
from jewelry_testing.servers import LOADED_LINE, worker_pids
from tests.conftest import PROJECT_ROOT, image_bytes, random_photo
from tests.serving.conftest import CLASSES, MAX_REQUEST_BYTES, PER_CLASS, PREPROCESSING, jpeg


def _serve_bundle(bundle: Path, log: Path, env: dict[str, str] | None = None):
    """`bentoml serve` of the service on one bundle folder, on a free port of 127.0.0.1."""
    from jewelry_testing.servers import free_port, start

    port = str(free_port())
    command = [
        str(Path(sys.executable).with_name("bentoml")),
        "serve",
        "jewelry_pipeline.serving.service:JewelryService",
        "--host",
        "127.0.0.1",
        "--port",
        port,
    ]
    return start(
        command, {"PORT": port, "JEWELRY_BUNDLE": str(bundle), **(env or {})}, "/livez", log
    )


def test_readiness_is_503_until_the_bundle_is_loaded_then_200(live_server):
    statuses = live_server.readiness
    assert 503 in statuses and statuses[-1] == 200
    assert statuses.index(200) > statuses.index(503)
    with live_server.client() as client:
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text


def test_the_server_log_names_the_bundle_each_worker_verified_and_loaded(live_server):
    log = live_server.log.read_text(errors="replace")
    assert len(re.findall(r"\[INFO\] \[cli\] Serving bundle \S+ verified", log)) == 1, log
    workers = set(LOADED_LINE.findall(log))
    assert len(workers) == len(worker_pids(live_server)) >= 2, log


def test_the_promoted_bundle_is_served_and_the_kept_one_is_not(live_server):
    with live_server.client() as client:
        version = client.post("/classify", files={"image": ("a.jpg", jpeg(), "image/jpeg")}).json()[
            "model_version"
        ]
    from bentoml._internal.models import ModelStore

    from jewelry_pipeline.core.bundle import bundle_digest

    (stored,) = ModelStore(live_server.bentoml_home / "models").list("jewelry-bundle")
    assert (
        stored.info.metadata["mlflow_run_id"]
        == live_server.runs["promoted"]
        != live_server.runs["kept"]
    )
    assert version["bundle_digest"] == bundle_digest(stored.path)[:16]
    # Public identity only: no file path, store tag or tracking run id in an answer.
    assert set(version) == {"bundle_digest", "created_at", "index_source"}
    assert not any(
        str(value).startswith("/") or value in live_server.runs.values()
        for value in version.values()
    )


def test_no_answer_names_a_path_a_store_or_a_run(live_server):
    """Every field of every answer, not only `model_version` and the load error: no file path of
    this server, no BentoML store tag location, no tracking run id."""
    secrets = [*live_server.runs.values(), str(live_server.bentoml_home), "mlruns", "/tmp/"]
    with live_server.client() as client:
        photo = {"image": ("a.jpg", jpeg(), "image/jpeg")}
        answers = {
            "status": client.get("/status"),
            "readyz": client.get("/readyz"),
            "catalog": client.get("/catalog"),
            "items": client.get("/catalog/items", params={"limit": 200}),
            "classify": client.post("/classify", files=photo),
            "recommend": client.post("/recommend", files=photo, data={"k": "50"}),
            "by_id": client.post("/recommend_by_id", json={"item_id": "item003", "k": 50}),
            "unknown_id": client.post("/recommend_by_id", json={"item_id": "nope"}),
            "docs": client.get("/docs.json"),
        }
    for name, answer in answers.items():
        assert answer.status_code < 500, name
        leaked = [secret for secret in secrets if secret in answer.text]
        assert not leaked, (name, leaked, answer.text[:300])
    assert len(answers["items"].json()["items"]) > 0


def test_classify(live_server):
    with live_server.client() as client:
        response = client.post("/classify", files={"image": ("ring.jpg", jpeg(5), "image/jpeg")})
    body = response.json()
    assert response.status_code == 200
    assert body["category"] in CLASSES and set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_recommend_with_k_and_category_and_thumbnails(live_server):
    with live_server.client() as client:
        body = client.post(
            "/recommend",
            files={"image": ("x.png", image_bytes(random_photo(9), "PNG"), "image/png")},
            data={"k": "4"},
        ).json()
        assert (
            len(body["items"]) == 4
            and body["category"] in CLASSES
            and isinstance(body["cluster"], int)
        )
        scores = [item["score"] for item in body["items"]]
        assert scores == sorted(scores, reverse=True)
        # The bundle stores no answer policy: it never doubts and always shows its nearest items.
        assert body["category_uncertain"] is False and body["close_match"] is True
        assert body["confidence"] == max(body["probabilities"].values())
        filtered = client.post(
            "/recommend",
            files={"image": ("x.jpg", jpeg(2), "image/jpeg")},
            data={"k": "50", "category": "necklace"},
        ).json()
        assert len(filtered["items"]) == PER_CLASS and {
            i["category"] for i in filtered["items"]
        } == {"necklace"}
        thumbnail = client.get(body["items"][0]["thumbnail"])
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
        assert Image.open(__import__("io").BytesIO(thumbnail.content)).size == (32, 32)
        # A browser's revalidation: the same bundle's thumbnail is a bodiless 304.
        etag = thumbnail.headers["etag"]
        again = client.get(body["items"][0]["thumbnail"], headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert again.headers["x-content-type-options"] == "nosniff"
        for path in (
            "/",
            "/app.js",
            "/catalog",
            "/status",
            "/livez",
            body["items"][0]["thumbnail"],
        ):
            head = client.head(path)
            assert head.status_code == 200 and head.content == b"", path
        default_k = client.post(
            "/recommend", files={"image": ("x.jpg", jpeg(2), "image/jpeg")}
        ).json()
        assert len(default_k["items"]) == 10


def test_recommend_by_id_catalog_and_pages(live_server):
    with live_server.client() as client:
        body = client.post("/recommend_by_id", json={"item_id": "item004", "k": 3}).json()
        assert body["item"]["item_id"] == "item004" and len(body["items"]) == 3
        assert "item004" not in [item["item_id"] for item in body["items"]]
        catalog = client.get("/catalog").json()
        assert catalog["total"] == PER_CLASS * len(CLASSES)
        assert {c["name"]: c["count"] for c in catalog["categories"]} == dict.fromkeys(
            CLASSES, PER_CLASS
        )
        page = client.get(
            "/catalog/items", params={"category": "ring", "cluster": 0, "limit": 3}
        ).json()
        assert len(page["items"]) == 3 and all(
            i["category"] == "ring" and i["cluster"] == 0 for i in page["items"]
        )
        page, script = client.get("/"), client.get("/app.js")
        assert (
            page.status_code == 200
            and "text/html" in page.headers["content-type"]
            and '<script src="/app.js">' in page.text
        )
        assert script.status_code == 200 and "/recommend" in script.text


def test_a_categorys_sub_styles_and_a_preview_of_another_k_over_http(live_server):
    with live_server.client() as client:
        view = client.get("/substyles", params={"category": "ring"}).json()
        assert view["category"] == "ring" and not view["preview"]
        assert sum(s["count"] for s in view["substyles"]) == PER_CLASS
        assert all(i["category"] == "ring" for s in view["substyles"] for i in s["typical"])
        preview = client.get("/substyles", params={"category": "ring", "k": "3"}).json()
        assert preview["preview"] and preview["k"] == 3
        assert client.get("/substyles", params={"category": "ring"}).json() == view  # not saved
        for params, reason in (
            ({"category": "ring", "k": "13"}, "out_of_range"),  # above the highest k
            ({"category": "ring", "k": str(PER_CLASS + 1)}, "out_of_range"),  # above its items
            ({"category": "ring", "k": "x"}, "wrong_field_type"),
            ({"category": "tiara"}, "not_found"),
            ({}, "not_found"),
            ({"category": ["ring", "ring"]}, "repeated_field"),
        ):
            refused = client.get("/substyles", params=params)
            assert refused.status_code == 400 and refused.json()["reason"] == reason, params


def test_editing_is_off_without_admin_tokens_and_a_bundle_folder(live_server):
    """The shared server serves the store's champion and has no admin tokens: every edit route
    says editing is off (403), whatever the token, and the sub-styles stay as they were."""
    with live_server.client() as client:
        before = client.get("/substyles", params={"category": "ring"}).json()
        for route in ("/substyles/edits", "/substyles/undo"):
            refused = client.post(
                route,
                json={"edits": [{"op": "rename", "category": "ring", "cluster": 0, "name": "X"}]},
                headers={"Authorization": "Bearer anything", "If-Match": "0" * 16},
            )
            assert refused.status_code == 403 and refused.json()["reason"] == "editing_off"
        assert client.get("/substyles", params={"category": "ring"}).json() == before


# The reliability suite's corpus of bad uploads (one per kind), sized to the live server's caps.
BAD_UPLOADS = [
    case
    for case in hostile_uploads(MAX_REQUEST_BYTES, PREPROCESSING["max_bytes"])
    if case[2] >= 400
]


@pytest.mark.parametrize(
    ("kind", "request_kwargs", "status"), BAD_UPLOADS, ids=[case[0] for case in BAD_UPLOADS]
)
def test_bad_uploads_get_a_json_4xx_and_the_server_stays_up(
    live_server, kind, request_kwargs, status
):
    with live_server.client() as client:
        response = client.post("/recommend", **request_kwargs)
        assert response.status_code == status, response.text
        assert (
            response.headers["content-type"].startswith("application/json")
            and response.json()["error"]
        )
        assert client.get("/livez").status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"k": 3}, 400),
        ({"item_id": "nope"}, 404),
        ({"item_id": "item001", "k": 0}, 400),
        ({"item_id": ["item001"]}, 400),
        ("not json", 400),
    ],
)
def test_bad_recommend_by_id_requests(live_server, body, status):
    with live_server.client() as client:
        kwargs = (
            {"content": body, "headers": {"content-type": "application/json"}}
            if isinstance(body, str)
            else {"json": body}
        )
        response = client.post("/recommend_by_id", **kwargs)
    assert response.status_code == status and response.json()["error"]


def test_unknown_thumbnail_and_path_tricks_are_404(live_server):
    with live_server.client() as client:
        assert client.get("/items/nope/thumbnail").status_code == 404
        assert client.get("/items/..%2F..%2Fetc%2Fpasswd/thumbnail").status_code == 404
        response = client.post(
            "/classify", files={"image": ("../../../etc/passwd", jpeg(), "image/jpeg")}
        )
        assert response.status_code == 200


def test_bentoml_s_own_client_calls_the_model_routes(live_server, tmp_path):
    """`bentoml.SyncHTTPClient` finds the three model APIs in /schema.json and calls them (before
    they were `@bentoml.api` endpoints it had none: AttributeError)."""
    import bentoml

    photo = tmp_path / "ring.jpg"
    photo.write_bytes(jpeg(5))
    with bentoml.SyncHTTPClient(live_server.url, timeout=60) as client:
        classified = client.classify(image=photo)
        recommended = client.recommend(image=photo, k=3, category="necklace")
        by_id = client.recommend_by_id(item_id=recommended["items"][0]["item_id"], k=2)
        with pytest.raises(bentoml.exceptions.BentoMLException) as refused:
            client.recommend(image=photo, k=51)
    assert classified["category"] in CLASSES
    assert set(classified["probabilities"]) == set(CLASSES)
    assert len(recommended["items"]) == 3
    assert {item["category"] for item in recommended["items"]} == {"necklace"}
    assert by_id["item"]["item_id"] == recommended["items"][0]["item_id"]
    assert len(by_id["items"]) == 2
    assert refused.value.error_code == 400 and "between 1 and 50" in str(refused.value)


def test_a_url_in_the_image_field_is_never_fetched(live_server):
    """A listener on 127.0.0.1 records any connection; the service must not make one."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(1.5)
    hits = []

    def watch():
        try:
            hits.append(listener.accept())
        except OSError:
            pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/ring.jpg"
    with live_server.client() as client:
        response = client.post("/recommend", files={"image": (None, url)})
        as_field = client.post("/classify", data={"image": url}, files={"other": ("a", b"")})
        embed = client.post("/embed", json={"images": url})
    watcher.join(timeout=5)
    listener.close()
    assert response.status_code == as_field.status_code == 400 and embed.status_code == 404
    assert hits == []


def test_concurrent_uploads_share_model_batches_and_each_gets_its_own_answer(live_server):
    """Photos answered together in one adaptive batch are split back to their own requests: each
    concurrent answer equals the answer the same photo gets alone. The batched model call is no
    route at all."""
    from concurrent.futures import ThreadPoolExecutor

    photos = [jpeg(seed) for seed in range(8)]
    with live_server.client() as client:
        alone = [
            client.post("/classify", files={"image": ("p.jpg", photo, "image/jpeg")}).json()
            for photo in photos
        ]
        with ThreadPoolExecutor(8) as pool:
            together = list(
                pool.map(
                    lambda photo: client.post(
                        "/classify", files={"image": ("p.jpg", photo, "image/jpeg")}
                    ),
                    photos * 2,
                )
            )
        embed = client.post("/embed", json={"images": "x"})
    assert [answer.status_code for answer in together] == [200] * 16
    for i, answer in enumerate(together):
        expected = alone[i % len(photos)]
        assert answer.json()["category"] == expected["category"]
        for name, probability in expected["probabilities"].items():
            assert answer.json()["probabilities"][name] == pytest.approx(probability, abs=1e-4)
    assert len({str(sorted(a["probabilities"].items())) for a in alone}) > 1  # the photos differ
    assert embed.status_code == 404 and embed.json()["error"]


def test_bentoml_build_packages_the_service_with_the_champion_bundle(live_server):
    env = {**os.environ, "BENTOML_HOME": str(live_server.bentoml_home)}  # telemetry: conftest
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    built = subprocess.run(
        [str(bentoml_cli), "build", str(PROJECT_ROOT), "--output", "tag"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    bento_dirs = list((live_server.bentoml_home / "bentos" / "jewelry").glob("*/bento.yaml"))
    assert len(bento_dirs) == 1
    manifest = bento_dirs[0].read_text()
    assert (
        "jewelry_pipeline.serving.service:JewelryService" in manifest
        and "jewelry-bundle" in manifest
    )
    package = bento_dirs[0].parent / "src" / "src" / "jewelry_pipeline"
    assert (package / "serving" / "static" / "index.html").is_file()
    assert sorted(p.name for p in package.iterdir()) == [
        "__init__.py",
        "core",
        "native_logs.py",
        "serving",
    ]  # only what serving needs
    # The service imports from the bento's own copy alone (its folder first on the path, nothing
    # else of ours).
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import jewelry_pipeline.serving.service as s, jewelry_pipeline as p; "
        "assert p.__file__.startswith(sys.argv[1]), p.__file__; "
        "missing = [m for m in ('jewelry_pipeline.pipelines', 'jewelry_pipeline.datasets') "
        "if m in sys.modules]; "
        "assert not missing, missing"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe, str(package.parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]


def test_a_bundle_that_verifies_but_cannot_load_says_failed_not_loading(tmp_path):
    """Checksums match (files.json rewritten), but the classifier file is not a Keras model: the
    service stays up, and /readyz, /status and the API name the failure instead of
    "still loading"."""
    import hashlib
    import json
    import time

    from tests.serving.conftest import make_bundle

    bundle = make_bundle(tmp_path / "bundle")
    (bundle / CLASSIFIER_FILE).write_bytes(b"PK\x03\x04 written by some other tool")
    files = json.loads((bundle / FILES_MANIFEST).read_text())
    files[CLASSIFIER_FILE] = hashlib.sha256((bundle / CLASSIFIER_FILE).read_bytes()).hexdigest()
    (bundle / FILES_MANIFEST).write_text(json.dumps(files))
    server = _serve_bundle(bundle, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            deadline = time.monotonic() + 60
            while (
                client.get("/status").json()["state"] == "loading" and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            status = client.get("/status").json()
            assert status["state"] == "failed" and CLASSIFIER_FILE in status["error"], status
            # The cause names the file, never where this server keeps it (the log does).
            assert str(tmp_path) not in status["error"] and "the bundle" in status["error"], status
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["reason"] == "load_failed"
            classify = client.post("/classify", files={"image": ("a.jpg", jpeg())})
            assert classify.status_code == 503 and classify.json()["error"].startswith(
                "the model bundle failed to load"
            )
            assert client.get("/livez").status_code == 200
        assert "failed to load" in server.log.read_text(errors="replace")
    finally:
        server.stop()


def test_model_threads_run_below_the_event_loop_priority():
    """The thread that runs the models (and the pools it starts) is niced; the calling thread is
    not."""
    from jewelry_pipeline.serving import loader

    seen = {}

    def model_thread():
        loader.lower_thread_priority()
        seen["model"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        child = threading.Thread(
            target=lambda: seen.update(
                child=os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            )
        )
        child.start()
        child.join()

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=model_thread)
    thread.start()
    thread.join()
    assert seen["model"] == seen["child"] == loader.MODEL_NICE > before
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_every_answer_carries_the_security_headers_and_a_fitting_cache_policy(live_server):
    """Broken on purpose once: without the SecurityHeaders middleware it failed (no
    content-security-policy header). The edge guards' own answers (a JSON 404, a 403) carry them
    too: SecurityHeaders wraps them."""
    from jewelry_pipeline.serving.headers import CONTENT_SECURITY_POLICY

    with live_server.client() as client:
        item = client.get("/catalog/items", params={"limit": 1}).json()["items"][0]
        answers = {
            "page": client.get("/"),
            "script": client.get("/app.js"),
            "api": client.post("/classify", files={"image": ("a.jpg", jpeg(), "image/jpeg")}),
            "error": client.post(
                "/classify", files={"image": ("a.jpg", b"not a photo", "image/jpeg")}
            ),
            "thumbnail": client.get(item["thumbnail"]),
            "probe": client.get("/livez"),
            "unknown path": client.get("/no/such/page"),
            "cross-site": client.post("/classify", headers={"Origin": "https://evil.example"}),
        }
    for name, answer in answers.items():
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, name
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert (
            answer.headers["referrer-policy"] == "no-referrer"
            and answer.headers["x-frame-options"] == "DENY"
        ), name
    assert (
        "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    )
    assert (
        "<script>" not in answers["page"].text and 'src="/app.js"' in answers["page"].text
    )  # nothing inline to allow
    assert answers["script"].headers["content-type"].startswith("text/javascript")
    assert answers["page"].headers["cache-control"] == "no-cache"
    assert (
        answers["api"].headers["cache-control"]
        == answers["error"].headers["cache-control"]
        == "no-store"
    )
    assert answers["thumbnail"].headers["cache-control"] == "public, max-age=3600"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://evil.example"}, 403),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "SAME"}, 200),
        ({"Sec-Fetch-Site": "same-origin"}, 200),
        ({}, 200),  # curl and scripts send neither header
    ],
)
def test_model_posts_from_another_site_are_refused(live_server, headers, status):
    """Broken on purpose once: without the SameSiteOnly middleware the three cross-site cases
    answered 200."""
    with live_server.client() as client:
        headers = {
            k: (str(client.base_url).rstrip("/") if v == "SAME" else v) for k, v in headers.items()
        }
        answer = client.post(
            "/recommend",
            files={"image": ("a.jpg", jpeg(), "image/jpeg")},
            data={"k": "3"},
            headers=headers,
        )
    assert answer.status_code == status, answer.text
    if status == 403:
        assert answer.json()["reason"] == "cross_site"


def test_a_host_name_the_server_does_not_answer_to_is_refused_on_every_route(live_server):
    """DNS rebinding: a page on evil.example whose name now resolves to this server sends
    `Host: evil.example`; every route refuses it with a JSON 400 (security headers on), while the
    loopback names are served."""
    with live_server.client() as client:
        port = client.base_url.port
        for method, path in (("GET", "/"), ("GET", "/status"), ("POST", "/recommend_by_id")):
            answer = client.request(method, path, headers={"Host": f"evil.example:{port}"})
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["reason"] == "host_not_allowed"
            assert answer.headers["x-frame-options"] == "DENY"
        assert client.get("/status", headers={"Host": f"localhost:{port}"}).status_code == 200


def _series(metrics: str) -> set[str]:
    """The label sets of BentoML's request series in a /metrics answer."""
    return {
        line.rsplit(" ", 1)[0]
        for line in metrics.splitlines()
        if line.startswith("bentoml_") and "endpoint=" in line
    }


def test_request_metrics_are_labelled_by_route_template_so_their_count_is_bounded(live_server):
    """Broken on purpose once: without `label_metrics_by_route` the 1,020 made-up paths added 20,020
    series."""
    with live_server.client() as client:
        item = client.get("/catalog/items", params={"limit": 1}).json()["items"][0]
        warm = [
            client.get(item["thumbnail"]),
            client.get("/items/nosuch/thumbnail"),
            client.get("/no/such/page"),
        ]
        before = _series(client.get("/metrics").text)
        for i in range(1000):
            assert client.get(f"/items/made-up-{i}/thumbnail").status_code == 404
        for i in range(20):
            client.get(f"/random/{i}/../path")
        thumbnail = client.get(item["thumbnail"])
        after = _series(client.get("/metrics").text)
    assert [w.status_code for w in warm] == [
        200,
        404,
        404,
    ] and thumbnail.status_code == 200  # routing saw the real paths
    assert len(after - before) == 0 and after == before, sorted(after - before)[:2]
    assert not any("made-up" in series or "random" in series for series in after)
    assert any('endpoint="/items/{item_id}/thumbnail"' in series for series in after)


def test_schemas_list_only_public_routes_and_no_version_banner(live_server):
    """Broken on purpose once: without PublicSchema it failed at once (BentoML's /docs.json listed
    its batched /embed API, and both documents carry its version banner)."""
    import bentoml

    with live_server.client() as client:
        openapi, routes = client.get("/docs.json"), client.get("/schema.json")
        livez = client.get("/livez")
    assert openapi.status_code == routes.status_code == 200
    assert "/embed" not in openapi.json()["paths"] and {
        "/classify",
        "/recommend",
        "/status",
    } <= set(openapi.json()["paths"])
    assert {route["route"] for route in routes.json()["routes"]} == {
        "/classify",
        "/recommend",
        "/recommend_by_id",
    }
    for answer in (openapi, routes, livez):
        assert bentoml.__version__ not in answer.text and "server" not in answer.headers


@pytest.mark.parametrize(
    "path", ["/catalog/", "/catalog/items/", "/status/", "/items/item000/thumbnail/"]
)
def test_no_redirect_is_built_from_the_host_header(live_server, path):
    """Broken on purpose once: with Starlette's default slash redirects, /catalog/ answered 307 to
    http://evil.example/catalog. A foreign host is now refused first; an allowed one gets a 404."""
    with live_server.client() as client:
        foreign = client.get(path, headers={"host": "evil.example"})
        allowed = client.get(path, headers={"host": "localhost"})
    for answer in (foreign, allowed):
        assert not 300 <= answer.status_code < 400 and "location" not in answer.headers
    assert foreign.status_code == 400 and allowed.status_code == 404


@pytest.mark.slow
def test_a_pretrained_bundle_is_served_end_to_end(tmp_path):
    """A bundle with a pretrained classifier and an index of frozen backbone features: the live
    service loads the backbone it carries, and a catalog photo finds itself first."""
    import time

    from tests.serving.conftest import catalog_photos, make_bundle

    bundle = make_bundle(tmp_path / "bundle", source="backbone")
    assert (bundle / "backbone.keras").is_file()
    server = _serve_bundle(bundle, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert client.get("/readyz").status_code == 200, client.get("/status").json()
            photo = catalog_photos()[12]  # item012, a necklace
            body = client.post(
                "/recommend",
                files={"image": ("n.png", image_bytes(photo, "PNG"), "image/png")},
                data={"k": "3", "category": "necklace"},
            ).json()
            assert body["items"][0]["item_id"] == "item012", body
            assert body["items"][0]["score"] == pytest.approx(1.0, abs=1e-3)
            assert all(item["category"] == "necklace" for item in body["items"])
            classified = client.post(
                "/classify", files={"image": ("n.png", image_bytes(photo, "PNG"), "image/png")}
            ).json()
            assert set(classified["probabilities"]) == set(CLASSES)
    finally:
        server.stop()


@pytest.mark.slow
def test_slow_clients_cannot_starve_the_service(tmp_path):
    """An idle socket and headers sent a line at a time are closed at the header timeout; twice as
    many uploads at ~5 bytes/s as model slots: normal requests keep getting 200 while they trickle,
    and each slow one gets a 408 (found: 7 such uploads made 17 of 38 normal requests get 429 for
    30 s; idle sockets and slow headers were held over 60 s)."""
    import time

    from tests.serving.conftest import make_bundle

    slots = 2
    server = _serve_bundle(
        make_bundle(tmp_path / "bundle"),
        tmp_path / "serve.log",
        {
            "JEWELRY_MAX_CONCURRENCY": str(slots),
            "JEWELRY_WORKERS": "1",  # the slots are per worker
            "JEWELRY_BODY_GRACE_SECONDS": "2",
            "JEWELRY_BODY_MIN_BYTES_PER_SECOND": "1000",
            "JEWELRY_HEADER_TIMEOUT_SECONDS": "2",
        },
    )
    host, port = server.url.removeprefix("http://").split(":")
    slow_answers: list[bytes] = []

    def slow_upload() -> None:
        with socket.create_connection((host, int(port)), timeout=20) as conn:
            conn.sendall(
                b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: multipart/form-data; boundary=zz\r\n"
                b"Content-Length: 100000\r\n\r\n"
            )
            try:
                for _ in range(60):  # at most 12 s of trickling
                    conn.sendall(b"x")
                    time.sleep(0.2)
            except OSError:  # the server answered and closed: expected
                pass
            slow_answers.append(conn.recv(4096))

    def closed_after(send_slowly: bool) -> float:
        """Seconds until the server closes a connection that sends nothing, or its headers a
        line every 0.5 s."""
        started = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=15) as conn:
            try:
                lines = [b"GET /livez HTTP/1.1\r\n"] + [b"X-Slow: 1\r\n"] * 30
                for line in lines if send_slowly else []:
                    conn.sendall(line)
                    time.sleep(0.5)
                conn.recv(1)  # b"" once closed; a timeout here fails the test
            except (ConnectionResetError, BrokenPipeError):
                pass
        return time.monotonic() - started

    try:
        assert closed_after(send_slowly=False) < 5  # idle: closed at the header timeout (2 s)
        assert closed_after(send_slowly=True) < 5  # slow headers: the same
        with httpx.Client(base_url=server.url, timeout=10) as client:  # a kept-alive client is fine
            assert client.get("/livez").status_code == 200
            time.sleep(1)
            assert client.get("/livez").status_code == 200
        threads = [threading.Thread(target=slow_upload) for _ in range(2 * slots)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        statuses = []
        with httpx.Client(base_url=server.url, timeout=20) as client:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and len(statuses) < 50:
                statuses.append(
                    client.post(
                        "/recommend", files={"image": ("a.jpg", jpeg(), "image/jpeg")}
                    ).status_code
                )
        for thread in threads:
            thread.join(30)
    finally:
        server.stop()
    assert statuses and set(statuses) == {200}, statuses
    assert len(slow_answers) == 2 * slots
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in slow_answers), slow_answers


def test_every_model_api_has_its_body_check_and_load_limit():
    """A new `@bentoml.api` route without its strict body check would reach BentoML's lenient
    parser (which fetches URLs); this fails first."""
    from jewelry_pipeline.serving import service

    routes = {api.route for api in service.JewelryService.apis.values()}
    assert routes == set(service.BODY_CHECKS) == set(service.LIMITED_PATHS)
