"""Classifier pipeline: train, evaluate, baseline, report and plots."""

from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.metrics import history_metrics

from .nodes import (
    baseline_classifier,
    choose_working_size,
    classifier_metrics,
    embed_catalog,
    evaluate_classifier,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_learning_rate,
    plot_misclassified,
    train_classifier,
)

STORE, MANIFEST = "image_store", "model_input_manifest"


def create_pipeline(**kwargs) -> Pipeline:
    """Build the classifier pipeline."""
    return Pipeline(
        [
            Node(choose_working_size, [MANIFEST, "params:preprocessing", "params:classifier"], "classifier_input_size", name="choose_working_size"),
            Node(
                train_classifier,
                [STORE, MANIFEST, "categories", "classifier_input_size", "params:classifier"],
                ["classifier_model", "classifier_history"],
                name="train_classifier",
            ),
            Node(history_metrics, "classifier_history", "classifier_history_metrics", name="log_classifier_history"),
            Node(
                evaluate_classifier,
                ["classifier_model", STORE, MANIFEST, "categories"],
                ["classifier_test_metrics", "classifier_per_class", "classifier_confusion_matrix", "classifier_test_predictions"],
                name="evaluate_classifier",
            ),
            Node(baseline_classifier, [STORE, MANIFEST, "categories", "classifier_input_size", "params:classifier"], "baseline_metrics", name="baseline_classifier"),
            Node(classifier_metrics, ["classifier_test_metrics", "baseline_metrics"], ["classifier_mlflow_metrics", "classifier_metrics_report"], name="report_classifier_metrics"),
            Node(plot_confusion_matrix, "classifier_confusion_matrix", "confusion_matrix_plot", name="plot_confusion_matrix"),
            Node(plot_learning_curves, "classifier_history", "learning_curves_plot", name="plot_learning_curves"),
            Node(plot_learning_rate, "classifier_history", "learning_rate_plot", name="plot_learning_rate"),
            Node(embed_catalog, ["classifier_model", STORE, MANIFEST, "params:classifier"], "classifier_embeddings", name="embed_catalog"),
            Node(plot_misclassified, [STORE, "classifier_test_predictions", "params:classifier"], "misclassified_plot", name="plot_misclassified"),
        ]
    )
