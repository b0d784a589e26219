"""Real catalog photos for the quality benchmark: Fashion-MNIST (Debian's `dataset-fashion-mnist`)
as folder trees.

`fmnist10` has one folder per fine class; `fmnist-groups` folds the classes into footwear, tops and
other, with the fine class written to `substyles.csv` (evaluation only, as for the built-in data).
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
GROUPS = {
    "footwear": ("sandal", "sneaker", "ankle-boot"),
    "tops": ("t-shirt", "pullover", "coat", "shirt"),
    "other": ("trouser", "dress", "bag"),
}


def read_split(split: str = "train", data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) uint8 and labels (n,) of one IDX split: `train` or `t10k`."""
    with gzip.open(data_dir / f"{split}-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    with gzip.open(data_dir / f"{split}-images-idx3-ubyte.gz") as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(len(labels), 28, 28)
    return images, labels


def _sample(labels: np.ndarray, per_class: int, seed: int) -> dict[int, np.ndarray]:
    """`per_class` row numbers of each class present, drawn without replacement for `seed`."""
    rng = np.random.default_rng(seed)
    return {
        c: np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False))
        for c in range(len(CLASSES))
        if (labels == c).any()
    }


def write_tree(
    out: Path, grouped: bool, per_class: int, seed: int = 0, data_dir: Path = DATA_DIR
) -> Path:
    """Write PNG photos into `out/<category>/` and `out/substyles.csv`; return `out`.

    With `grouped`, categories are the GROUPS and the fine class is the sub-style; otherwise every
    fine class is its own category (and its own sub-style).
    """
    images, labels = read_split("train", data_dir)
    group_of = {fine: group for group, members in GROUPS.items() for fine in members}
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for class_id, picked in _sample(labels, per_class, seed).items():
        fine = CLASSES[class_id]
        category = group_of[fine] if grouped else fine
        folder = out / category
        folder.mkdir(exist_ok=True)
        for row in picked:
            relpath = f"{category}/{fine}_{row:05d}.png"
            Image.fromarray(images[row]).save(out / relpath)
            rows.append((relpath, category, fine))
    with open(out / "substyles.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "category", "substyle"])
        writer.writerows(sorted(rows))
    return out
