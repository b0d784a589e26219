"""Tests for the stratified, duplicate-safe split."""

import numpy as np
import pandas as pd
import pytest

from jewelry_pipeline.pipelines.split.nodes import duplicate_groups, split_manifest

PARAMS = {"train": 0.7, "val": 0.15, "test": 0.15, "seed": 3, "group_max_hamming": 6}


def make_manifest(per_category: dict[str, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for category, count in per_category.items():
        for _ in range(count):
            rows.append(
                {
                    "item_id": f"{rng.integers(1 << 62):016x}",
                    "category": category,
                    "phash": f"{rng.integers(1 << 63):016x}",
                }
            )
    frame = pd.DataFrame(rows)
    frame["store_index"] = range(len(frame))
    return frame


def test_fractions_are_met_per_category():
    manifest = make_manifest({"ring": 200, "earring": 100, "bangle": 40})
    out = split_manifest(manifest, PARAMS)
    counts = out.groupby(["category", "split"]).size().unstack()
    for category, total in {"ring": 200, "earring": 100, "bangle": 40}.items():
        assert abs(counts.loc[category, "test"] - 0.15 * total) <= 1
        assert abs(counts.loc[category, "val"] - 0.15 * total) <= 1
    assert out["store_index"].tolist() == manifest["store_index"].tolist()


def test_same_seed_same_split_other_seed_differs():
    manifest = make_manifest({"ring": 100, "earring": 100})
    first = split_manifest(manifest, PARAMS)["split"].tolist()
    shuffled = manifest.sample(frac=1, random_state=1)
    again = (
        split_manifest(shuffled, PARAMS)
        .set_index("item_id")
        .loc[manifest["item_id"], "split"]
        .tolist()
    )
    assert first == again
    assert first != split_manifest(manifest, {**PARAMS, "seed": 4})["split"].tolist()


def test_look_alike_groups_never_span_two_splits():
    manifest = make_manifest({"ring": 60, "earring": 60})
    # make ten triples of near-identical hashes (1 bit apart)
    for k in range(10):
        base = int(manifest.loc[3 * k, "phash"], 16)
        manifest.loc[3 * k + 1, "phash"] = f"{base ^ 1:016x}"
        manifest.loc[3 * k + 2, "phash"] = f"{base ^ 2:016x}"
    out = split_manifest(manifest, PARAMS)
    assert out.groupby("group")["split"].nunique().max() == 1
    assert out.groupby("group").size().max() >= 3


def test_duplicate_groups_are_transitive():
    hashes = pd.Series([f"{0:016x}", f"{0b111:016x}", f"{0b111111:016x}", f"{(1 << 64) - 1:016x}"])
    groups = duplicate_groups(hashes, 3)
    assert groups[0] == groups[1] == groups[2] != groups[3]


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        split_manifest(make_manifest({"a": 10}), {**PARAMS, "train": 0.9})


def test_ingestion_and_split_are_reproducible(tiny_dataset):
    from jewelry_pipeline.core.folders import list_image_folder
    from jewelry_pipeline.pipelines.ingestion.nodes import decode_images

    preprocessing = {"image_size": 32}
    ingestion = {"near_duplicate_max_hamming": 2, "workers": 3, "chunk_size": 5}
    runs = []
    for _ in range(2):
        store, manifest, _, _ = decode_images(
            list_image_folder(tiny_dataset), {}, preprocessing, ingestion
        )
        runs.append((store.copy(), split_manifest(manifest, PARAMS)))
    assert np.array_equal(runs[0][0], runs[1][0])
    pd.testing.assert_frame_equal(runs[0][1], runs[1][1])


def test_a_category_left_without_validation_or_test_photos_is_warned_with_counts(caplog):
    manifest = make_manifest({"ring": 100, "earring": 3})
    with caplog.at_level("WARNING"):
        out = split_manifest(manifest, PARAMS)
    counts = out[out["category"] == "earring"]["split"].value_counts()
    assert counts.get("val", 0) == 0 or counts.get("test", 0) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert (
        len(warnings) == 1
        and "earring 3/0/0" in warnings[0]
        and "ring" not in warnings[0].replace("earring", "")
    )


def test_the_split_comes_with_the_record_of_its_ingestion():
    from jewelry_pipeline.core.lineage import check_split
    from jewelry_pipeline.pipelines.split.nodes import split_and_record

    manifest = make_manifest({"a": 20, "b": 20})
    ingested = {"raw_dir": "/photos", "manifest_sha256": "abc", "photos": 40}
    rows, identity = split_and_record(manifest, ingested, PARAMS)
    assert rows.equals(split_manifest(manifest, PARAMS))
    check_split(identity, ingested, rows)  # what later pipelines check passes
