"""Split: stratified, duplicate-safe train/val/test assignment."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
