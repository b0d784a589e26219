"""Recommender pipeline: embedding sources, retrieval evaluation, catalog and index."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.pipelines.categories import configured_categories, per_category, with_built

from .nodes import (
    build_catalog,
    build_index,
    choose_answer_policy,
    choose_served_source,
    embedding_sources,
    evaluate_retrieval,
)


def _evaluation(built: list[str]) -> list[Node]:
    """Every embedding source, and retrieval measured on each."""
    return [
        Node(
            func=embedding_sources,
            inputs=[
                "image_store",
                "model_input_manifest",
                "classifier_embeddings",
                "backbone_features",
                "params:recommender",
                *per_category("latents", built),
            ],
            outputs="embedding_sources",
            name="embedding_sources",
        ),
        Node(
            func=evaluate_retrieval,
            inputs=[
                "model_input_manifest",
                "embedding_sources",
                "categories",
                "substyle_labels",
                "params:recommender",
            ],
            outputs=["retrieval_table", "retrieval_metrics"],
            name="evaluate_retrieval",
        ),
    ]


def _serving(built: list[str]) -> list[Node]:
    """The catalog, the served source, its index and the answer policy."""
    return [
        Node(
            func=build_catalog,
            inputs=[
                "model_input_manifest",
                "cluster_assignments",
                "item_details",
                "params:recommender",
            ],
            outputs="recommender_catalog",
            name="build_catalog",
        ),
        Node(
            func=choose_served_source,
            inputs=["autoencoder_input", "classifier_choice", "params:recommender"],
            outputs="served_source",
            name="choose_served_source",
        ),
        Node(
            func=with_built(build_index, built),
            inputs=[
                "image_store",
                "model_input_manifest",
                "categories",
                "classifier_model",
                "embedding_sources",
                "served_source",
                "autoencoder_input",
                "params:preprocessing",
                "params:pretrained",
                "params:recommender",
                *per_category("encoder", built),
            ],
            outputs="embedding_index",
            name="build_index",
        ),
        Node(
            func=with_built(choose_answer_policy, built),
            inputs=[
                "image_store",
                "model_input_manifest",
                "categories",
                "classifier_model",
                "embedding_index",
                "autoencoder_input",
                "params:preprocessing",
                "params:pretrained",
                "params:recommender",
                *per_category("encoder", built),
            ],
            outputs=["answer_policy", "answer_metrics", "familiarity_reference"],
            name="choose_answer_policy",
        ),
    ]


def create_pipeline(**kwargs) -> Pipeline:
    """Build the recommender pipeline."""
    built = configured_categories()
    return Pipeline([*_evaluation(built), *_serving(built)])
