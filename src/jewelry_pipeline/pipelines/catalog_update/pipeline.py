"""Catalog-update pipeline (`kedro run --pipelines catalog_update --params new_dir=DIR`): new
photos join the bundle's catalog and index, embedded by its models; not in `__default__`."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    check_drift,
    decode_new_photos,
    embed_new_photos,
    grow_bundle,
    record_catalog_update,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Build the catalog-update pipeline: vet, embed, check drift, grow the bundle, record."""
    return Pipeline(
        [
            Node(
                func=decode_new_photos,
                inputs=["new_images", "current_bundle", "params:ingestion"],
                outputs=["new_store", "new_manifest", "catalog_update_rejects"],
                name="decode_new_photos",
            ),
            Node(
                func=embed_new_photos,
                inputs=["new_store", "new_manifest", "current_bundle", "params:catalog_update"],
                outputs="new_embeddings",
                name="embed_new_photos",
            ),
            Node(
                func=check_drift,
                inputs=["new_store", "new_manifest", "current_bundle", "params:catalog_update"],
                outputs=["catalog_update_drift_report", "catalog_update_drift"],
                name="check_drift",
            ),
            Node(
                func=grow_bundle,
                inputs=[
                    "current_bundle",
                    "new_manifest",
                    "new_embeddings",
                    "new_images",
                    "new_store",
                    "catalog_update_rejects",
                    "params:package",
                    "params:ingestion",
                ],
                outputs=["updated_bundle", "catalog_update_summary"],
                name="grow_bundle",
            ),
            Node(
                func=record_catalog_update,
                inputs=["catalog_update_summary", "catalog_update_drift"],
                outputs=None,
                name="record_catalog_update",
            ),
        ]
    )
