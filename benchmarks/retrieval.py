"""Similarity-index scale test: exact vs HNSW at 10k, 100k and 1M vectors.

`python -m benchmarks.retrieval [--sizes 10000,100000,1000000]`. Vectors are drawn around the served
index's real vectors (data/07_model_output/index.npz, the configured embedding source, so they have
its size) when it exists, otherwise around random 128-d cluster centres.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._report import markdown_table, publish

ROOT = Path(__file__).resolve().parents[1]
TARGET_P50_MS, TARGET_RECALL = 5.0, 0.95
EF_SEARCH = (64, 256, 1024, 1536, 2048)


def vectors(n: int, seed: int) -> np.ndarray:
    """`n` vectors around the served index's vectors (or random centres), with per-vector noise."""
    rng = np.random.default_rng(seed)
    real = ROOT / "data/07_model_output/index.npz"
    if real.exists():
        with np.load(real, allow_pickle=False) as data:
            centres = data["vectors"].astype(np.float32)
    else:
        centres = rng.normal(size=(2000, 128)).astype(np.float32)
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    out = np.empty((n, centres.shape[1]), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = centres[rng.integers(0, len(centres), stop - start)] + 0.08 * rng.normal(
            size=(stop - start, centres.shape[1])
        ).astype(np.float32)
    return out


def _timed_queries(index, probe: np.ndarray, truth: np.ndarray) -> dict:
    latencies, recalls = [], []
    for q in range(len(probe)):
        t0 = time.perf_counter()
        found, _ = index.search(probe[q : q + 1], 10)
        latencies.append((time.perf_counter() - t0) * 1000)
        recalls.append(len(set(found[0]) & set(truth[q])) / 10)
    return {
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "recall_at_10": round(float(np.mean(recalls)), 4),
    }


def measure(n: int, backend: str, queries: int, seed: int) -> list[dict]:
    """Build an index of `n` vectors and time single-vector queries; recall against exact search."""
    from jewelry_pipeline.core.search import EmbeddingIndex

    data = vectors(n + queries, seed)
    gallery, probe = data[:n], data[n:]
    ids = np.arange(n).astype(str)
    started = time.perf_counter()
    index = EmbeddingIndex(ids, gallery, backend=backend).build()
    build_seconds = time.perf_counter() - started
    truth, _ = EmbeddingIndex(ids, gallery).search(probe, 10)
    base = {
        "vectors": n,
        "backend": backend,
        "dimension": int(gallery.shape[1]),
        "build_s": round(build_seconds, 2),
    }
    rows = []
    for ef_search in EF_SEARCH if backend == "hnsw" else [None]:
        if ef_search:
            index.set_ef_search(ef_search)
        rows.append({**base, "ef_search": ef_search or "", **_timed_queries(index, probe, truth)})
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return [{**row, "peak_rss_mb": peak} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--one", help=argparse.SUPPRESS
    )  # internal: "n,backend" measured in a fresh process
    args = parser.parse_args()
    if args.one:
        n, backend = args.one.split(",")
        print(json.dumps(measure(int(n), backend, args.queries, seed=0)))
        return
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for backend in ("exact", "hnsw"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.retrieval",
                    "--one",
                    f"{n},{backend}",
                    "--queries",
                    str(args.queries),
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            for row in json.loads(out.stdout.strip().splitlines()[-1]):
                if n >= 1_000_000 and backend == "hnsw":
                    row["target"] = f"p50 < {TARGET_P50_MS} ms, recall@10 >= {TARGET_RECALL}"
                    row["met"] = (
                        "yes"
                        if row["p50_ms"] < TARGET_P50_MS and row["recall_at_10"] >= TARGET_RECALL
                        else "no"
                    )
                rows.append(row)
                print(json.dumps(row), flush=True)
    columns = [
        "vectors",
        "backend",
        "dimension",
        "ef_search",
        "build_s",
        "p50_ms",
        "p99_ms",
        "recall_at_10",
        "peak_rss_mb",
        "target",
        "met",
    ]
    publish(
        "retrieval",
        {"results": rows},
        "## Similarity index\n\nSingle-vector top-10 queries, each configuration in a fresh "
        "process; recall is against exact cosine search; memory is the process's peak RSS. "
        "HNSW is FAISS `IndexHNSWFlat` (M=32, efConstruction=80), queried at several efSearch "
        "values.\n\n" + markdown_table(rows, columns),
    )


if __name__ == "__main__":
    main()
