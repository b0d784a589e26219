"""jewelry-pipeline: catalog-image classifier, sub-style discovery and similar-item search."""

import os

__version__ = "0.1.0"

# Telemetry is off everywhere this package is imported: Kedro, BentoML and MLflow.
for _name, _value in {
    "KEDRO_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}.items():
    os.environ.setdefault(_name, _value)
