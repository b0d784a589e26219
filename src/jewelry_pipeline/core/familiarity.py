"""How familiar a photo looks to the catalog: its mean cosine similarity to its nearest training
photos in the classifier's pooled features (the input of its embedding layer), for "not in our
catalog".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jewelry_pipeline.core.search import l2_normalise


@dataclass(frozen=True)
class FamiliarityReference:
    """Unit pooled-feature vectors of a sample of training photos, and how many nearest ones a
    photo's familiarity averages over."""

    vectors: np.ndarray  # (n, d) unit rows, float16 values (stored as such) held as float32
    neighbours: int

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.vectors) == 0:
            raise ValueError("a familiarity reference needs at least one vector")
        if self.neighbours < 1:
            raise ValueError(f"familiarity neighbours must be at least 1; got {self.neighbours}")

    @classmethod
    def sample(
        cls,
        pooled: np.ndarray,
        categories: np.ndarray,
        size: int,
        neighbours: int,
        seed: int,
    ) -> FamiliarityReference:
        """At most `size` of the given photos' pooled features, the same share of each category
        (seeded), as unit vectors rounded to half precision (as stored, so the run and the service
        score alike)."""
        categories = np.asarray(categories).astype(str)
        keep = np.arange(len(pooled))
        if len(pooled) > size:
            rng = np.random.default_rng(seed)
            keep = np.sort(
                np.concatenate(
                    [
                        rng.choice(members, max(1, round(size * len(members) / len(pooled))), False)
                        for members in (
                            np.flatnonzero(categories == name) for name in np.unique(categories)
                        )
                    ]
                )
            )
        vectors = l2_normalise(np.asarray(pooled, dtype=np.float32)[keep]).astype(np.float16)
        return cls(vectors.astype(np.float32), min(int(neighbours), len(vectors)))

    def score(self, pooled: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Each row's familiarity: mean cosine similarity to its `neighbours` nearest reference
        vectors, in [-1, 1] (half-precision rounding can push a cosine a hair past 1)."""
        queries = l2_normalise(np.asarray(pooled, dtype=np.float32))
        scores = np.empty(len(queries), np.float32)
        for start in range(0, len(queries), chunk):
            similarity = queries[start : start + chunk] @ self.vectors.T
            nearest = np.partition(similarity, -self.neighbours, axis=1)[:, -self.neighbours :]
            scores[start : start + chunk] = nearest.mean(axis=1)
        return np.clip(scores, -1.0, 1.0)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The reference as `.npz` entries (no pickles)."""
        return {
            "vectors": self.vectors.astype(np.float16),
            "neighbours": np.array(self.neighbours, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FamiliarityReference:
        """`to_arrays` reversed."""
        return cls(np.asarray(arrays["vectors"], dtype=np.float32), int(arrays["neighbours"]))
