"""The per-category pipelines follow the run's photo folder (or an explicit `categories`
parameter)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project, pipelines
from kedro.pipeline import Node, Pipeline

from jewelry_pipeline.pipelines import categories
from jewelry_pipeline.project_config import project_globals


@pytest.fixture
def fresh_registry():
    configure_project("jewelry_pipeline")
    yield
    categories._run.update({"raw_dir": None, "categories": None, "known": False})
    pipelines._is_data_loaded = False


def _context(project, runtime_params):
    loader = OmegaConfigLoader(
        str(project / "conf"),
        base_env="base",
        default_run_env="local",
        runtime_params=runtime_params,
    )
    return SimpleNamespace(config_loader=loader, project_path=project)


def _namespaces(name: str) -> set[str]:
    return {node.namespace.split(".")[0] for node in pipelines[name].nodes if node.namespace}


def test_namespaces_are_the_sub_folders_of_raw_dir(kedro_project, tmp_path, fresh_registry):
    photos = tmp_path / "photos"
    for folder in ("hats", "boots", ".hidden"):
        (photos / folder).mkdir(parents=True)
    categories.RunCategories().after_context_created(
        _context(kedro_project, {"raw_dir": str(photos)})
    )
    assert categories.configured_categories() == ["boots", "hats"]
    assert _namespaces("autoencoders") == _namespaces("clustering") == {"boots", "hats"}
    assert {node.name for node in pipelines["package"].nodes} >= {"assemble_bundle"}


def test_an_explicit_categories_parameter_wins(kedro_project, tmp_path, fresh_registry):
    photos = tmp_path / "photos"
    (photos / "boots").mkdir(parents=True)
    categories.RunCategories().after_context_created(
        _context(kedro_project, {"raw_dir": str(photos), "categories": ["socks", "belts"]})
    )
    assert categories.configured_categories() == ["belts", "socks"]
    assert _namespaces("autoencoders") == {"belts", "socks"}


def test_without_raw_dir_the_folder_named_in_globals_decides(
    kedro_project, tmp_path, fresh_registry, monkeypatch
):
    """The default photo folder has one home, conf/base/globals.yml: the catalog, the category
    discovery (with or without a Kedro context) and the CLI all read it there."""
    (kedro_project / "shop" / "hats").mkdir(parents=True)
    names = kedro_project / "conf" / "base" / "globals.yml"
    names.write_text(names.read_text().replace("raw_dir: data/01_raw/jewelry", "raw_dir: shop"))
    context = _context(kedro_project, {})
    assert context.config_loader["catalog"]["raw_images"]["path"] == "shop"
    categories.RunCategories().after_context_created(context)
    assert categories.configured_categories() == ["hats"]
    categories._run.update({"raw_dir": None, "categories": None, "known": False})
    monkeypatch.chdir(kedro_project)  # no context: the project's conf is read directly
    assert categories.configured_categories() == ["hats"]
    assert project_globals(kedro_project)["raw_dir"] == "shop"


def _pair(shared: int, own: int, parameter: int) -> tuple[int, int, int]:
    """A node function for the wiring tests."""
    return shared, own, parameter


def test_per_category_pipelines_namespace_everything_but_the_shared_names():
    pair = Node(func=_pair, inputs=["shared", "own", "params:p"], outputs="out", name="pair")
    fanned = categories.per_category_pipelines(
        Pipeline([pair]), ["b", "a"], inputs={"shared"}, parameters={"params:p"}
    )
    wiring = {(node.name, tuple(node.inputs), tuple(node.outputs)) for node in fanned.nodes}
    assert wiring == {
        ("a.pair", ("shared", "a.own", "params:p"), ("a.out",)),
        ("b.pair", ("shared", "b.own", "params:p"), ("b.out",)),
    }
    assert categories.per_category("out", ["b", "a"]) == ["b.out", "a.out"]  # fan-in, in that order
