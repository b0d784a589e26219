"""Classifier: a Keras CNN over the image store.
It is evaluated on the test split and tracked in MLflow."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
