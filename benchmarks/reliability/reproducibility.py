"""Reproducibility check: the default pipeline twice with the same seed and data gives the same
split, weights, metrics, index and clusters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.reliability.checks import Check, Settings
from benchmarks.reliability.project import kedro_run, run_params

NAME = "reproducibility: same seed, same data"


def _weights(path: Path) -> list:
    from jewelry_pipeline.core.models.files import load_keras_safe

    return load_keras_safe(path).get_weights()


def _same_arrays(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def _same_weights(first: list, second: list) -> bool:
    return len(first) == len(second) and all(np.array_equal(x, y) for x, y in zip(first, second))


def _run_outputs(data: Path) -> dict:
    """What one default run wrote that must be the same in the next."""
    with np.load(data / "07_model_output/index.npz", allow_pickle=False) as index:
        index_arrays = {key: index[key] for key in index.files}
    encoders = sorted((data / "06_models/autoencoders").glob("*/encoder.keras"))
    return {
        "manifest": (data / "03_primary/manifest.csv").read_bytes(),
        "split": (data / "05_model_input/manifest.csv").read_bytes(),
        "metrics": json.loads((data / "08_reporting/classifier_metrics.json").read_text()),
        "classifier": _weights(data / "06_models/classifier.keras"),
        "encoders": {p.parent.name: _weights(p) for p in encoders},
        "index": index_arrays,
        "clusters": (data / "07_model_output/cluster_assignments.csv").read_bytes(),
    }


def check_reproducibility(project: Path, settings: Settings) -> Check:
    """The default pipeline twice with the same seed and data: the same split, classifier weights,
    metrics, autoencoder weights, index and cluster assignments.

    Broken on purpose once: seeding the classifier from the clock made
    `classifier_weights_identical` and `index_identical` false.
    """
    outputs = {}
    for attempt in (1, 2):
        params = run_params(settings, **{"autoencoders.training.epochs": 1})
        done = kedro_run(project, "__default__", params)
        if done.returncode != 0:
            return Check(NAME, False, {"run": attempt}, (done.stdout + done.stderr)[-600:])
        outputs[attempt] = _run_outputs(project / "data")
    first, second = outputs[1], outputs[2]
    accuracy = [round(run["metrics"]["test_accuracy"], 4) for run in (first, second)]
    same_encoders = first["encoders"].keys() == second["encoders"].keys() and all(
        _same_weights(first["encoders"][c], second["encoders"][c]) for c in first["encoders"]
    )
    figures = {
        "manifest_identical": first["manifest"] == second["manifest"],
        "split_identical": first["split"] == second["split"],
        "test_accuracy": accuracy,
        "metrics_identical": first["metrics"] == second["metrics"],
        "classifier_weights_identical": _same_weights(first["classifier"], second["classifier"]),
        "encoder_weights_identical": same_encoders,
        "index_identical": _same_arrays(first["index"], second["index"]),
        "cluster_assignments_identical": first["clusters"] == second["clusters"],
    }
    passed = all(value for key, value in figures.items() if key.endswith("identical"))
    return Check(
        NAME, passed, figures, "identical manifest, split, metrics, weights, index and clusters"
    )
