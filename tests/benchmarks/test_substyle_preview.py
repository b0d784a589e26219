"""The sub-style preview benchmark, run small: it measures each step and reports the target it
checks."""

from __future__ import annotations

import json

from benchmarks import _report, substyle_preview


def test_a_small_run_reports_every_step_and_its_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(_report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(_report, "PERFORMANCE", tmp_path / "PERFORMANCE.md")
    result = substyle_preview.main(["--items", "300", "--dims", "16,32", "--repeats", "1"])
    assert [row["dims"] for row in result["rows"]] == [16, 32]
    for row in result["rows"]:
        assert set(row["preview_seconds"]) == {"2", "6", "12"}
        assert row["meets_target"] == (
            row["slowest_preview_seconds"] + row["strips_seconds"] < result["target_seconds"]
        )
    stored = json.loads((tmp_path / "results" / "substyle_preview.json").read_text())
    assert stored["rows"] == result["rows"]
    text = (tmp_path / "PERFORMANCE.md").read_text()
    assert "## Sub-style preview" in text and "| 300 | 16 |" in text
