"""Ingestion: any folder-per-category photo tree to a manifest and a uint8 image store."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
