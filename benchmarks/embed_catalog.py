"""Bulk embedding at catalog scale: `python -m benchmarks.embed_catalog [--photos 20000]`.

Builds a memory-mapped store of `--photos` photos at the bundle's input size (the default run's
catalog photos, each copy shifted and flipped so no two rows are equal), then, each in a fresh
process on the same machine in one run:
- the bare models: `predict` of the classifier and each category's encoder on the same photos
  (what the embedding path runs), images/s;
- `core.bulk.embed_in_chunks` (the catalog update's code) on a quarter of the photos and on all of
  them: images/s and peak RSS, so memory against the number of photos shows;
- fault: the full job killed (SIGKILL) once half its chunks are written, then run again: it resumes
  from its last finished chunk and its vectors must equal the uninterrupted run's.
Writes benchmarks/results/embed_catalog.json and its section of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import (
    ROOT,
    AnonymousMemoryPeak,
    bundle_models,
    markdown_table,
    publish,
    run_outputs,
)

TARGET_RATIO = 0.8  # embedding throughput at least 80 % of the bare models'


def _encoder(bundle_path: Path):
    from jewelry_pipeline.core.bundle import read_bundle
    from jewelry_pipeline.core.query import QueryEncoder

    bundle = read_bundle(bundle_path)
    return bundle, QueryEncoder.of_bundle(bundle)


def make_store(bundle_path: Path, photos: int, out: Path, store: Path, manifest: Path) -> None:
    """`photos` rows built from a run's store rows (the default run's: its catalog photos)."""
    from jewelry_pipeline.core.bundle import read_bundle
    from jewelry_pipeline.core.lookup import read_table
    from jewelry_pipeline.core.store import open_store

    bundle = read_bundle(bundle_path)
    source = open_store(store)
    side = bundle.preprocessing.image_size
    if source.shape[1] != side:
        raise SystemExit(f"store rows are {source.shape[1]} px, the bundle expects {side} px")
    listed = read_table(manifest)
    categories = listed["category"].to_numpy().astype(str)
    base = listed["store_index"].to_numpy()
    picks = np.arange(photos) % len(base)
    rows = np.lib.format.open_memmap(
        out / "store.npy", mode="w+", dtype=np.uint8, shape=(photos, side, side, 3)
    )
    for start in range(0, photos, 1024):
        for i in range(start, min(start + 1024, photos)):
            image = np.asarray(source[base[picks[i]]])
            copy = i // len(base)
            image = np.roll(image, copy % 7, axis=1)
            rows[i] = image[:, ::-1] if copy % 2 else image
        rows.flush()
    del rows
    np.save(out / "categories.npy", categories[picks])


def run_embed(bundle_path: Path, work: Path, photos: int, folder: Path, chunk_rows: int) -> dict:
    """In this process: embed the first `photos` rows in chunks; time and peak RSS."""
    from jewelry_pipeline.core.bulk import embed_in_chunks
    from jewelry_pipeline.core.store import open_store

    bundle, encoder = _encoder(bundle_path)
    images = open_store(work / "store.npy")
    categories = np.load(work / "categories.npy")[:photos]
    encoder.catalog_vectors(images, np.arange(8), categories[:8])  # traced before timing
    started = time.perf_counter()
    with AnonymousMemoryPeak() as memory:
        vectors = embed_in_chunks(
            encoder,
            images,
            np.arange(photos),
            categories,
            folder,
            bundle.digest,
            chunk_rows=chunk_rows,
            progress=lambda *args: None,
        )
    seconds = time.perf_counter() - started
    np.save(folder.parent / f"{folder.name}.vectors.npy", vectors)
    return {
        "photos": photos,
        "seconds": round(seconds, 2),
        "images_per_s": round(photos / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_anon_mb": round(memory.peak_kb / 1024, 1),
    }


def run_bare(bundle_path: Path, work: Path, photos: int) -> dict:
    """In this process: `predict` of the classifier and the category encoders on the same rows."""
    from jewelry_pipeline.core.images import autoencoder_inputs
    from jewelry_pipeline.core.store import open_store

    bundle, _ = _encoder(bundle_path)
    images = open_store(work / "store.npy")
    categories = np.load(work / "categories.npy")[:photos]
    prep = bundle.preprocessing
    bundle.classifier.predict(np.asarray(images[:8], np.float32), verbose=0)
    started = time.perf_counter()
    for start in range(0, photos, 2048):
        batch = np.asarray(images[start : start + 2048])
        bundle.classifier.predict(batch.astype(np.float32), batch_size=256, verbose=0)
        if bundle.encoders:
            inputs = autoencoder_inputs(
                batch, np.arange(len(batch)), prep.autoencoder_input, prep.foreground
            )
            for name in np.unique(categories[start : start + 2048]):
                members = categories[start : start + 2048] == name
                bundle.encoders[name].predict(
                    inputs[members].astype(np.float32), batch_size=256, verbose=0
                )
    seconds = time.perf_counter() - started
    return {
        "photos": photos,
        "seconds": round(seconds, 2),
        "images_per_s": round(photos / seconds, 1),
    }


def _child(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.embed_catalog", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def killed_then_resumed(
    bundle: Path, work: Path, photos: int, chunk_rows: int, reference: np.ndarray
) -> dict:
    """Kill the full job once half its chunks are written, run it again, compare."""
    folder = work / "resumed"
    chunks = -(-photos // chunk_rows)
    command = [sys.executable, "-m", "benchmarks.embed_catalog", "--child", "embed"]
    command += ["--bundle", str(bundle), "--work", str(work), "--photos", str(photos)]
    command += ["--folder", str(folder), "--chunk-rows", str(chunk_rows)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 3600
    while len(list(folder.glob("chunk-*[0-9].npy"))) < chunks // 2:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise SystemExit("the job ended (or took too long) before it could be killed half-way")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = len(list(folder.glob("chunk-*[0-9].npy")))
    again = _child(*command[3:])
    resumed = np.load(folder.parent / f"{folder.name}.vectors.npy")
    return {
        "chunks": chunks,
        "finished_before_kill": finished_before_kill,
        "resumed_seconds": again["seconds"],
        "equal_to_uninterrupted": bool(np.array_equal(resumed, reference)),
    }


def main(argv: list[str] | None = None) -> None:
    """Build the store, measure each mode in a fresh process, publish."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=run_outputs()[1])
    parser.add_argument("--store", type=Path, default=ROOT / "data/03_primary/image_store.npy")
    parser.add_argument("--manifest", type=Path, default=ROOT / "data/03_primary/manifest.csv")
    parser.add_argument("--photos", type=int, default=20000)
    parser.add_argument("--chunk-rows", type=int, default=2048)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--child", choices=["embed", "bare"], default=None)
    parser.add_argument("--no-publish", action="store_true")
    args = parser.parse_args(argv)
    if args.child == "embed":
        print(
            json.dumps(run_embed(args.bundle, args.work, args.photos, args.folder, args.chunk_rows))
        )
        return
    if args.child == "bare":
        print(json.dumps(run_bare(args.bundle, args.work, args.photos)))
        return
    work = Path(tempfile.mkdtemp(prefix="embed-catalog-"))
    try:
        make_store(args.bundle, args.photos, work, args.store, args.manifest)
        common = ["--bundle", str(args.bundle), "--work", str(work)]
        chunking = ["--chunk-rows", str(args.chunk_rows)]
        bare = _child("--child", "bare", *common, "--photos", str(args.photos))
        quarter = args.photos // 4
        small = _child(
            "--child", "embed", *common, "--photos", str(quarter),
            "--folder", str(work / "quarter"), *chunking,
        )  # fmt: skip
        full = _child(
            "--child", "embed", *common, "--photos", str(args.photos),
            "--folder", str(work / "full"), *chunking,
        )  # fmt: skip
        reference = np.load(work / "full.vectors.npy")
        fault = killed_then_resumed(args.bundle, work, args.photos, args.chunk_rows, reference)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = full["images_per_s"] / bare["images_per_s"]
    result = {
        "photos": args.photos,
        "chunk_rows": args.chunk_rows,
        "bare_models": bare,
        "embed_quarter": small,
        "embed_full": full,
        "throughput_ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "rss_growth_mb": round(full["peak_rss_mb"] - small["peak_rss_mb"], 1),
        "anon_growth_mb": round(full["peak_anon_mb"] - small["peak_anon_mb"], 1),
        "fault": fault,
    }
    rows = [
        {"run": "bare models (predict)", **bare},
        {"run": "embed_in_chunks, 1/4 of the photos", **small},
        {"run": "embed_in_chunks, all photos", **full},
    ]
    section = (
        "## Bulk embedding (`benchmarks/embed_catalog.py`)\n"
        f"{args.photos} photos at the bundle's input size ({bundle_models(args.bundle)}), chunks "
        f"of {args.chunk_rows}, each run "
        "in a fresh process, the same machine and run.\n\n"
        + markdown_table(
            rows, ["run", "photos", "seconds", "images_per_s", "peak_anon_mb", "peak_rss_mb"]
        )
        + f"\n\nThroughput {ratio:.2f} of the bare models' (target at least {TARGET_RATIO}). "
        f"Anonymous memory (peak RssAnon, sampled every 20 ms: what the process itself holds) "
        f"grows {result['anon_growth_mb']} MB from {quarter} to {args.photos} photos: one chunk "
        "of photos is in memory, and the vectors themselves are "
        f"{args.photos * reference.shape[1] * 4 / 1e6:.0f} MB. Peak RSS (ru_maxrss) grows "
        f"{result['rss_growth_mb']} MB: it also counts the pages of the memory-mapped store "
        "read so far, which the kernel reclaims under pressure. Killed (SIGKILL) with "
        f"{fault['finished_before_kill']} of {fault['chunks']} chunks written and run again, it "
        f"finished in {fault['resumed_seconds']} s; equal to the uninterrupted run: "
        f"{fault['equal_to_uninterrupted']}."
    )
    if args.no_publish:
        print(json.dumps(result))
    else:
        publish("embed_catalog", result, section)
        print(section)


if __name__ == "__main__":
    main()
