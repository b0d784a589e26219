"""Ingestion throughput and peak memory on generated photos:
`python -m benchmarks.ingest [--images 5000]`."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._report import markdown_table, publish
from benchmarks._scratch import generate_photos

TARGET_RATE, TARGET_RSS_MB = 300, 1500

CHILD = """
import json, resource, sys, time
from jewelry_pipeline.core.folders import list_image_folder
from jewelry_pipeline.pipelines.ingestion.nodes import decode_images
from jewelry_pipeline.core.store import write_store
import yaml
params = yaml.safe_load(open("conf/base/parameters_ingestion.yml"))["ingestion"]
pre = yaml.safe_load(open("conf/base/parameters.yml"))["preprocessing"]
pre["image_size"] = int(sys.argv[2])
started = time.perf_counter()
raw = list_image_folder(sys.argv[1])
store, manifest, rejects, _ = decode_images(raw, {}, pre, params)
write_store(sys.argv[3], store)
elapsed = time.perf_counter() - started
print(json.dumps({"files": len(raw.files), "kept": len(manifest), "refused": len(rejects),
                  "seconds": elapsed}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--images", type=int, default=5000, help="photos to generate (split over 4 categories)"
    )
    parser.add_argument("--photo-size", type=int, default=256, help="side of the generated photos")
    parser.add_argument(
        "--image-size", type=int, default=64, help="model input side the store is built at"
    )
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        generate_photos(photos, args.images // 4, args.photo_size)
        started = time.perf_counter()
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(photos),
                str(args.image_size),
                str(Path(tmp) / "store.npy"),
            ],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rate = measured["files"] / measured["seconds"]
    row = {
        "photos": measured["files"],
        "photo px": args.photo_size,
        "store px": args.image_size,
        "seconds": round(measured["seconds"], 2),
        "images/s": round(rate),
        "peak RSS MB": round(peak_mb),
        "target": f">= {TARGET_RATE} images/s, < {TARGET_RSS_MB} MB",
        "met": "yes" if rate >= TARGET_RATE and peak_mb < TARGET_RSS_MB else "no",
    }
    publish(
        "ingest",
        {
            "result": row,
            "process_wall_seconds": wall,
            "kept": measured["kept"],
            "refused": measured["refused"],
        },
        "## Ingestion\n\nDecode, hash, dedupe, letterbox and store write (node `decode_images` "
        "plus the store), in a fresh process.\n\n" + markdown_table([row], list(row)),
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
