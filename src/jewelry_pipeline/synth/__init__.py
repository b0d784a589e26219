"""The built-in procedural jewelry dataset generator."""

from .generator import CATEGORIES, SUBSTYLES, generate_dataset, render

__all__ = ["CATEGORIES", "SUBSTYLES", "generate_dataset", "render"]
