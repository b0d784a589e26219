"""Serving: the recommendation engine over a bundle, upload checks, and the BentoML service."""
