"""Autoencoders: one convolutional autoencoder per category (namespaced modular pipeline)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
