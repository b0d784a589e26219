"""What a reliability check returns (`Check`) and how hard the checks push (`Settings`: `FULL`
for `make reliability`, `LIGHT` for the test suite)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jewelry_testing.servers import clean_env


@dataclass
class Check:
    """One reliability check: what it measured and whether it held."""

    name: str
    passed: bool
    figures: dict = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Settings:
    """How hard each check pushes: `FULL` for `make reliability`, `LIGHT` for the test suite."""

    load_clients: int
    load_seconds: float
    max_concurrency: int
    soak_requests: int
    soak_warmup: int
    kill_load_seconds: float
    per_category: int
    image_size: int
    epochs: int
    # latency, recovery time and memory limits decide the verdict (`make reliability` only)
    judge_figures: bool


FULL = Settings(
    load_clients=32,
    load_seconds=60,
    max_concurrency=16,
    soak_requests=20_000,
    soak_warmup=5_000,
    kill_load_seconds=20,
    per_category=30,
    image_size=32,
    epochs=8,
    judge_figures=True,
)
# The test suite's version checks behaviour only (200 or 429, never 5xx; recovers; no crash); its
# timings and memory figures are still measured and reported, but a busy machine cannot fail a test
# with them.
LIGHT = Settings(
    load_clients=12,
    load_seconds=6,
    max_concurrency=4,
    soak_requests=1_500,
    soak_warmup=300,
    kill_load_seconds=12,
    per_category=12,
    image_size=32,
    epochs=2,
    judge_figures=False,
)


def wide_output_env() -> dict[str, str]:
    """`clean_env`, wide enough that error messages in kedro's output are not wrapped."""
    return {**clean_env(), "COLUMNS": "400"}
