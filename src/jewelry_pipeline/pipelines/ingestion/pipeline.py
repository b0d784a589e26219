"""Ingestion pipeline: decode, dedupe, report rejects, check categories."""

from kedro.pipeline import Node, Pipeline

from .nodes import check_categories, decode_images


def create_pipeline(**kwargs) -> Pipeline:
    """Build the ingestion pipeline."""
    return Pipeline(
        [
            Node(
                decode_images,
                inputs=["raw_images", "params:preprocessing", "params:ingestion"],
                outputs=["image_store", "decoded_manifest", "ingestion_rejects"],
                name="decode_images",
            ),
            Node(
                check_categories,
                inputs=["decoded_manifest", "ingestion_rejects", "raw_images", "params:ingestion"],
                outputs=["ingestion_manifest", "categories"],
                name="check_categories",
            ),
        ]
    )
