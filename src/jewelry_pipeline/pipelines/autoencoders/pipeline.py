"""Autoencoders: one base pipeline, instantiated per category with Kedro namespaces."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.metrics import history_metrics
from jewelry_pipeline.pipelines.categories import configured_categories

from .nodes import category_maps, check_category_pipelines, encode_category, plot_reconstructions, select_category, train_autoencoder

SHARED_INPUTS = {"model_input_manifest", "image_store", "checked_categories"}


def category_pipeline() -> Pipeline:
    """The per-category base pipeline; `category_name` comes from the catalog factory per namespace."""
    return Pipeline(
        [
            Node(select_category, ["model_input_manifest", "category_name", "checked_categories"], "category_manifest", name="select_category"),
            Node(category_maps, ["image_store", "category_manifest", "params:preprocessing"], "foreground_maps", name="category_maps"),
            Node(train_autoencoder, ["foreground_maps", "category_manifest", "params:autoencoders"], ["autoencoder", "encoder", "autoencoder_history"], name="train_autoencoder"),
            Node(history_metrics, "autoencoder_history", "autoencoder_loss_metrics", name="log_autoencoder_history"),
            Node(encode_category, ["encoder", "foreground_maps", "category_manifest"], "latents", name="encode_category"),
            Node(
                plot_reconstructions,
                ["autoencoder", "image_store", "foreground_maps", "category_manifest", "params:autoencoders"],
                "reconstruction_plot",
                name="plot_reconstructions",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Check the configured categories, then run the base pipeline once per category."""
    check = Pipeline([Node(check_category_pipelines, ["categories", "params:categories"], "checked_categories", name="check_category_pipelines")])
    base = category_pipeline()
    per_category = [
        Pipeline(base, namespace=category, inputs=SHARED_INPUTS, parameters={"params:autoencoders", "params:preprocessing"})
        for category in configured_categories()
    ]
    return check + sum(per_category, Pipeline([]))
