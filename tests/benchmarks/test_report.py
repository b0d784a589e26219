"""The serving benchmarks name what the measured bundle's queries run, without loading a model."""

from __future__ import annotations

from benchmarks._report import bundle_models
from tests.serving.conftest import make_bundle


def test_the_serve_benchmark_names_the_bundles_classifier_and_served_source(tmp_path):
    ensemble = make_bundle(tmp_path / "ensemble", source="descriptor", ensemble=True)
    cnn = make_bundle(tmp_path / "cnn", source="classifier")
    assert bundle_models(ensemble) == "classifier `ensemble_classifier`, served source `descriptor`"
    assert bundle_models(cnn) == "classifier `jewelry_classifier`, served source `classifier`"
