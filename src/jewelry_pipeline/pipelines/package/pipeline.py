"""Package pipeline: promotion decision, registry (alias moved when promoted), then the bundle."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.pipelines.categories import configured_categories, per_category, with_built

from .nodes import assemble_bundle, decide_promotion, make_thumbnails, register_run_models


def create_pipeline(**kwargs) -> Pipeline:
    """Build the package pipeline: decide, register (and move the alias), then bundle."""
    built = configured_categories()
    return Pipeline(
        [
            Node(
                func=decide_promotion,
                inputs=["classifier_metrics_report", "current_champion", "params:package"],
                outputs="promotion_decision",
                name="decide_promotion",
            ),
            Node(
                func=register_run_models,
                inputs=["promotion_decision", "params:package"],
                outputs="promotion_record",
                name="register_run_models",
            ),
            Node(
                func=make_thumbnails,
                inputs=[
                    "recommender_catalog",
                    "raw_images",
                    "image_store",
                    "params:preprocessing",
                    "params:package",
                    "params:ingestion",
                ],
                outputs="catalog_thumbnails",
                name="make_thumbnails",
            ),
            Node(
                func=with_built(assemble_bundle, built),
                inputs=[
                    "promotion_record",
                    "classifier_model",
                    "embedding_index",
                    "recommender_catalog",
                    "catalog_thumbnails",
                    "categories",
                    "autoencoder_input",
                    "answer_policy",
                    "familiarity_reference",
                    "ingestion_identity",
                    "classifier_embeddings",
                    "model_input_manifest",
                    "params:preprocessing",
                    "params:pretrained",
                    "params:package",
                    "params:catalog_update.drift",
                    "substyle_criterion",
                    *per_category("encoder", built),
                ],
                outputs="serving_bundle",
                name="assemble_bundle",
            ),
        ]
    )
