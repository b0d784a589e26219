"""The reliability checks of `make reliability`, run light: a tiny bundle, short loads, tiny
training."""

from __future__ import annotations

import pytest

from benchmarks.reliability import report
from benchmarks.reliability.checks import LIGHT, Check
from benchmarks.reliability.faults import check_bad_bundles, check_worker_kill
from benchmarks.reliability.hostile import check_hostile_files
from benchmarks.reliability.load import check_load
from benchmarks.reliability.project import make_project
from benchmarks.reliability.reproducibility import check_reproducibility
from benchmarks.reliability.run_faults import check_killed_training, check_tracking_database
from benchmarks.reliability.soak import check_soak
from tests.serving.conftest import make_bundle

SERVICE_CHECKS = [check_load, check_soak, check_worker_kill, check_bad_bundles, check_hostile_files]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("reliability") / "bundle")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("reliability-project"), LIGHT)


@pytest.mark.parametrize("check", SERVICE_CHECKS, ids=lambda c: c.__name__)
def test_service_checks_hold(check, bundle, tmp_path):
    result = check(bundle, tmp_path, LIGHT)
    assert result.passed, f"{result.name}: {result.figures}"


@pytest.mark.heavy
def test_runs_are_reproducible(project):
    result = check_reproducibility(project, LIGHT)
    assert result.passed, result.figures


@pytest.mark.heavy
def test_a_killed_training_run_leaves_nothing_half_written(project):
    result = check_killed_training(project, LIGHT)
    assert result.passed, result.figures


def test_a_locked_or_missing_tracking_database_stops_the_run_cleanly(project):
    result = check_tracking_database(project, LIGHT)
    assert result.passed, result.figures


def test_the_report_is_generated_from_results(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REPORT", tmp_path / "RELIABILITY.md")
    monkeypatch.setattr(report, "RESULTS", tmp_path / "reliability.json")
    checks = [Check("a", True, {"x": 1}, "holds"), Check("b", False, {"y": 2}, "breaks")]
    report.write_report(checks, tmp_path, LIGHT)
    text = (tmp_path / "RELIABILITY.md").read_text()
    assert (
        "**1 of 2 checks pass.**" in text
        and "| a | PASS | holds | x=1 |" in text
        and "| b | FAIL | breaks | y=2 |" in text
    )
