"""Split pipeline: add a split column to the manifest.
Then record which ingestion it was made from."""

from kedro.pipeline import Node, Pipeline

from .nodes import record_split, split_manifest


def create_pipeline(**kwargs) -> Pipeline:
    """Build the split pipeline."""
    return Pipeline(
        [
            Node(
                func=split_manifest,
                inputs=["ingestion_manifest", "params:split"],
                outputs="model_input_manifest",
                name="split_manifest",
            ),
            Node(
                func=record_split,
                inputs=["ingestion_identity", "model_input_manifest"],
                outputs="split_identity",
                name="record_split",
            ),
        ]
    )
