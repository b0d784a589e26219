"""Clustering: a per-category base pipeline (namespaces) plus one node that combines the tables."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.pipelines.categories import (
    configured_categories,
    per_category,
    per_category_pipelines,
)

from .nodes import (
    cluster_category,
    clustering_mlflow_metrics,
    combine_clustering,
    plot_cluster_montage,
)

SHARED_INPUTS = {
    "image_store",
    "classifier_embeddings",
    "backbone_features",
    "served_source",
    "substyle_labels",
}


def category_pipeline() -> Pipeline:
    """Cluster one category every way, log its metrics and draw its montage."""
    return Pipeline(
        [
            Node(
                func=cluster_category,
                inputs=[
                    "image_store",
                    "category_manifest",
                    "latents",
                    "classifier_embeddings",
                    "backbone_features",
                    "served_source",
                    "substyle_labels",
                    "params:clustering",
                    "params:recommender",
                ],
                outputs=["cluster_assignments", "clustering_rows"],
                name="cluster_category",
            ),
            Node(
                func=clustering_mlflow_metrics,
                inputs="clustering_rows",
                outputs="clustering_metrics",
                name="log_clustering_metrics",
            ),
            Node(
                func=plot_cluster_montage,
                inputs=[
                    "image_store",
                    "category_manifest",
                    "cluster_assignments",
                    "params:clustering",
                ],
                outputs="cluster_montage",
                name="plot_cluster_montage",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Instantiate the base pipeline per category, then combine their outputs."""
    categories = configured_categories()
    per_category_clustering = per_category_pipelines(
        category_pipeline(),
        categories,
        inputs=SHARED_INPUTS,
        parameters={"params:clustering", "params:recommender"},
    )
    combine = Pipeline(
        [
            Node(
                func=combine_clustering,
                inputs=["params:recommender"]
                + per_category("cluster_assignments", categories)
                + per_category("clustering_rows", categories),
                outputs=[
                    "cluster_assignments",
                    "clustering_metrics_table",
                    "clustering_silhouette_table",
                    "substyle_criterion",
                ],
                name="combine_clustering",
            )
        ]
    )
    return per_category_clustering + combine
