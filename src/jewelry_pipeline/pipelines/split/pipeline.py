"""Split pipeline: one node that adds a split column to the manifest."""

from kedro.pipeline import Node, Pipeline

from .nodes import split_manifest


def create_pipeline(**kwargs) -> Pipeline:
    """Build the split pipeline."""
    return Pipeline(
        [
            Node(
                split_manifest,
                inputs=["ingestion_manifest", "params:split"],
                outputs="model_input_manifest",
                name="split_manifest",
            )
        ]
    )
