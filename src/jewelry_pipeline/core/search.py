"""The embedding index: exact cosine top-k (NumPy), approximate HNSW (FAISS) or IVF-PQ (FAISS codes
in RAM, exact re-ranking from memory-mapped vectors), stored as `.npz` (plus a `.npy` of vectors for
IVF-PQ)."""

from __future__ import annotations

import mmap
import os
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from jewelry_pipeline.core.ivfpq import ALL_ROWS, IvfPqLists, IvfPqSettings

BACKENDS = ("exact", "hnsw", "ivfpq")
MEMORY_MAPPED_BACKENDS = ("ivfpq",)  # vectors stored in their own `.npy`, read memory-mapped
EXACT_CHUNK = 262_144  # rows scored at a time when searching memory-mapped vectors exactly


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def vectors_file(path: str | Path) -> Path:
    """Where `EmbeddingIndex.save` puts the vectors of a memory-mapped backend: `<stem>_vectors.npy`
    beside the `.npz` (the bundle's `index_vectors.npy`)."""
    path = Path(path)
    return path.with_name(f"{path.stem}_vectors.npy")


def _file_backed(vectors: np.ndarray) -> bool:
    """Whether `vectors` is a whole memory-mapped `.npy` (rows can be read from its file)."""
    if not isinstance(vectors, np.memmap) or vectors.filename is None or vectors.ndim != 2:
        return False
    size = vectors.offset + vectors.shape[0] * vectors.shape[1] * vectors.itemsize
    return vectors.flags.c_contiguous and os.path.getsize(vectors.filename) == size


class RowFile:
    """The rows of a memory-mapped `.npy`, read with `pread` on a descriptor opened once.

    The file's pages stay in the page cache, shared and reclaimable, and never count in this
    process's RSS (a memory-map access maps the pages around each row too, so RSS would grow towards
    the file's size as searches touch it). The open descriptor keeps reading after the file is
    deleted, as a bundle's older versions are.
    """

    def __init__(self, vectors: np.memmap):
        self.filename, self.offset = str(vectors.filename), int(vectors.offset)
        self.columns, self.dtype = int(vectors.shape[1]), vectors.dtype
        self.width = self.columns * vectors.itemsize
        self.descriptor = os.open(self.filename, os.O_RDONLY)
        weakref.finalize(self, os.close, self.descriptor)

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The given rows, as float32."""
        rows = np.asarray(rows, np.int64).ravel()
        out = np.empty((len(rows), self.columns), self.dtype)
        view, width = memoryview(out).cast("B"), self.width
        for i, row in enumerate(rows.tolist()):
            chunk = view[i * width : (i + 1) * width]
            if os.preadv(self.descriptor, [chunk], self.offset + row * width) != width:
                raise OSError(f"{self.filename}: short read of row {row}")
        return out.astype(np.float32, copy=False)


def release_mapped_pages(vectors: np.ndarray) -> None:
    """Unmap the pages a pass over a memory-mapped array touched (they stay in the page cache), so
    the process's RSS does not keep the file; no-op for arrays in memory."""
    handle = getattr(vectors, "_mmap", None)
    if isinstance(vectors, np.memmap) and handle is not None:
        handle.madvise(mmap.MADV_DONTNEED)


