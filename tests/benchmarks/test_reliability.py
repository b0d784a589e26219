"""The reliability checks of `make reliability`, run light: a tiny bundle, short loads, tiny training."""

from __future__ import annotations

import pytest

from benchmarks import reliability
from tests.serving.conftest import make_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("reliability") / "bundle")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return reliability.make_project(tmp_path_factory.mktemp("reliability-project"), reliability.LIGHT)


@pytest.mark.parametrize("check", [reliability.check_load, reliability.check_soak, reliability.check_worker_kill, reliability.check_bad_bundles, reliability.check_hostile_files], ids=lambda c: c.__name__)
def test_service_checks_hold(check, bundle, tmp_path):
    result = check(bundle, tmp_path, reliability.LIGHT)
    assert result.passed, f"{result.name}: {result.figures}"


def test_runs_are_reproducible(project):
    result = reliability.check_reproducibility(project, reliability.LIGHT)
    assert result.passed, result.figures


def test_a_killed_training_run_leaves_nothing_half_written(project):
    result = reliability.check_killed_training(project, reliability.LIGHT)
    assert result.passed, result.figures


def test_a_locked_or_missing_tracking_database_stops_the_run_cleanly(project):
    result = reliability.check_tracking_database(project, reliability.LIGHT)
    assert result.passed, result.figures


def test_the_report_is_generated_from_results(tmp_path, monkeypatch):
    monkeypatch.setattr(reliability, "REPORT", tmp_path / "RELIABILITY.md")
    monkeypatch.setattr(reliability, "RESULTS", tmp_path / "reliability.json")
    checks = [reliability.Check("a", True, {"x": 1}, "holds"), reliability.Check("b", False, {"y": 2}, "breaks")]
    reliability.write_report(checks, tmp_path, reliability.LIGHT)
    text = (tmp_path / "RELIABILITY.md").read_text()
    assert "**1 of 2 checks pass.**" in text and "| a | PASS | holds | x=1 |" in text and "| b | FAIL | breaks | y=2 |" in text
