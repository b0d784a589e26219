"""Project pipelines, discovered from `pipelines/<name>/pipeline.py`."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

DAY_TWO = {"catalog_update"}  # run on their own, on a trained champion: not part of `kedro run`


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline found, plus `__default__`: the sum of all but the day-two ones."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        pipeline for name, pipeline in pipelines.items() if name not in DAY_TWO
    )
    return pipelines
