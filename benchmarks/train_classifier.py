"""Classifier training cost at the default configuration: `python -m benchmarks.train_classifier`.

Trains on the project's current image store and split (run `make run` or the ingestion and split
pipelines first) in a fresh process, and records wall time, images/s and peak RSS.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from benchmarks._report import markdown_table, publish

TARGET_SECONDS = 180

CHILD = """
import json, time
from kedro.config import OmegaConfigLoader
from jewelry_pipeline.core.lookup import read_table
from jewelry_pipeline.core.store import open_store
from jewelry_pipeline.pipelines.classifier.nodes import (
    choose_working_size, train_classifier, evaluate_classifier
)
params = OmegaConfigLoader("conf", base_env="base", default_run_env="base")["parameters"]
images = open_store("data/03_primary/image_store.npy")
manifest = read_table("data/05_model_input/manifest.csv")
categories = json.load(open("data/03_primary/categories.json"))
started = time.perf_counter()
working_size = choose_working_size(manifest, params["preprocessing"], params["classifier"])
model, history = train_classifier(images, manifest, categories, working_size, params["classifier"])
seconds = time.perf_counter() - started
metrics, *_ = evaluate_classifier(model, images, manifest, categories)
epochs = len(history["loss"])
n_train = int((manifest["split"] == "train").sum())
print(json.dumps({"seconds": seconds, "epochs": epochs, "train_images": n_train, **metrics}))
"""


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    if not (root / "data/05_model_input/manifest.csv").exists():
        sys.exit("No model input yet: run `make run` (or the ingestion and split pipelines) first.")
    child = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=root, check=True, capture_output=True, text=True
    )
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    row = {
        "train images": measured["train_images"],
        "epochs run": measured["epochs"],
        "wall s": round(measured["seconds"], 1),
        "images/s": round(measured["train_images"] * measured["epochs"] / measured["seconds"]),
        "peak RSS MB": round(peak_mb),
        "test accuracy": round(measured["test_accuracy"], 4),
        "target": f"<= {TARGET_SECONDS} s",
        "met": "yes" if measured["seconds"] <= TARGET_SECONDS else "no",
    }
    publish(
        "train_classifier",
        {"result": row, **measured},
        "## Classifier training\n\nDefault `parameters_classifier.yml` on the built-in dataset "
        "(`make run` data), early stopping included; images/s counts training images seen per "
        "second.\n\n" + markdown_table([row], list(row)),
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()
