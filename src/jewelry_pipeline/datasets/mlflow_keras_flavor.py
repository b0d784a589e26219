"""MLflow's Keras flavour as a flavour module for `mlflow.models.Model.log`, folder made first.

mlflow 3.17's `mlflow.keras.save_model` writes the input example into the model folder before it
creates that folder, so `mlflow.keras.log_model(..., input_example=...)` fails with
FileNotFoundError (mlflow issue 16183). `Model.log`, which `mlflow.keras.log_model` calls, takes
any flavour module with a `save_model`: this one makes the folder, then saves with MLflow's own
Keras flavour, so the logged model is the one `mlflow.keras.log_model` writes (`keras` and
`python_function` flavours, signature, input example, requirements).
"""

from __future__ import annotations

import os
from typing import Any


def save_model(model: Any, path: str, **kwargs: Any) -> None:
    """`mlflow.keras.save_model` into `path`, created first (without `Model.log`'s own
    `validate_serving_input`, which it passes on to every flavour)."""
    import mlflow.keras

    kwargs.pop("validate_serving_input", None)
    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(model, path, **kwargs)
