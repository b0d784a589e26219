"""Ingestion pipeline: decode, dedupe, report rejects, check categories, then write.
Decoding reuses unchanged files' decodes."""

from kedro.pipeline import Node, Pipeline

from .nodes import check_categories, decode_images


def create_pipeline(**kwargs) -> Pipeline:
    """Build the ingestion pipeline."""
    return Pipeline(
        [
            Node(
                func=decode_images,
                inputs=["raw_images", "decode_cache", "params:preprocessing", "params:ingestion"],
                outputs=[
                    "decoded_store",
                    "decoded_manifest",
                    "ingestion_rejects",
                    "decode_cache_update",
                ],
                name="decode_images",
            ),
            Node(
                func=check_categories,
                inputs=[
                    "decoded_manifest",
                    "ingestion_rejects",
                    "decoded_store",
                    "raw_images",
                    "params:ingestion",
                    "params:categories",
                ],
                outputs=["image_store", "ingestion_manifest", "categories", "ingestion_identity"],
                name="check_categories",
            ),
        ]
    )
