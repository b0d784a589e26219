"""The house rule, enforced: the core imports no framework (kedro, mlflow, bentoml) and nothing
outside itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "src" / "jewelry_pipeline" / "core"
FRAMEWORKS = ("kedro", "kedro_mlflow", "kedro_datasets", "mlflow", "bentoml")


def imported_modules(source: str, package: str) -> list[str]:
    """Every module `source` imports, at module level or inside a function (relative imports
    resolved from `package`, the module's own package)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1]
            names.append(".".join(base + ([node.module] if node.module else [])))
    return names


def forbidden_imports(source: str, package: str = "jewelry_pipeline.core") -> list[str]:
    """Every import in `source` (`imported_modules`) of a framework or of the project outside its
    core."""
    found = []
    for name in imported_modules(source, package):
        top = name.split(".")[0]
        outside_core = top == "jewelry_pipeline" and not name.startswith("jewelry_pipeline.core")
        if top in FRAMEWORKS or outside_core:
            found.append(name)
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import numpy as np\nfrom jewelry_pipeline.core.images import letterbox", []),
        ("def f():\n    import mlflow.keras\n", ["mlflow.keras"]),
        ("from kedro.io import AbstractDataset", ["kedro.io"]),
        ("import bentoml", ["bentoml"]),
        (
            "from jewelry_pipeline.serving.engine import RecommendationEngine",
            ["jewelry_pipeline.serving.engine"],
        ),
        ("from . import images", []),
        ("from .. import serving", ["jewelry_pipeline"]),
    ],
)
def test_the_checker_finds_framework_and_upward_imports(source, expected):
    assert forbidden_imports(source) == expected


def test_relative_imports_are_resolved_from_the_modules_package():
    inside = "jewelry_pipeline.core.models"
    assert forbidden_imports("from .. import images", inside) == []
    assert forbidden_imports("from ...serving import engine", inside) == [
        "jewelry_pipeline.serving"
    ]


def test_the_core_imports_no_framework_and_nothing_outside_itself():
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) >= 10, "the core package moved; update CORE"
    offenders = {}
    for module in modules:
        package = ".".join(("jewelry_pipeline", "core", *module.relative_to(CORE).parent.parts))
        if bad := forbidden_imports(module.read_text(), package):
            offenders[str(module.relative_to(CORE))] = bad
    assert offenders == {}


PIPELINES = CORE.parent / "pipelines"


def other_pipelines_imported(source: str, pipeline: str) -> list[str]:
    """The modules of pipelines other than `pipeline` that a module of `pipeline` imports."""
    package = f"jewelry_pipeline.pipelines.{pipeline}"
    pipeline_names = {p.name for p in PIPELINES.iterdir() if (p / "pipeline.py").exists()}
    return [
        name
        for name in imported_modules(source, package)
        if name.startswith("jewelry_pipeline.pipelines.")
        and name.split(".")[2] in pipeline_names
        and name.split(".")[2] != pipeline
    ]


def test_the_pipeline_checker_finds_a_neighbours_nodes():
    source = (
        "from jewelry_pipeline.pipelines.package.nodes import make_thumbnails\nfrom .nodes import x"
    )
    assert other_pipelines_imported(source, "catalog_update") == [
        "jewelry_pipeline.pipelines.package.nodes"
    ]
    assert other_pipelines_imported("from ..package import nodes", "ingestion") == [
        "jewelry_pipeline.pipelines.package"
    ]
    assert other_pipelines_imported(source, "package") == []


def test_no_pipeline_imports_another_pipeline():
    """Shared domain code lives in core; a pipeline is a thin shell that no other pipeline reads."""
    offenders = {}
    for module in sorted(PIPELINES.glob("*/*.py")):
        if bad := other_pipelines_imported(module.read_text(), module.parent.name):
            offenders[str(module.relative_to(PIPELINES))] = bad
    assert len(list(PIPELINES.glob("*/pipeline.py"))) >= 8, "the pipelines moved; update PIPELINES"
    assert offenders == {}


MAX_FUNCTION_LINES = 80


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Every function (methods and nested ones too) of `source` over `limit` lines, by name."""
    return {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > limit
    }


def test_the_length_checker_counts_docstrings_and_finds_methods():
    body = "\n".join(f"    x{i} = {i}" for i in range(3))
    assert long_functions(f'def f():\n    """Doc."""\n{body}\n', limit=4) == {"f": 5}
    assert long_functions(f'def f():\n    """Doc."""\n{body}\n', limit=5) == {}
    method = "\n".join(f"        x{i} = {i}" for i in range(5))
    assert long_functions(f"class A:\n    def g(self):\n{method}\n", limit=4) == {"g": 6}


def test_no_function_in_src_is_longer_than_80_lines():
    """A function a reader cannot see whole gets split into named steps."""
    src = CORE.parents[1]
    offenders = {
        f"{module.relative_to(src)}:{name}": length
        for module in sorted(src.rglob("*.py"))
        for name, length in long_functions(module.read_text()).items()
    }
    assert offenders == {}


def test_only_bentoml_compat_reaches_into_bentoml_internals():
    """BentoML's private modules change without notice: one file holds every use of them."""
    src = CORE.parents[1]
    users = {
        str(module.relative_to(src))
        for module in sorted(src.rglob("*.py"))
        if any(
            name.startswith("bentoml._internal")
            for name in imported_modules(module.read_text(), "jewelry_pipeline")
        )
    }
    assert users == {"jewelry_pipeline/serving/bentoml_compat.py"}


def test_the_wheel_ships_the_product_only_and_no_product_code_imports_test_support():
    """setuptools finds only `jewelry_pipeline` under src/ (test support lives in the checkout),
    and nothing in it imports `jewelry_testing` or `tests`."""
    from setuptools import find_packages

    src = CORE.parents[1]
    assert {name.split(".")[0] for name in find_packages(where=str(src))} == {"jewelry_pipeline"}
    for path in (src / "jewelry_pipeline").rglob("*.py"):
        package = ".".join(path.relative_to(src).parent.parts)
        roots = {name.split(".")[0] for name in imported_modules(path.read_text(), package)}
        assert not roots & {"jewelry_testing", "tests"}, path


def test_no_serving_module_holds_a_bundle_at_module_level():
    """The bundle a worker serves is the service instance's `BundleHolder`: no module keeps one (or
    its engine) for the middleware to read."""
    import importlib
    import pkgutil

    from jewelry_pipeline import serving
    from jewelry_pipeline.serving.engine import RecommendationEngine
    from jewelry_pipeline.serving.loader import BundleHolder

    held = []
    for info in pkgutil.iter_modules(serving.__path__, "jewelry_pipeline.serving."):
        module = importlib.import_module(info.name)
        held += [
            f"{info.name}.{name}"
            for name, value in vars(module).items()
            if isinstance(value, BundleHolder | RecommendationEngine)
        ]
    assert held == []
