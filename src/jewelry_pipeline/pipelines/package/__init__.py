"""Package: promote the best models in the MLflow registry and build the serving bundle."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
