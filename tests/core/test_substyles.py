"""Sub-style edits on a tiny catalog of known groups: each edit does what it says, and a refused one
changes nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from jewelry_pipeline.core.search import l2_normalise
from jewelry_pipeline.core.substyles import (
    EditRefused,
    Partition,
    SubstyleCatalog,
    agreement_by_k,
    clean_name,
    criterion_by_k,
    kmeans,
    names_from_config,
    names_to_config,
)


def _groups(sizes: tuple[int, ...], dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in tight groups around orthogonal directions, and each one's group."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    vectors = np.eye(dim)[truth] + rng.normal(0, 0.05, (len(truth), dim))
    return l2_normalise(vectors), truth


def _catalog(ring_sizes=(6, 6, 6), earring_sizes=(5, 5)) -> SubstyleCatalog:
    """Two categories; rings clustered into two sub-styles (groups 1 and 2 lumped together)."""
    ring, ring_truth = _groups(ring_sizes)
    earring, earring_truth = _groups(earring_sizes, seed=1)
    catalog = pd.DataFrame(
        {
            "item_id": [f"r{i}" for i in range(len(ring))] + [f"e{i}" for i in range(len(earring))],
            "category": ["ring"] * len(ring) + ["earring"] * len(earring),
            "cluster": np.r_[np.minimum(ring_truth, 1), earring_truth],
        }
    )
    names = {"ring": {0: "Bands", 1: "Stones"}, "earring": {0: "Studs"}}
    return SubstyleCatalog(catalog, np.r_[ring, earring], names, seed=0)


def _ring_clusters(edited: SubstyleCatalog) -> np.ndarray:
    return edited.catalog.loc[edited.catalog["category"] == "ring", "cluster"].to_numpy()


def test_kmeans_finds_the_groups_numbered_by_size_and_repeats_itself():
    vectors, truth = _groups((9, 5, 3))
    labels = kmeans(vectors, 3, seed=4)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert np.bincount(labels).tolist() == [9, 5, 3]  # the largest is 0
    assert np.array_equal(labels, kmeans(vectors, 3, seed=4))


def test_the_criterion_peaks_at_the_true_k():
    vectors, _ = _groups((8, 8, 8, 8))
    scores = criterion_by_k(vectors, range(2, 7), seed=0)
    assert max(scores, key=scores.get) == 4 and set(scores) == {2, 3, 4, 5, 6}


def test_agreement_picks_the_k_the_other_views_draw_and_is_adjusted_for_chance():
    _, truth = _groups((10, 10, 10, 10))
    rng = np.random.default_rng(0)
    candidates = {2: truth // 2, 3: np.minimum(truth, 2), 4: truth}
    noisy_views = [np.where(rng.random(len(truth)) < 0.15, rng.integers(0, 4, len(truth)), truth)]
    scores = agreement_by_k(candidates, [truth, *noisy_views])
    assert max(scores, key=scores.get) == 4 and set(scores) == {2, 3, 4}
    assert agreement_by_k(candidates, []) == {}
    # Views unrelated to the items score about zero at every k: more clusters earn nothing.
    random_views = [rng.integers(0, k, 200) for k in (2, 4, 6, 8) for _ in range(3)]
    random_candidates = {k: rng.integers(0, k, 200) for k in range(2, 9)}
    by_chance = agreement_by_k(random_candidates, random_views)
    assert max(abs(v) for v in by_chance.values()) < 0.01 and by_chance[8] - by_chance[2] < 0.01


def test_typical_items_sit_at_the_centroid_and_edge_items_far_from_it():
    vectors, truth = _groups((6, 6))
    outlier = l2_normalise(np.eye(8)[[0]] + np.eye(8)[[1]])  # half-way to the other group
    vectors, truth = np.r_[vectors, outlier], np.r_[truth, 0]
    partition = Partition.of(vectors, truth)
    typical, edge = partition.typical_and_edge(vectors, 0, typical=3, edge=2)
    assert edge[0] == len(vectors) - 1  # the outlier is the first edge case
    assert not set(typical) & set(edge) and set(typical) <= set(np.flatnonzero(truth == 0))
    assert partition.sizes() == {0: 7, 1: 6}
    few_typical, few_edge = partition.typical_and_edge(vectors, 1, typical=5, edge=5)
    assert len(few_typical) == 5 and len(few_edge) == 1  # 6 members: never one twice


def test_rename_merge_split_move_and_set_k_do_what_they_say():
    start = _catalog()
    split = start.apply([{"op": "split", "category": "ring", "cluster": 1, "parts": 2}])
    truth = np.repeat([0, 1, 2], 6)
    assert adjusted_rand_score(truth, _ring_clusters(split)) == 1.0  # the lumped pair comes apart
    assert split.names["ring"] == {0: "Bands", 1: "Stones"}  # part one keeps the id and the name

    merged = split.apply([{"op": "merge", "category": "ring", "cluster": 2, "into": 0}])
    assert sorted(set(_ring_clusters(merged))) == [0, 1]
    assert np.array_equal(_ring_clusters(merged) == 0, np.isin(_ring_clusters(split), [0, 2]))

    rename = {"op": "rename", "category": "ring", "cluster": 0, "name": "  Plain  "}
    renamed = merged.apply([rename])
    assert renamed.names["ring"][0] == "Plain"

    moved = renamed.apply([{"op": "move", "category": "ring", "item_id": "r0", "to": 1}])
    assert _ring_clusters(moved)[0] == 1 and (_ring_clusters(moved)[1:6] == 0).all()

    reset = moved.apply([{"op": "set_k", "category": "ring", "k": 3}])
    assert adjusted_rand_score(truth, _ring_clusters(reset)) == 1.0
    assert reset.names["ring"] == {} and reset.names["earring"] == {0: "Studs"}
    earrings = reset.catalog["category"] == "earring"
    assert (
        reset.catalog.loc[earrings, "cluster"].tolist()
        == start.catalog.loc[earrings, "cluster"].tolist()
    )  # other categories untouched


def test_a_merged_sub_style_loses_its_name_and_the_original_is_never_changed():
    start = _catalog()
    before = start.catalog.copy()
    merged = start.apply([{"op": "merge", "category": "ring", "cluster": 1, "into": 0}])
    assert merged.names["ring"] == {0: "Bands"}
    pd.testing.assert_frame_equal(start.catalog, before)
    assert start.names["ring"] == {0: "Bands", 1: "Stones"}


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"op": "explode", "category": "ring"}, "'op' is one of"),
        ({"op": "rename", "category": "bracelet", "cluster": 0, "name": "x"}, "no category"),
        ({"op": "rename", "category": "ring", "cluster": 7, "name": "x"}, "no sub-style 7"),
        ({"op": "rename", "category": "ring", "cluster": 0, "name": ""}, "1 to 40 characters"),
        ({"op": "rename", "category": "ring", "cluster": 0, "name": "a\x00b"}, "control"),
        ({"op": "rename", "category": "ring", "cluster": "0", "name": "x"}, "whole number"),
        ({"op": "rename", "category": "ring", "cluster": True, "name": "x"}, "whole number"),
        ({"op": "merge", "category": "ring", "cluster": 0, "into": 0}, "into another"),
        ({"op": "split", "category": "ring", "cluster": 0, "parts": 5}, "2 to 4 parts"),
        ({"op": "move", "category": "ring", "item_id": "e0", "to": 0}, "no item 'e0'"),
        ({"op": "set_k", "category": "earring", "k": 13}, "2 to 10 for a category of 10"),
        ({"op": "set_k", "category": "earring", "k": 2.0}, "whole number"),
    ],
)
def test_a_refused_edit_says_why_and_the_set_changes_nothing(edit, says):
    start = _catalog()
    rename_first = {"op": "rename", "category": "ring", "cluster": 0, "name": "Kept?"}
    with pytest.raises(EditRefused, match=says) as refused:
        start.apply([rename_first, edit])
    assert str(refused.value).startswith("edit 2 (")
    assert start.names["ring"][0] == "Bands"


def test_names_are_trimmed_text():
    assert clean_name(" Art  deco\tstuds ") == "Art deco studs"
    for bad in (None, 3, "x" * 41, "\u200b"):
        with pytest.raises(EditRefused):
            clean_name(bad)


def test_names_go_to_the_bundle_config_and_back_and_a_bad_one_is_refused():
    names = {"ring": {1: "Stones", 0: "Bands"}, "earring": {}}
    stored = names_to_config(names)
    assert stored == {"ring": {"0": "Bands", "1": "Stones"}}  # JSON keys; empty left out
    assert names_from_config(stored) == {"ring": {0: "Bands", 1: "Stones"}}
    assert names_from_config(None) == {}
    for bad in ({"ring": {"x": "Bands"}}, {"ring": {"0": ""}}, {"ring": ["Bands"]}, ["ring"]):
        with pytest.raises(ValueError, match="substyles.names"):
            names_from_config(bad)
