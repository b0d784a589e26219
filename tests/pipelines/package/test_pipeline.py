"""The package pipeline's wiring: decide, then register, then bundle."""

from __future__ import annotations

from jewelry_pipeline.pipelines.categories import configured_categories
from jewelry_pipeline.pipelines.package.pipeline import create_pipeline


def test_the_bundle_is_built_only_after_the_registry_acted():
    """Broken on purpose once: with `assemble_bundle` reading `promotion_decision`, it came before
    the registration (one level's nodes run in name order): a failed registration left a bundle."""
    pipeline = create_pipeline()
    order = [node.name for node in pipeline.nodes if node.name != "make_thumbnails"]
    assert order == ["decide_promotion", "register_run_models", "assemble_bundle"]
    by_name = {node.name: node for node in pipeline.nodes}
    assert by_name["register_run_models"].inputs == ["promotion_decision", "params:package"]
    assert by_name["assemble_bundle"].inputs[0] == "promotion_record"
    encoders = [name for name in by_name["assemble_bundle"].inputs if name.endswith(".encoder")]
    assert encoders == [f"{category}.encoder" for category in configured_categories()]
