"""Clustering: sub-style discovery per category, comparable across methods."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
