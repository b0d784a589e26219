"""The bulk-embedding benchmark, run light on a tiny bundle: it measures every mode, and the job
killed (SIGKILL) half-way then run again equals the uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from benchmarks import embed_catalog
from jewelry_pipeline.core.store import write_store
from tests.serving.conftest import CLASSES, PER_CLASS, catalog_photos, make_bundle


def test_light_run_measures_and_resumes_to_the_same_vectors(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "bundle", source="combined")
    write_store(tmp_path / "store.npy", catalog_photos(0))
    pd.DataFrame(
        {"category": np.repeat(CLASSES, PER_CLASS), "store_index": np.arange(PER_CLASS * 3)}
    ).to_csv(tmp_path / "manifest.csv", index=False)
    embed_catalog.main(
        [
            "--bundle", str(bundle), "--store", str(tmp_path / "store.npy"),
            "--manifest", str(tmp_path / "manifest.csv"), "--photos", "480",
            "--chunk-rows", "32", "--no-publish",
        ]
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    fault = result["fault"]
    assert fault["chunks"] == 15 and 7 <= fault["finished_before_kill"] < 15
    assert fault["equal_to_uninterrupted"] is True
    for mode in ("bare_models", "embed_quarter", "embed_full"):
        assert result[mode]["images_per_s"] > 0
    assert result["embed_full"]["peak_anon_mb"] > 0
