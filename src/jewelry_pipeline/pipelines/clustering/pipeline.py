"""Clustering: a per-category base pipeline (namespaces) plus one node that combines the tables."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.pipelines.categories import configured_categories

from .nodes import clustering_mlflow_metrics, cluster_category, combine_clustering, plot_cluster_montage

SHARED_INPUTS = {"image_store", "classifier_embeddings", "substyle_labels"}


def category_pipeline() -> Pipeline:
    """Cluster one category three ways, log its metrics and draw its montage."""
    return Pipeline(
        [
            Node(
                cluster_category,
                ["image_store", "category_manifest", "latents", "classifier_embeddings", "substyle_labels", "params:clustering"],
                ["cluster_assignments", "clustering_rows"],
                name="cluster_category",
            ),
            Node(clustering_mlflow_metrics, "clustering_rows", "clustering_metrics", name="log_clustering_metrics"),
            Node(plot_cluster_montage, ["image_store", "category_manifest", "cluster_assignments", "params:clustering"], "cluster_montage", name="plot_cluster_montage"),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Instantiate the base pipeline per category, then combine their outputs."""
    categories = configured_categories()
    base = category_pipeline()
    per_category = sum(
        (Pipeline(base, namespace=c, inputs=SHARED_INPUTS, parameters={"params:clustering"}) for c in categories),
        Pipeline([]),
    )
    combine = Pipeline(
        [
            Node(
                combine_clustering,
                [f"{c}.cluster_assignments" for c in categories] + [f"{c}.clustering_rows" for c in categories],
                ["cluster_assignments", "clustering_metrics_table", "clustering_silhouette_table"],
                name="combine_clustering",
            )
        ]
    )
    return per_category + combine