def top_k_of_rows(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    rows: np.ndarray | None = None,
    max_scores_in_memory: int = 20_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (positions, scores) of unit `queries` among `rows` of `vectors` (None: all;
    sorted rows read fastest), reading the vectors in chunks, so a memory-mapped file is never
    read whole into memory; at most about `max_scores_in_memory` scores are held at once."""
    total = len(vectors) if rows is None else len(rows)
    k = min(k, total)
    step = max(1, min(EXACT_CHUNK, max_scores_in_memory // max(1, len(queries))))
    best_positions = np.empty((len(queries), 0), np.int64)
    best_scores = np.empty((len(queries), 0), np.float32)
    for start in range(0, total, step):
        stop = min(total, start + step)
        chosen = np.arange(start, stop) if rows is None else rows[start:stop]
        block = vectors[start:stop] if rows is None else vectors[chosen]
        scores = queries @ np.asarray(block, np.float32).T
        if scores.shape[1] > k:  # this chunk's best k first: the merge stays small
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores, positions = np.take_along_axis(scores, top, axis=1), chosen[top]
        else:
            positions = np.broadcast_to(chosen, scores.shape)
        scores = np.concatenate([best_scores, scores], axis=1)
        positions = np.concatenate([best_positions, positions], axis=1)
        if scores.shape[1] > k:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores = np.take_along_axis(scores, top, axis=1)
            positions = np.take_along_axis(positions, top, axis=1)
        best_scores, best_positions = scores, positions
        release_mapped_pages(vectors)  # each chunk's pages leave RSS as soon as it is scored
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_positions, order, axis=1), np.take_along_axis(
        best_scores, order, axis=1
    )


@dataclass(frozen=True)
class Partitions:
    """A label per row (the category) as sorted names and an int32 code per row; a search can keep
    one partition's rows, and IVF-PQ builds one index per partition."""

    names: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray) -> Partitions:
        """Partitions from one label per row."""
        names, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
        return cls(names, codes.astype(np.int32))

    def code(self, name: str) -> int | None:
        """The code of partition `name` (None: no row has it)."""
        found = int(np.searchsorted(self.names, name))
        return found if found < len(self.names) and self.names[found] == name else None

    def labels(self) -> np.ndarray:
        """One label per row."""
        return self.names[self.codes]


