"""Recommender: "visually similar items" over the catalog, with measured retrieval quality."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
