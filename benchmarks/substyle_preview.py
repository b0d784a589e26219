"""How long a merchandiser waits to preview another k for one category (#33): KMeans on the
category's stored index vectors, the criterion across k, and the typical and edge items.

`python -m benchmarks.substyle_preview [--items 10000] [--dims 128,1280] [--repeats 3]`. Vectors are
drawn around 8 random unit directions (a category with a few sub-styles) at the index's dimensions
(128: the classifier embedding; 1280: the frozen backbone's features), one compute thread as on a
serving worker. Each figure is the median of `--repeats`.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # a serving worker's one compute thread
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402 - after the thread settings, which BLAS reads as it loads

from benchmarks._report import markdown_table, publish  # noqa: E402
from jewelry_pipeline.core.search import l2_normalise  # noqa: E402
from jewelry_pipeline.core.substyles import (  # noqa: E402
    PREVIEW_K,
    Partition,
    criterion_by_k,
    kmeans,
)

TARGET_SECONDS = 1.0  # "well under a second" for one preview of a 10,000-item category


def category_vectors(items: int, dims: int, seed: int = 0) -> np.ndarray:
    """`items` unit vectors around 8 random directions, as one category's index rows."""
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.normal(size=(8, dims)))
    members = rng.integers(0, 8, items)
    return l2_normalise(centres[members] + rng.normal(0, 0.6 / np.sqrt(dims), (items, dims)))


def median_seconds(function, repeats: int) -> float:
    """The median wall time of `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure(items: int, dims: int, repeats: int) -> dict:
    """Preview (KMeans at the smallest, a middle and the largest k), typical and edge items of
    every sub-style, and the criterion over every k, for one category."""
    vectors = category_vectors(items, dims)
    low, high = PREVIEW_K
    preview = {
        k: median_seconds(lambda k=k: kmeans(vectors, k, 0), repeats) for k in (low, 6, high)
    }
    labels = kmeans(vectors, 6, 0)
    partition = Partition.of(vectors, labels)
    strips = median_seconds(
        lambda: [partition.typical_and_edge(vectors, c, 8, 4) for c in partition.centroids],
        repeats,
    )
    criterion = median_seconds(lambda: criterion_by_k(vectors, range(low, high + 1), 0), 1)
    slowest, strips = round(max(preview.values()), 3), round(strips, 4)
    return {
        "items": items,
        "dims": dims,
        "preview_seconds": {str(k): round(s, 3) for k, s in preview.items()},
        "slowest_preview_seconds": slowest,
        "strips_seconds": strips,
        "criterion_all_k_seconds": round(criterion, 2),
        "meets_target": slowest + strips < TARGET_SECONDS,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--dims", default="128,1280")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [measure(args.items, int(d), args.repeats) for d in args.dims.split(",")]
    low, high = PREVIEW_K
    table = [
        {
            "items": f"{r['items']:,}",
            "dims": r["dims"],
            f"preview k={low} (s)": r["preview_seconds"][str(low)],
            "preview k=6 (s)": r["preview_seconds"]["6"],
            f"preview k={high} (s)": r["preview_seconds"][str(high)],
            "typical + edge strips (s)": r["strips_seconds"],
            f"criterion k={low}..{high} (s)": r["criterion_all_k_seconds"],
            f"preview + strips < {TARGET_SECONDS:g} s": "yes" if r["meets_target"] else "**no**",
        }
        for r in rows
    ]
    section = (
        "## Sub-style preview (`benchmarks/substyle_preview.py`)\n\n"
        "What a merchandiser waits for to preview another k for one category: KMeans (one "
        "seeded k-means++ start) on the category's stored index vectors, then the typical and "
        "edge strip of every sub-style; one compute thread, as on a serving worker. The silhouette "
        "across every k is timed for reference; the chart shows the criterion the run chose its "
        "k by, computed once per category in training, not per preview.\n\n"
        + markdown_table(table, list(table[0]))
    )
    result = {"target_seconds": TARGET_SECONDS, "rows": rows}
    publish("substyle_preview", result, section)
    return result


if __name__ == "__main__":
    main()
