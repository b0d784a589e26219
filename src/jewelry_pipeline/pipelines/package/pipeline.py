"""Package pipeline: registry promotion gate, then the serving bundle (BentoML store when promoted)."""

from functools import partial

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.pipelines.categories import configured_categories

from .nodes import assemble_bundle, decide_promotion


def create_pipeline(**kwargs) -> Pipeline:
    """Build the package pipeline."""
    built = sorted(configured_categories())
    encoders = [f"{c}.encoder" for c in built]
    return Pipeline(
        [
            Node(
                decide_promotion,
                ["classifier_metrics_report", "current_champion", "params:package"],
                ["promotion_decision", "promotion_record"],
                name="decide_promotion",
            ),
            Node(
                partial(assemble_bundle, built=built),
                ["promotion_decision", "classifier_model", "embedding_index", "recommender_catalog", "image_store", "categories", "autoencoder_input", "params:preprocessing", *encoders],
                "serving_bundle",
                name="assemble_bundle",
            ),
        ]
    )
