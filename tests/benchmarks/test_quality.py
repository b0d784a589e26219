"""The real-photo quality benchmark in miniature: the same script, a few photos per class and one
epoch."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np

from benchmarks import fmnist, quality


def _fake_fashion_mnist(folder, per_class: int = 14) -> None:
    """IDX files in Fashion-MNIST's layout: each class a different blob on its own coarse
    texture."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(fmnist.CLASSES), dtype=np.uint8), per_class)
    ys, xs = np.mgrid[0:28, 0:28]
    images = np.empty((len(labels), 28, 28), np.uint8)
    for i, label in enumerate(labels):
        cy, cx = 8 + 12 * (label % 2) + rng.normal(0, 1), 6 + 3 * (label // 2) + rng.normal(0, 1)
        blob = 255 * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (10 + 4 * label))
        texture = np.kron(
            rng.uniform(0, 120, (4, 4)), np.ones((7, 7))
        )  # coarse, distinct per photo: no near-duplicates
        images[i] = np.clip(blob + texture + rng.normal(0, 8, (28, 28)), 0, 255)
    folder.mkdir()
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(struct.pack(">IIII", 2051, len(labels), 28, 28) + images.tobytes())


def test_fashion_mnist_trees_follow_the_labels(tmp_path):
    _fake_fashion_mnist(tmp_path / "idx")
    tree = fmnist.write_tree(
        tmp_path / "groups", grouped=True, per_class=5, data_dir=tmp_path / "idx"
    )
    substyles = (tree / "substyles.csv").read_text().splitlines()
    assert sorted(p.name for p in tree.iterdir() if p.is_dir()) == sorted(fmnist.GROUPS)
    assert len(substyles) == 1 + 5 * len(fmnist.CLASSES)
    assert any(
        line.startswith("footwear/sandal_") and line.endswith(",footwear,sandal")
        for line in substyles
    )
    flat = fmnist.write_tree(
        tmp_path / "flat", grouped=False, per_class=3, data_dir=tmp_path / "idx"
    )
    assert len(list((flat / "bag").glob("*.png"))) == 3


def test_mini_quality_benchmark_runs_every_dataset_and_reports_each_target(tmp_path):
    _fake_fashion_mnist(tmp_path / "idx")
    docs, results = tmp_path / "docs", tmp_path / "quality.json"
    quality.main(
        [
            "--mini",
            "--work",
            str(tmp_path / "work"),
            "--docs",
            str(docs),
            "--results",
            str(results),
            "--fmnist-dir",
            str(tmp_path / "idx"),
        ]
    )
    summary = json.loads(results.read_text())
    assert [d["dataset"] for d in summary["datasets"]] == ["fmnist10", "fmnist-groups", "builtin"]
    for dataset in summary["datasets"]:
        assert dataset["autoencoder_input"]["input"] in ("photo", "foreground")
        assert {r["source"] for r in dataset["retrieval"]} >= {
            "pixels",
            "pca",
            "autoencoder",
            "classifier",
            "combined",
        }
        assert {
            "baseline_pca_logistic_test_accuracy",
            "baseline_pixel_logistic_test_accuracy",
        } <= set(dataset["classifier"])
        kinds = " ".join(t["target"] for t in dataset["targets"])
        assert "classifier accuracy" in kinds and "reconstruction" in kinds
        if dataset["dataset"] != "fmnist10":
            assert "ae_kmeans ARI" in kinds and "sub-style p@10" in kinds
        assert (docs / "quality" / f"{dataset['dataset']}_queries.png").stat().st_size > 1000
        assert (docs / "quality" / f"{dataset['dataset']}_reconstructions.png").exists()
    text = (docs / "QUALITY.md").read_text()
    assert "## fmnist10" in text and "## fmnist-groups" in text and "## builtin" in text
