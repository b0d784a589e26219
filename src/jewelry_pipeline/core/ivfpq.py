"""IVF-PQ short lists for catalogs whose vectors do not fit in RAM (FAISS `IndexIVFPQFastScan`).

One IVF-PQ index per partition (the category), or one over every row: the compressed codes (a few
dozen bytes a vector) live in RAM and name candidate rows; `EmbeddingIndex` re-ranks them exactly
from the memory-mapped vectors. Inner product on unit vectors (cosine), spherical k-means. The
codes are 4-bit ("fast scan": scored with SIMD table look-ups), two sub-quantizers a byte: at 48
bytes a 192-d vector they found the exact top-10 as often as 8-bit codes of the same size while
scanning about three times faster (1/4 of 1M vectors drawn as `benchmarks/retrieval.py` draws
them). Training uses a bounded, seeded random sample; rows are added in chunks, so memory stays
bounded while building. Partitions too small to train are searched exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ALL_ROWS = -1  # the key of the one index over every row, when the index has no partitions
ADD_CHUNK = 262_144  # rows read and added at a time
MAX_LISTS = 65_536
POINTS_PER_LIST = 39  # FAISS k-means asks for at least 39 training points per centroid
PQ_BITS = 4  # fast-scan codes: each sub-quantizer has 16 centroids, two codes a byte
MIN_TRAIN_ROWS = 256  # a partition with fewer rows is always searched exactly


@dataclass(frozen=True)
class IvfPqSettings:
    """The `ivfpq:` parameters.

    `lists` 0 is auto (about 4 * sqrt(rows) per partition, at most rows / 39); `pq_bytes` is the
    code size (two 4-bit sub-quantizers a byte; their count is the largest divisor of the
    dimension not above 2 * pq_bytes); `nprobe` lists are scanned per query; `rerank` candidates
    are re-ranked exactly; a partition with fewer than `exact_below` rows is searched exactly;
    each partition trains on `train_size` random rows (at least 39 a list; all of a smaller one).
    """

    lists: int = 0
    pq_bytes: int = 48
    nprobe: int = 1024
    rerank: int = 1000
    exact_below: int = 10_000
    train_size: int = 300_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lists", "exact_below", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"ivfpq.{name} must be >= 0; got {getattr(self, name)}")
        for name in ("pq_bytes", "nprobe", "rerank", "train_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ivfpq.{name} must be >= 1; got {getattr(self, name)}")

    @classmethod
    def from_config(cls, config: dict[str, Any] | None, seed: int = 0) -> IvfPqSettings:
        """The parameters' `ivfpq:` block (`lists: auto` or a number); missing values take the
        defaults."""
        config = dict(config or {})
        lists = config.pop("lists", "auto")
        unknown = set(config) - {"pq_bytes", "nprobe", "rerank", "exact_below", "train_size"}
        if unknown:
            raise ValueError(f"unknown ivfpq parameters {sorted(unknown)}")
        return cls(
            lists=0 if lists in (None, "auto") else int(lists),
            seed=int(seed),
            **{k: int(v) for k, v in config.items()},
        )

    def to_array(self) -> np.ndarray:
        """The settings as one int64 array (for `.npz`)."""
        return np.array(list(asdict(self).values()), np.int64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> IvfPqSettings:
        """`to_array` reversed."""
        return cls(*(int(v) for v in values))

    def lists_for(self, rows: int) -> int:
        """Inverted lists for a partition of `rows` rows: never more than its rows / 39."""
        wanted = self.lists or round(4 * math.sqrt(rows))
        return int(max(1, min(wanted, rows // POINTS_PER_LIST, MAX_LISTS)))

    def sub_quantizers(self, dimension: int) -> int:
        """4-bit sub-quantizers per code: the largest divisor of `dimension` <= 2 * `pq_bytes`."""
        most = min(2 * self.pq_bytes, dimension)
        return max(m for m in range(1, most + 1) if dimension % m == 0)


class IvfPqLists:
    """The trained IVF-PQ indexes, by partition code (`ALL_ROWS` for one over every row).

    Each holds its rows' global positions as ids, so a short list names rows of the whole index and
    one bitmap selector (over all rows) filters any of them. `partitioned`: built per partition (a
    partition without an index is searched exactly), else over all rows.
    """

    def __init__(self, settings: IvfPqSettings, indexes: dict[int, Any], partitioned: bool):
        self.settings = settings
        self.indexes = indexes
        self.partitioned = partitioned

    @classmethod
    def train(
        cls,
        vectors: np.ndarray,
        codes: np.ndarray | None,
        settings: IvfPqSettings,
    ) -> IvfPqLists:
        """Train one index per partition big enough (`codes` per row, None: one over all rows) on a
        seeded sample, then add every row in chunks."""
        import faiss

        n, dimension = vectors.shape
        if codes is None:
            keys, counts = [ALL_ROWS], [n]
        else:
            keys, counts = (a.tolist() for a in np.unique(codes, return_counts=True))
        m = settings.sub_quantizers(dimension)
        rng = np.random.default_rng(settings.seed)
        indexes = {}
        for key, rows in zip(keys, counts):
            if rows < max(settings.exact_below, MIN_TRAIN_ROWS):
                continue
            lists = settings.lists_for(rows)
            members = np.arange(n) if codes is None else np.flatnonzero(codes == key)
            size = min(rows, max(settings.train_size, POINTS_PER_LIST * lists))
            sample = np.sort(rng.choice(members, size, replace=False))
            del members
            index = faiss.IndexIVFPQFastScan(
                faiss.IndexFlatIP(dimension),
                dimension,
                lists,
                m,
                PQ_BITS,
                faiss.METRIC_INNER_PRODUCT,
            )
            index.cp.spherical = True
            index.train(_rows(vectors, sample))
            indexes[key] = index
            logger.info(
                "IVF-PQ partition %s: %d rows, %d lists, %d 4-bit sub-quantizers, trained on %d",
                key,
                rows,
                lists,
                m,
                size,
            )
        for start in range(0, n, ADD_CHUNK):
            block = np.ascontiguousarray(vectors[start : start + ADD_CHUNK], np.float32)
            positions = np.arange(start, start + len(block), dtype=np.int64)
            for key, index in indexes.items():
                chosen = slice(None) if codes is None else codes[start : start + len(block)] == key
                index.add_with_ids(block[chosen], positions[chosen])
        return cls(settings, indexes, codes is not None)

    def short_list(
        self, keys: list[int], queries: np.ndarray, count: int, selector: Any | None = None
    ) -> np.ndarray:
        """Up to `count` candidate positions per query (best first; -1 pads) from the indexes
        `keys`. Across several indexes the `nprobe` lists whose centroids are nearest the query
        are scanned, wherever they are (as one index over their rows would), and the candidates
        with the best approximate scores kept."""
        import faiss

        nprobe = self.settings.nprobe
        if len(keys) == 1:
            index = self.indexes[keys[0]]
            params = faiss.SearchParametersIVF(nprobe=min(nprobe, index.nlist))
            if selector is not None:
                params.sel = selector
            return index.search(queries, count, params=params)[1]
        coarse = [
            self.indexes[key].quantizer.search(queries, min(nprobe, self.indexes[key].nlist))
            for key in keys
        ]
        similarity = np.concatenate([found[0] for found in coarse], axis=1)
        lists = np.concatenate([found[1] for found in coarse], axis=1)
        similarity[lists < 0] = -np.inf
        nprobe = min(nprobe, similarity.shape[1])
        nearest = np.argpartition(-similarity, nprobe - 1, axis=1)[:, :nprobe]
        chosen = np.zeros(similarity.shape, bool)
        np.put_along_axis(chosen, nearest, True, axis=1)
        scores, positions, first = [], [], 0
        for key, (_, found) in zip(keys, coarse):
            mine = slice(first, first + found.shape[1])
            first += found.shape[1]
            assign = np.ascontiguousarray(np.where(chosen[:, mine], found, -1))
            if (assign < 0).all():
                continue
            # kept in a name: FAISS reads it through a raw pointer during the call
            centroid = similarity[:, mine]
            centroid = np.ascontiguousarray(
                np.where(np.isfinite(centroid), centroid, 0), np.float32
            )
            queries = np.ascontiguousarray(queries, np.float32)
            params = faiss.SearchParametersIVF(nprobe=assign.shape[1])
            if selector is not None:
                params.sel = selector
            out_scores = np.empty((len(queries), count), np.float32)
            out_positions = np.empty((len(queries), count), np.int64)
            self.indexes[key].search_preassigned_c(
                len(queries),
                faiss.swig_ptr(queries),
                count,
                faiss.swig_ptr(assign),
                faiss.swig_ptr(centroid),
                faiss.swig_ptr(out_scores),
                faiss.swig_ptr(out_positions),
                False,
                params,
            )
            scores.append(np.where(out_positions >= 0, out_scores, -np.inf))
            positions.append(out_positions)
        if not positions:
            return np.full((len(queries), count), -1, np.int64)
        scores, positions = np.concatenate(scores, axis=1), np.concatenate(positions, axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :count]
        return np.take_along_axis(positions, best, axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Serialized indexes (FAISS bytes, concatenated) with their keys and offsets."""
        import faiss

        blobs = [faiss.serialize_index(index) for index in self.indexes.values()]
        return {
            "ivfpq_params": self.settings.to_array(),
            "ivfpq_partitioned": np.array(self.partitioned),
            "ivfpq_keys": np.array(list(self.indexes), np.int64),
            "ivfpq_offsets": np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
            "ivfpq_bytes": np.concatenate(blobs) if blobs else np.empty(0, np.uint8),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> IvfPqLists:
        """`to_arrays` reversed."""
        import faiss

        blob, offsets = arrays["ivfpq_bytes"], arrays["ivfpq_offsets"]
        indexes = {
            int(key): faiss.deserialize_index(
                np.ascontiguousarray(blob[offsets[i] : offsets[i + 1]])
            )
            for i, key in enumerate(arrays["ivfpq_keys"])
        }
        return cls(
            IvfPqSettings.from_array(arrays["ivfpq_params"]),
            indexes,
            bool(arrays["ivfpq_partitioned"]),
        )


def _rows(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`vectors[rows]` as a float32 array, read in chunks (`rows` sorted)."""
    out = np.empty((len(rows), vectors.shape[1]), np.float32)
    for start in range(0, len(rows), ADD_CHUNK):
        out[start : start + ADD_CHUNK] = vectors[rows[start : start + ADD_CHUNK]]
    return out
