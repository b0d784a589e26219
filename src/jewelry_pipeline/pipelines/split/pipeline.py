"""Split pipeline: add a split column to the manifest and record which ingestion it was made
from, in one node."""

from kedro.pipeline import Node, Pipeline

from .nodes import split_and_record


def create_pipeline(**kwargs) -> Pipeline:
    """Build the split pipeline."""
    return Pipeline(
        [
            Node(
                func=split_and_record,
                inputs=["ingestion_manifest", "ingestion_identity", "params:split"],
                outputs=["model_input_manifest", "split_identity"],
                name="split_manifest",
            ),
        ]
    )
