"""Autoencoders: choose their input once, then one base pipeline instantiated per category with Kedro namespaces."""

from functools import partial

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.metrics import history_metrics
from jewelry_pipeline.pipelines.categories import configured_categories

from .nodes import (
    category_inputs,
    check_category_pipelines,
    choose_autoencoder_input,
    encode_category,
    plot_reconstructions,
    reconstruction_check,
    select_category,
    train_autoencoder,
)

SHARED_INPUTS = {"model_input_manifest", "image_store", "checked_categories", "autoencoder_input"}


def category_pipeline() -> Pipeline:
    """The per-category base pipeline; `category_name` comes from the catalog factory per namespace."""
    return Pipeline(
        [
            Node(select_category, ["model_input_manifest", "category_name", "checked_categories"], "category_manifest", name="select_category"),
            Node(category_inputs, ["image_store", "category_manifest", "autoencoder_input", "params:preprocessing"], "autoencoder_inputs", name="category_inputs"),
            Node(train_autoencoder, ["autoencoder_inputs", "category_manifest", "params:autoencoders"], ["autoencoder", "encoder", "autoencoder_history"], name="train_autoencoder"),
            Node(history_metrics, "autoencoder_history", "autoencoder_loss_metrics", name="log_autoencoder_history"),
            Node(reconstruction_check, ["autoencoder", "autoencoder_inputs", "category_manifest"], "reconstruction_metrics", name="reconstruction_check"),
            Node(encode_category, ["encoder", "autoencoder_inputs", "category_manifest"], "latents", name="encode_category"),
            Node(
                plot_reconstructions,
                ["autoencoder", "image_store", "autoencoder_inputs", "category_manifest", "params:autoencoders"],
                "reconstruction_plot",
                name="plot_reconstructions",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Check the configured categories and choose the input, then run the base pipeline once per category."""
    categories = configured_categories()
    shared = Pipeline(
        [
            Node(partial(check_category_pipelines, built=categories), "categories", "checked_categories", name="check_category_pipelines"),
            Node(
                choose_autoencoder_input,
                ["image_store", "model_input_manifest", "params:preprocessing", "params:autoencoders"],
                ["autoencoder_input", "autoencoder_input_metrics"],
                name="choose_autoencoder_input",
            ),
        ]
    )
    base = category_pipeline()
    per_category = [
        Pipeline(base, namespace=category, inputs=SHARED_INPUTS, parameters={"params:autoencoders", "params:preprocessing"})
        for category in categories
    ]
    return shared + sum(per_category, Pipeline([]))
