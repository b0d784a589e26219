"""The bundle holder in-process: first load, a failed load, and live reload's swap and refusal."""

from __future__ import annotations

import asyncio
import threading

import pytest

from jewelry_pipeline.core.bundle import CLASSIFIER_FILE, bundle_digest
from jewelry_pipeline.serving.loader import BundleHolder, latest_in_store
from jewelry_pipeline.serving.uploads import ApiError
from tests.serving.conftest import make_bundle


def _load(holder: BundleHolder, bundle, label: str) -> None:
    """The first load, in a thread of its own as the service runs it (it lowers its thread's
    priority)."""
    thread = threading.Thread(target=holder.load, args=(bundle, label))
    thread.start()
    thread.join(120)


def _break(bundle) -> None:
    """Make the version a bundle link points at unloadable (its checksum then fails too)."""
    (bundle.resolve() / CLASSIFIER_FILE).write_bytes(b"not a model")


def test_a_new_version_is_swapped_in_and_a_bad_one_refused_while_the_old_one_serves(
    tmp_path, monkeypatch
):
    bundle = make_bundle(tmp_path / "bundle", run_id="run-a")
    monkeypatch.setenv("JEWELRY_BUNDLE", str(bundle))
    holder = BundleHolder(reload_seconds=0)
    assert holder.state == "loading"
    _load(holder, bundle, "first")
    first = holder.engine
    assert holder.state == "ready" and first.version["bundle_digest"] == bundle_digest(bundle)[:16]
    holder.swap_if_new()
    assert holder.engine is first  # the same version: nothing to do

    make_bundle(bundle, run_id="run-b", seed=1)  # a new version behind the same link
    holder.swap_if_new()
    assert holder.engine is not first
    assert holder.engine.version["bundle_digest"] == bundle_digest(bundle)[:16]
    second = holder.engine

    make_bundle(bundle, run_id="run-c", seed=2)
    _break(bundle)
    holder.swap_if_new()
    assert holder.engine is second and holder.state == "ready"
    assert holder.reload_error is not None and str(tmp_path) not in holder.reload_error
    from jewelry_pipeline.serving import loader

    reads = []
    monkeypatch.setattr(loader, "read_bundle", lambda path: reads.append(path))
    holder.swap_if_new()  # the refused version is not read again
    assert reads == [] and holder.engine is second


def test_a_failed_first_load_answers_503_until_a_good_version_is_written(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "bundle")
    _break(bundle)
    monkeypatch.setenv("JEWELRY_BUNDLE", str(bundle))
    holder = BundleHolder(reload_seconds=0)
    _load(holder, bundle, "broken")
    assert holder.state == "failed" and holder.engine is None
    assert len(holder.load_error) < 300 and str(tmp_path) not in holder.load_error
    with pytest.raises(ApiError) as failed:
        asyncio.run(holder.ready_engine(0.1))
    assert failed.value.status == 503 and "load_failed" in str(failed.value.response().body)
    make_bundle(bundle, run_id="run-fixed", seed=1)
    holder.swap_if_new()
    assert holder.state == "ready" and holder.load_error is None
    engine = asyncio.run(holder.ready_engine(0.1))
    assert engine.version["bundle_digest"] == bundle_digest(bundle)[:16]


def test_a_request_waits_a_bounded_time_for_a_bundle_still_loading():
    holder = BundleHolder(reload_seconds=0)
    with pytest.raises(ApiError) as waiting:
        asyncio.run(holder.ready_engine(0.2))
    assert waiting.value.status == 503 and "not_ready" in str(waiting.value.response().body)


def test_only_a_store_tag_that_follows_the_latest_version_is_one_edits_can_move(tmp_path):
    assert latest_in_store("jewelry-bundle:latest") == "jewelry-bundle"
    assert latest_in_store("jewelry-bundle") == "jewelry-bundle"
    assert latest_in_store("jewelry-bundle:abc123") is None  # pinned: serving never moves
    assert latest_in_store(str(tmp_path)) is None and latest_in_store("./bundle") is None
