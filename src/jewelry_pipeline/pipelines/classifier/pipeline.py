"""Classifier pipeline: train the CNN and the pretrained variant, keep the one validation favours,
evaluate, baselines (frozen pretrained features among them), report and plots."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.core.metrics import history_metrics

from .nodes import (
    baseline_classifier,
    choose_classifier,
    choose_working_size,
    classifier_metrics,
    embed_backbone,
    embed_catalog,
    evaluate_classifier,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_learning_rate,
    plot_misclassified,
    train_classifier,
)

STORE, MANIFEST = "image_store", "model_input_manifest"


def _training() -> list[Node]:
    """The CNN and the pretrained variant trained, and the one validation favours kept."""
    return [
        Node(
            func=choose_working_size,
            inputs=[MANIFEST, "params:preprocessing", "params:classifier"],
            outputs="classifier_input_size",
            name="choose_working_size",
        ),
        Node(
            func=train_classifier,
            inputs=[
                STORE,
                MANIFEST,
                "categories",
                "classifier_input_size",
                "params:classifier",
            ],
            outputs=["cnn_classifier_model", "cnn_classifier_history"],
            name="train_classifier",
        ),
        Node(
            func=embed_backbone,
            inputs=[STORE, MANIFEST, "params:pretrained"],
            outputs="backbone_features",
            name="embed_backbone",
        ),
        Node(
            func=choose_classifier,
            inputs=[
                STORE,
                MANIFEST,
                "categories",
                "cnn_classifier_model",
                "cnn_classifier_history",
                "params:pretrained",
                "params:classifier",
            ],
            outputs=["classifier_model", "classifier_history", "classifier_choice"],
            name="choose_classifier",
        ),
        Node(
            func=history_metrics,
            inputs="classifier_history",
            outputs="classifier_history_metrics",
            name="log_classifier_history",
        ),
    ]


def _evaluation() -> list[Node]:
    """The kept classifier on the test split, the baselines, the report and the embedding."""
    return [
        Node(
            func=evaluate_classifier,
            inputs=["classifier_model", STORE, MANIFEST, "categories"],
            outputs=[
                "classifier_test_metrics",
                "classifier_per_class",
                "classifier_confusion_matrix",
                "classifier_test_predictions",
            ],
            name="evaluate_classifier",
        ),
        Node(
            func=baseline_classifier,
            inputs=[
                STORE,
                MANIFEST,
                "categories",
                "classifier_input_size",
                "backbone_features",
                "params:classifier",
            ],
            outputs="baseline_metrics",
            name="baseline_classifier",
        ),
        Node(
            func=classifier_metrics,
            inputs=["classifier_test_metrics", "baseline_metrics", "classifier_choice"],
            outputs=["classifier_mlflow_metrics", "classifier_metrics_report"],
            name="report_classifier_metrics",
        ),
        Node(
            func=embed_catalog,
            inputs=["classifier_model", STORE, MANIFEST, "params:classifier"],
            outputs="classifier_embeddings",
            name="embed_catalog",
        ),
    ]


def _plots() -> list[Node]:
    """The confusion matrix, learning curves, learning rate and misclassified gallery."""
    return [
        Node(
            func=plot_confusion_matrix,
            inputs="classifier_confusion_matrix",
            outputs="confusion_matrix_plot",
            name="plot_confusion_matrix",
        ),
        Node(
            func=plot_learning_curves,
            inputs="classifier_history",
            outputs="learning_curves_plot",
            name="plot_learning_curves",
        ),
        Node(
            func=plot_learning_rate,
            inputs="classifier_history",
            outputs="learning_rate_plot",
            name="plot_learning_rate",
        ),
        Node(
            func=plot_misclassified,
            inputs=[STORE, "classifier_test_predictions", "params:classifier"],
            outputs="misclassified_plot",
            name="plot_misclassified",
        ),
    ]


def create_pipeline(**kwargs) -> Pipeline:
    """Build the classifier pipeline."""
    return Pipeline([*_training(), *_evaluation(), *_plots()])
