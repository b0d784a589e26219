"""The eager-or-traced benchmark, run small: it times both modes for each model and judges the
project's step limit against what it measured."""

from __future__ import annotations

import json

from benchmarks import _report, eager_training
from jewelry_pipeline.core.models.data import eager_step_limit


def test_a_small_run_times_both_modes_and_judges_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(_report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(_report, "PERFORMANCE", tmp_path / "PERFORMANCE.md")
    result = eager_training.main(["--sizes", "16x4", "--steps", "3"])
    assert [row["model"] for row in result["rows"]] == ["classifier", "autoencoder"]
    for row in result["rows"]:
        assert set(row["fit_seconds"]) == {"traced_1", "traced_3", "eager_1", "eager_3"}
        assert all(seconds > 0 for seconds in row["fit_seconds"].values())
        assert row["project_limit_steps"] == eager_step_limit(4, 16)
        measured = row["eager_ahead_up_to_steps"]
        assert row["limit_holds"] == (measured is None or row["project_limit_steps"] <= measured)
    assert result["holds"] == all(row["limit_holds"] for row in result["rows"])
    stored = json.loads((tmp_path / "results" / "eager_training.json").read_text())
    assert stored["rows"] == result["rows"]
    assert "## Eager or traced training" in (tmp_path / "PERFORMANCE.md").read_text()
