"""Recommender pipeline: embedding sources, retrieval evaluation, catalog and index."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.pipelines.categories import configured_categories

from .nodes import build_catalog, build_index, choose_served_source, embedding_sources, evaluate_retrieval


def create_pipeline(**kwargs) -> Pipeline:
    """Build the recommender pipeline."""
    latents = [f"{c}.latents" for c in configured_categories()]
    return Pipeline(
        [
            Node(
                embedding_sources,
                ["image_store", "model_input_manifest", "classifier_embeddings", "params:recommender", *latents],
                "embedding_sources",
                name="embedding_sources",
            ),
            Node(
                evaluate_retrieval,
                ["model_input_manifest", "embedding_sources", "categories", "substyle_labels", "params:recommender"],
                ["retrieval_table", "retrieval_metrics"],
                name="evaluate_retrieval",
            ),
            Node(build_catalog, ["model_input_manifest", "cluster_assignments", "params:recommender"], "recommender_catalog", name="build_catalog"),
            Node(choose_served_source, ["autoencoder_input", "params:recommender"], "served_source", name="choose_served_source"),
            Node(build_index, ["embedding_sources", "served_source", "params:recommender"], "embedding_index", name="build_index"),
        ]
    )