@dataclass
class EmbeddingIndex:
    """Unit vectors with their item ids; cosine similarity is the inner product.

    `partitions` optionally labels each row (the category): `search(partition=...)` keeps one
    partition's rows, and the IVF-PQ backend trains one index per partition (Milvus's partition-key
    model). IVF-PQ vectors may be a read-only `np.memmap` of vectors already unit length (as
    `save` wrote them); they are then neither copied nor normalised.
    """

    item_ids: np.ndarray
    vectors: np.ndarray
    backend: str = "exact"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = (
        1024  # measured: recall@10 0.976 at p50 3.1 ms on 1M 192-d vectors (docs/PERFORMANCE.md)
    )
    max_scores_in_memory: int = (
        20_000_000  # exact search scores queries in blocks of this many floats
    )
    ivfpq: IvfPqSettings = field(default_factory=IvfPqSettings)
    partitions: Partitions | np.ndarray | None = None
    _faiss_index: object = field(default=None, repr=False, init=False)
    _ivf: IvfPqLists | None = field(default=None, repr=False, init=False)
    _cache: dict = field(default_factory=dict, repr=False, init=False)
    _row_file: RowFile | None = field(default=None, repr=False, init=False)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown index backend '{self.backend}'; choose one of {BACKENDS}")
        ids = np.asarray(self.item_ids)
        self.item_ids = ids if ids.dtype.kind == "U" else ids.astype(str)
        if isinstance(self.vectors, np.memmap):
            if self.vectors.ndim != 2 or self.vectors.dtype != np.float32:
                raise ValueError("memory-mapped vectors must be a 2-d float32 array")
        else:
            self.vectors = l2_normalise(self.vectors)
        if len(self.item_ids) != len(self.vectors):
            raise ValueError("item_ids and vectors differ in length")
        if _file_backed(self.vectors):
            self._row_file = RowFile(self.vectors)
        if self.partitions is not None and not isinstance(self.partitions, Partitions):
            self.partitions = Partitions.of(self.partitions)
        if self.partitions is not None and len(self.partitions.codes) != len(self.vectors):
            raise ValueError("partitions and vectors differ in length")

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The unit vectors at `positions` (float32); memory-mapped ones read with `pread`
        (`RowFile`)."""
        if self._row_file is not None:
            return self._row_file.read(positions)
        return np.asarray(self.vectors[np.asarray(positions, np.int64).ravel()], np.float32)

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return int(self.vectors.shape[1])

    def build(self) -> EmbeddingIndex:
        """Build the HNSW graph or train and fill the IVF-PQ lists (no-op for the exact backend
        and for an index already built or loaded)."""
        if self.backend == "hnsw" and self._faiss_index is None:
            import faiss

            index = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.add(self.vectors)
            index.hnsw.efSearch = self.ef_search
            self._faiss_index = index
        if self.backend == "ivfpq" and self._ivf is None:
            codes = None if self.partitions is None else self.partitions.codes
            self._ivf = IvfPqLists.train(self.vectors, codes, self.ivfpq)
        return self

    def with_partitions(self, labels: np.ndarray) -> EmbeddingIndex:
        """Label the rows (e.g. with the catalog's categories) when the index has no partitions
        yet; an IVF-PQ index built without them filters its one index with a selector."""
        if self.partitions is None:
            partitions = Partitions.of(labels)
            if len(partitions.codes) != len(self.vectors):
                raise ValueError("partitions and vectors differ in length")
            self.partitions = partitions
            self._cache.clear()
        return self

    def set_ivfpq_search(self, nprobe: int | None = None, rerank: int | None = None) -> None:
        """Change how widely IVF-PQ searches: lists scanned and short-list size re-ranked exactly
        (higher: better recall, slower queries)."""
        changes = {"nprobe": nprobe, "rerank": rerank}
        self.ivfpq = replace(self.ivfpq, **{k: int(v) for k, v in changes.items() if v})
        if self._ivf is not None:
            self._ivf.settings = self.ivfpq

    def set_ef_search(self, ef_search: int) -> None:
        """Change the HNSW search breadth (higher: better recall, slower queries)."""
        self.ef_search = int(ef_search)
        if self._faiss_index is not None:
            self._faiss_index.hnsw.efSearch = self.ef_search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        partition: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, scores) per query.

        `allowed` is an optional boolean mask over the index; `partition` keeps only the rows of
        that partition (see `partitions`; an unknown one has no rows). With both, rows pass both.
        """
        queries = l2_normalise(np.atleast_2d(queries))
        code = None
        if partition is not None:
            if self.partitions is None:
                raise ValueError("this index has no partitions; filter with an `allowed` mask")
            code = self.partitions.code(str(partition))
            if code is None:
                k = 0
        if code is None:
            available = len(self.vectors) if allowed is None else int(np.sum(allowed))
        else:
            rows = self._partition_rows(code)
            available = len(rows) if allowed is None else int(np.count_nonzero(allowed[rows]))
        k = min(k, available)
        if k <= 0:
            return np.empty((len(queries), 0), int), np.empty((len(queries), 0), np.float32)
        if self.backend == "ivfpq":
            return self._ivfpq_top_k(queries, k, allowed, code)
        if code is not None:
            mask = self._partition_mask(code)
            allowed = mask if allowed is None else mask & allowed
        if self.backend == "hnsw":
            positions, scores = self._hnsw_top_k(queries, k, allowed)
            if (positions >= 0).all():
                return positions, scores
        positions = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        step = max(1, self.max_scores_in_memory // max(1, len(self.vectors)))
        for start in range(0, len(queries), step):
            chunk = slice(start, start + step)
            positions[chunk], scores[chunk] = self._exact_top_k(queries[chunk], k, allowed)
        return positions, scores

    def _partition_rows(self, code: int) -> np.ndarray:
        """The positions of one partition's rows (cached)."""
        key = ("rows", code)
        if key not in self._cache:
            self._cache[key] = np.flatnonzero(self.partitions.codes == code)
        return self._cache[key]

    def _partition_mask(self, code: int) -> np.ndarray:
        """A boolean mask of one partition's rows (cached)."""
        key = ("mask", code)
        if key not in self._cache:
            self._cache[key] = self.partitions.codes == code
        return self._cache[key]

    def _selector(self, allowed: np.ndarray, code: int | None = None) -> tuple[object, np.ndarray]:
        """A FAISS bitmap selector of the allowed rows and the bitmap, which must outlive the
        search; a partition's own (no `allowed`) is kept."""
        import faiss

        key = ("bitmap", code)
        if allowed is None and key in self._cache:
            bitmap = self._cache[key]
        else:
            mask = allowed if code is None else self._partition_mask(code)
            if code is not None and allowed is not None:
                mask = mask & allowed
            bitmap = np.packbits(np.asarray(mask, bool), bitorder="little")
            if allowed is None:
                self._cache[key] = bitmap
        return faiss.IDSelectorBitmap(len(self.vectors), faiss.swig_ptr(bitmap)), bitmap

    def _hnsw_top_k(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k from the HNSW graph; with `allowed`, only those items (FAISS ID
        selector).

        A position of -1 means the graph walk found fewer than k allowed items; the caller falls
        back to exact search.
        """
        import faiss

        index = self.build()._faiss_index
        if allowed is None:
            scores, positions = index.search(queries, k)
            return positions, scores
        selector, _bitmap = self._selector(allowed)  # the bitmap must outlive the search
        scores, positions = index.search(
            queries, k, params=faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)
        )
        return positions, scores

    def _ivfpq_top_k(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, code: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """IVF-PQ short lists re-ranked exactly from the vectors; exact search over the rows in
        scope when the short lists hold fewer than k of them."""
        lists = self.build()._ivf
        scope = None if code is None else self._partition_rows(code)
        if lists.partitioned:  # one index per partition: the partition's own, or every one
            units = list(range(len(self.partitions.names))) if code is None else [code]
            selector, _bitmap = (None, None) if allowed is None else self._selector(allowed)
        else:  # one index over all rows: a partition is a selector
            units = [ALL_ROWS]
            selector, _bitmap = (None, None)
            if allowed is not None or code is not None:
                selector, _bitmap = self._selector(allowed, code)  # the bitmap outlives searches
        count = max(k, lists.settings.rerank)
        trained = [unit for unit in units if unit in lists.indexes]
        short_lists = [lists.short_list(trained, queries, count, selector)] if trained else []
        small = []
        for unit in units:
            if unit in lists.indexes:
                continue
            # too few rows to train: every row in scope is a candidate
            if unit != ALL_ROWS:
                rows = self._partition_rows(unit)
            else:
                rows = np.arange(len(self.vectors)) if scope is None else scope
            small.append(rows if allowed is None else rows[allowed[rows]])
        small_rows = np.concatenate(small) if small else np.empty(0, np.int64)
        positions = np.empty((len(queries), k), np.int64)
        scores = np.empty((len(queries), k), np.float32)
        for q, query in enumerate(queries):
            candidates = [small_rows] + [found[q][found[q] >= 0] for found in short_lists]
            candidates = np.sort(np.concatenate(candidates))
            if len(candidates) < k:  # the lists probed hold too few rows in scope
                rows = scope
                if allowed is not None:
                    rows = np.flatnonzero(allowed) if rows is None else rows[allowed[rows]]
                found, found_scores = top_k_of_rows(self.vectors, query[None], k, rows)
                positions[q], scores[q] = found[0], found_scores[0]
                continue
            exact = self.rows(candidates) @ query
            top = np.argpartition(-exact, k - 1)[:k] if len(exact) > k else np.arange(k)
            order = top[np.argsort(-exact[top], kind="stable")]
            positions[q], scores[q] = candidates[order], exact[order]
        return positions, scores

    def _exact_top_k(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force cosine top-k for a block of queries."""
        scores = queries @ self.vectors.T
        if allowed is not None:
            scores = np.where(allowed[None, :], scores, -np.inf)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        positions = np.take_along_axis(top, order, axis=1)
        return positions, np.take_along_axis(scores, positions, axis=1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an `.npz` file (no pickles); IVF-PQ is trained first, and its FAISS
        indexes are serialized bytes."""
        arrays = {
            "item_ids": self.item_ids,
            "vectors": self.vectors,
            "backend": np.array(self.backend),
            "hnsw_params": np.array([self.hnsw_m, self.ef_construction, self.ef_search]),
        }
        if self.partitions is not None:
            arrays["partition_names"] = self.partitions.names
            arrays["partition_codes"] = self.partitions.codes
        if self.backend == "ivfpq":
            arrays.update(self.build()._ivf.to_arrays())
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EmbeddingIndex:
        """Rebuild an index from `to_arrays` output (the vectors may be memory-mapped)."""
        m, ef_construction, ef_search = (int(v) for v in arrays["hnsw_params"])
        partitions = None
        if "partition_codes" in arrays:
            partitions = Partitions(
                np.asarray(arrays["partition_names"]).astype(str), arrays["partition_codes"]
            )
        settings = (
            IvfPqSettings.from_array(arrays["ivfpq_params"])
            if "ivfpq_params" in arrays
            else IvfPqSettings()
        )
        index = cls(
            arrays["item_ids"],
            arrays["vectors"],
            str(arrays["backend"]),
            m,
            ef_construction,
            ef_search,
            ivfpq=settings,
            partitions=partitions,
        )
        if index.backend == "ivfpq" and "ivfpq_bytes" in arrays:
            index._ivf = IvfPqLists.from_arrays(arrays)
        return index

    def save(self, path: str | Path) -> Path:
        """Write the index to `path` (`.npz`); a memory-mapped backend's vectors go to
        `vectors_file(path)` (not rewritten when they are already a memory map of that file)."""
        path = Path(path)
        arrays = self.to_arrays()
        if self.backend in MEMORY_MAPPED_BACKENDS:
            vectors, target = arrays.pop("vectors"), vectors_file(path)
            mapped = isinstance(vectors, np.memmap) and vectors.filename is not None
            if not (mapped and Path(vectors.filename).resolve() == target.resolve()):
                partial = target.with_name(f".{target.name}.{os.getpid()}.partial.npy")
                np.save(partial, vectors)
                os.replace(partial, target)
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingIndex:
        """Read what `save` wrote; a memory-mapped backend's vectors stay on disk."""
        path = Path(path)
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        if "vectors" not in arrays:
            arrays["vectors"] = np.load(vectors_file(path), mmap_mode="r", allow_pickle=False)
        return cls.from_arrays(arrays)


@dataclass(frozen=True)
class ClusterCentroids:
    """Per category, its sub-style clusters' unit mean vectors in index space: the cluster of a
    new photo or a query is the one whose centroid is nearest."""

    by_category: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def of(
        cls, vectors: np.ndarray, categories: np.ndarray, clusters: np.ndarray
    ) -> ClusterCentroids:
        """Centroids of the index rows (`cluster` -1, unclustered, is left out); the vectors are
        read in chunks, so memory-mapped ones are never copied whole."""
        categories, clusters = np.asarray(categories).astype(str), np.asarray(clusters).astype(int)
        names, category_codes = np.unique(categories, return_inverse=True)
        base = int(clusters.max(initial=0)) + 1
        group = np.where(clusters >= 0, category_codes * base + clusters, -1)
        groups = np.unique(group[group >= 0])
        sums = np.zeros((len(groups), vectors.shape[1]))
        counts = np.zeros(len(groups), np.int64)
        for start in range(0, len(group), EXACT_CHUNK):
            chunk_group = group[start : start + EXACT_CHUNK]
            kept = chunk_group >= 0
            if not kept.any():
                continue
            which = np.searchsorted(groups, chunk_group[kept])
            block = np.asarray(vectors[start : start + EXACT_CHUNK], np.float64)[kept]
            order = np.argsort(which, kind="stable")
            firsts = np.flatnonzero(np.r_[True, np.diff(which[order]) != 0])
            sums[which[order][firsts]] += np.add.reduceat(block[order], firsts, axis=0)
            counts += np.bincount(which, minlength=len(groups))
            release_mapped_pages(vectors)  # each chunk's pages leave RSS as soon as it is summed
        means = l2_normalise(sums / np.maximum(counts, 1)[:, None])
        found = {}
        for code, name in enumerate(names):
            chosen = groups // base == code
            if chosen.any():
                found[str(name)] = (groups[chosen] % base, means[chosen])
        return cls(found)

    def nearest(self, vector: np.ndarray, category: str) -> int | None:
        """The cluster of `category` whose centroid is closest to `vector` (None: no clusters)."""
        if category not in self.by_category:
            return None
        ids, means = self.by_category[category]
        return int(ids[int(np.argmax(means @ vector))])
