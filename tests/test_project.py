"""Project-level checks: pipelines are registered and the Kedro-Viz static export builds."""

import subprocess
import sys

from kedro.framework.project import configure_project, pipelines


def test_pipelines_are_discovered():
    configure_project("jewelry_pipeline")
    assert {
        "ingestion",
        "split",
        "classifier",
        "autoencoders",
        "clustering",
        "recommender",
        "package",
        "__default__",
    } <= set(pipelines)
    default_nodes = {n.name for n in pipelines["__default__"].nodes}
    assert {"decode_images", "check_categories", "split_manifest"} <= default_nodes


def test_kedro_viz_build_exports_the_static_view(kedro_project):
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=kedro_project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    main_json = kedro_project / "build" / "api" / "main"
    assert main_json.is_file()
    assert "decode_images" in main_json.read_text()


def test_kedro_reads_every_nodes_type_hints_without_a_warning(caplog):
    """Kedro reads every node's hints when a run starts; a hint it cannot resolve (a partial, a
    name imported only for type checkers) was a warning per node and run: 128 in one run."""
    import logging
    import typing

    from kedro.validation import TypeExtractor

    configure_project("jewelry_pipeline")
    every = {name: pipelines[name] for name in pipelines}
    for node in every["__default__"].nodes:
        typing.get_type_hints(node.func)  # raises on a hint that does not resolve
    with caplog.at_level(logging.WARNING, logger="kedro.validation"):
        TypeExtractor(every).extract_types_from_pipelines()
    assert not [r for r in caplog.records if "type hints" in r.getMessage()], caplog.text
