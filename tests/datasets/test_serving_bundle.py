"""The serving bundle dataset's reading side: a catalog update starts from the store's latest
version when that is the shop's sub-style edit of the folder's bundle, else from the folder."""

from __future__ import annotations

import json
import uuid

from jewelry_pipeline.core.bundle import CONFIG_FILE
from jewelry_pipeline.datasets.serving import ServingBundleDataset
from jewelry_pipeline.serving.edits import StoreVersions, SubstyleEditor
from jewelry_pipeline.serving.store import store_in_bentoml
from tests.serving.conftest import make_bundle

RENAME = {"op": "rename", "category": "ring", "cluster": 0, "name": "Bands"}


def _stored(folder, name: str) -> None:
    """The folder's bundle as the store's latest version of `name` (as a promoted run leaves it)."""
    version = json.loads((folder.resolve() / CONFIG_FILE).read_text())["version"]
    store_in_bentoml(folder.resolve(), version, name)


def test_the_update_starts_from_the_stores_edit_of_the_same_bundle(tmp_path):
    name = f"bundle-test-{uuid.uuid4().hex[:8]}"  # this worker's store is shared: a name of its own
    folder = make_bundle(tmp_path / "bundle")
    _stored(folder, name)
    following = ServingBundleDataset(str(folder), bentoml_name=name, follow_store_edits=True)
    assert (following.load().substyles or {}).get("names") is None  # no edit: the folder

    editor = SubstyleEditor(StoreVersions(name))
    editor.apply([RENAME], editor.current_digest(), "ana")
    assert following.load().substyles["names"] == {"ring": {"0": "Bands"}}
    plain = ServingBundleDataset(str(folder), bentoml_name=name)
    assert (plain.load().substyles or {}).get("names") is None  # not asked: the folder


def test_an_edit_of_another_runs_bundle_is_not_followed(tmp_path):
    name = f"bundle-test-{uuid.uuid4().hex[:8]}"
    _stored(make_bundle(tmp_path / "other", run_id="run-b"), name)  # another run's models
    editor = SubstyleEditor(StoreVersions(name))
    editor.apply([RENAME], editor.current_digest(), "ana")
    folder = make_bundle(tmp_path / "bundle", run_id="run-a")
    following = ServingBundleDataset(str(folder), bentoml_name=name, follow_store_edits=True)
    assert (following.load().substyles or {}).get("names") is None
