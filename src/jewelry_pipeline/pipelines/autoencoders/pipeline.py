"""Autoencoders: choose their input once, then one base pipeline instantiated per category.
The per-category instances use Kedro namespaces."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.core.metrics import history_metrics
from jewelry_pipeline.pipelines.categories import (
    configured_categories,
    per_category_pipelines,
    with_built,
)

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
SHARED_PARAMETERS = {"params:autoencoders", "params:preprocessing"}


def category_pipeline() -> Pipeline:
    """The per-category base pipeline; `category_name` comes from the catalog factory per
    namespace."""
    return Pipeline(
        [
            Node(
                func=select_category,
                inputs=["model_input_manifest", "category_name", "checked_categories"],
                outputs="category_manifest",
                name="select_category",
            ),
            Node(
                func=category_inputs,
                inputs=[
                    "image_store",
                    "category_manifest",
                    "autoencoder_input",
                    "params:preprocessing",
                ],
                outputs="autoencoder_inputs",
                name="category_inputs",
            ),
            Node(
                func=train_autoencoder,
                inputs=["autoencoder_inputs", "category_manifest", "params:autoencoders"],
                outputs=["autoencoder", "encoder", "autoencoder_history"],
                name="train_autoencoder",
            ),
            Node(
                func=history_metrics,
                inputs="autoencoder_history",
                outputs="autoencoder_loss_metrics",
                name="log_autoencoder_history",
            ),
            Node(
                func=reconstruction_check,
                inputs=["autoencoder", "autoencoder_inputs", "category_manifest"],
                outputs="reconstruction_metrics",
                name="reconstruction_check",
            ),
            Node(
                func=encode_category,
                inputs=["encoder", "autoencoder_inputs", "category_manifest"],
                outputs="latents",
                name="encode_category",
            ),
            Node(
                func=plot_reconstructions,
                inputs=[
                    "autoencoder",
                    "image_store",
                    "autoencoder_inputs",
                    "category_manifest",
                    "params:autoencoders",
                ],
                outputs="reconstruction_plot",
                name="plot_reconstructions",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Check the configured categories and choose the input, then run the base pipeline once per
    category."""
    categories = configured_categories()
    shared = Pipeline(
        [
            Node(
                func=with_built(check_category_pipelines, categories),
                inputs="categories",
                outputs="checked_categories",
                name="check_category_pipelines",
            ),
            Node(
                func=choose_autoencoder_input,
                inputs=[
                    "image_store",
                    "model_input_manifest",
                    "params:preprocessing",
                    "params:autoencoders",
                ],
                outputs=["autoencoder_input", "autoencoder_input_metrics"],
                name="choose_autoencoder_input",
            ),
        ]
    )
    return shared + per_category_pipelines(
        category_pipeline(), categories, inputs=SHARED_INPUTS, parameters=SHARED_PARAMETERS
    )
