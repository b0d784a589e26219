"""Catalog update: new photos join the served catalog through the champion's models, no training."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
