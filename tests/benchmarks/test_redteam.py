"""The red-team probes (benchmarks/redteam.py): the quick ones pass against a tiny served bundle,
and the verdict fails an answer that breaks any of its rules."""

from __future__ import annotations

import httpx
import pytest

from benchmarks.redteam import QUICK, _clean_answer
from jewelry_testing.servers import start_bentoml, wait_until_every_worker_is_ready
from tests.serving.conftest import make_bundle

HEADERS = {"content-security-policy": "default-src 'self'", "x-content-type-options": "nosniff"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("redteam")
    server = start_bentoml(
        make_bundle(work / "bundle"), work / "serve.log", {"JEWELRY_MAX_CONCURRENCY": "3"}
    )
    try:
        # Found flaky under load: HEAD /status met a loading worker, the GET after it a ready one.
        wait_until_every_worker_is_ready(server)
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("group", sorted(QUICK))
def test_the_quick_probes_pass_against_a_served_bundle(served, group):
    with httpx.Client(base_url=served.url, timeout=60) as client:
        probes = QUICK[group](client)
    assert probes and [p for p in probes if not p.passed] == []


@pytest.mark.parametrize(
    ("response", "fault"),
    [
        (httpx.Response(400, json={"error": "x", "reason": "bad"}, headers=HEADERS), None),
        (httpx.Response(500, json={"error": "x", "reason": "bug"}, headers=HEADERS), "status"),
        (httpx.Response(400, text="bad request", headers=HEADERS), "not JSON"),
        (httpx.Response(400, json={"error": "x"}, headers=HEADERS), "no reason"),
        (httpx.Response(400, json={"error": "x" * 3000, "reason": "r"}, headers=HEADERS), "bytes"),
        (httpx.Response(400, json={"error": "x", "reason": "bad"}), "missing"),
        (
            httpx.Response(
                400,
                content='{"error": "\u00e9", "reason": "r"}'.encode(),
                headers={**HEADERS, "content-type": "application/json"},
            ),
            "not ASCII",
        ),
    ],
)
def test_an_answer_breaking_any_rule_fails_its_verdict(response, fault):
    passed, summary = _clean_answer(response, (400,))
    assert passed is (fault is None)
    assert fault is None or fault in summary
