"""The project's shared names (conf/base/globals.yml: photo folder, bundle, registry) for code that
runs outside a Kedro session: the CLI, the category discovery and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def project_globals(project: Path | None = None, env: str = "local") -> dict[str, Any]:
    """`globals.yml` of `project`'s conf (default: the working folder), `env` over base."""
    from kedro.config import OmegaConfigLoader

    conf = (project or Path.cwd()) / "conf"
    if not (conf / "base").is_dir():
        raise FileNotFoundError(f"No Kedro configuration at {conf}: run this from the project")
    return dict(OmegaConfigLoader(str(conf), base_env="base", default_run_env=env)["globals"])
