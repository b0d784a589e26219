"""The `jewelry-pipeline` console script (dataset generation) and the project's `kedro run`.
That `kedro run` reports user errors plainly."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from jewelry_pipeline.core.errors import user_error_in


@click.group()
def main() -> None:
    """jewelry-pipeline helper commands (the pipelines themselves run with `kedro run`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@main.command()
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Folder to write into."
)
@click.option(
    "--per-category",
    default=500,
    show_default=True,
    type=click.IntRange(1),
    help="Images per category.",
)
@click.option(
    "--seed", default=42, show_default=True, type=int, help="Random seed; same seed, same files."
)
@click.option(
    "--size",
    default=128,
    show_default=True,
    type=click.IntRange(28, 1024),
    help="Image side in pixels.",
)
@click.option(
    "--workers", default=None, type=click.IntRange(1), help="Processes (default: all cores)."
)
def synth(out: str, per_category: int, seed: int, size: int, workers: int | None) -> None:
    """Generate the built-in jewelry dataset: OUT/<category>/*.jpg|png plus substyles.csv."""
    from jewelry_pipeline.synth import generate_dataset  # OpenCV loads only when generating

    stats = generate_dataset(out, per_category=per_category, seed=seed, size=size, workers=workers)
    click.echo(
        f"wrote {stats['images']} images to {out} in {stats['seconds']:.1f}s "
        f"({stats['images_per_second']:.0f} images/s)"
    )


@main.group(name="tracking-server")
def tracking_server() -> None:
    """A team's MLflow tracking server on this machine (PostgreSQL backend, 127.0.0.1)."""


_FOLDER = click.option(
    "--folder",
    default=".tracking",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the database, artifacts and logs live.",
)


@tracking_server.command(name="start")
@_FOLDER
@click.option("--postgres-port", default=55432, show_default=True, type=click.IntRange(1, 65535))
@click.option("--port", default=5055, show_default=True, type=click.IntRange(1, 65535))
def tracking_server_start(folder: Path, postgres_port: int, port: int) -> None:
    """Start PostgreSQL and `mlflow server` (created on first start; no-op when running)."""
    from jewelry_pipeline import tracking_server as server

    try:
        state = server.start(folder, postgres_port, port)
    except server.TrackingServerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"MLflow tracking server: {state.url}")
    click.echo(f"Use it with: export MLFLOW_TRACKING_URI={state.url}; kedro run --env team")


@tracking_server.command(name="stop")
@_FOLDER
def tracking_server_stop(folder: Path) -> None:
    """Stop `mlflow server`, then PostgreSQL."""
    from jewelry_pipeline import tracking_server as server

    server.stop(folder)
    click.echo("tracking server stopped")


@tracking_server.command(name="status")
@_FOLDER
def tracking_server_status(folder: Path) -> None:
    """Print the server's URL, or fail when it is not running."""
    from jewelry_pipeline import tracking_server as server

    state = server.status(folder)
    if state is None:
        raise click.ClickException(f"no tracking server is running from {folder}")
    click.echo(state.url)


@main.command(name="admin-token")
@click.argument("name")
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False, path_type=Path),
    default="conf/local/credentials.yml",
    show_default=True,
    help="Where the digest is written (git-ignored); the service reads it from there.",
)
@click.option("--replace", is_flag=True, help="Replace the token already named NAME.")
def admin_token(name: str, credentials: Path, replace: bool) -> None:
    """Make a token that may edit the sub-styles, for the person or role NAME.

    The token is printed once; only its sha256 digest is written to the credentials file, under
    `admin_tokens`. Send it as `Authorization: Bearer <token>`."""
    import yaml

    from jewelry_pipeline.serving.admin import AdminTokenError, AdminTokens, new_token, token_digest

    loaded = yaml.safe_load(credentials.read_text()) if credentials.is_file() else None
    loaded = loaded if isinstance(loaded, dict) else {}
    entries = dict(loaded.get("admin_tokens") or {})
    if name in entries and not replace:
        raise click.ClickException(f"a token named '{name}' exists; add --replace to replace it")
    token = new_token()
    entries[name] = token_digest(token)
    try:
        AdminTokens.parse(entries)
    except AdminTokenError as exc:
        raise click.ClickException(str(exc)) from None
    credentials.parent.mkdir(parents=True, exist_ok=True)
    credentials.write_text(yaml.safe_dump({**loaded, "admin_tokens": entries}, sort_keys=False))
    credentials.chmod(0o600)
    click.echo(f"Token for '{name}' (shown once; {credentials} holds only its digest):\n{token}")


@main.command(name="pull-champion")
@click.option("--env", default="base", show_default=True, help="Kedro environment to read.")
def pull_champion_command(env: str) -> None:
    """Import the registry's champion bundle into this machine's BentoML store (`make serve`).

    The tracking server comes from MLFLOW_TRACKING_URI; the model name and alias from
    conf/base/globals.yml (`registry`)."""
    import os

    from jewelry_pipeline.champion import pull_champion
    from jewelry_pipeline.core.errors import UserInputError
    from jewelry_pipeline.project_config import project_globals

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise click.ClickException(
            "Set MLFLOW_TRACKING_URI to the team's tracking server (http://HOST:PORT)."
        )
    registry = project_globals(env=env)["registry"]
    try:
        tag = pull_champion(registry["classifier"], registry["alias"])
    except UserInputError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"champion imported into the BentoML store as {tag}; `make serve` serves it")


def _refuse_bad_arguments(arguments: dict[str, Any]) -> None:
    """Unknown pipeline names and empty `--params` values are user errors, named before anything
    runs."""
    from kedro.framework.project import pipelines

    empty = sorted(
        key
        for key, value in (arguments.get("params") or {}).items()
        if value is None or str(value).strip() == ""
    )
    if empty:
        raise click.UsageError(
            f"--params {', '.join(f'{key}=' for key in empty)} has no value; "
            "for example `--params raw_dir=/path/to/photos`."
        )
    requested = ([arguments["pipeline"]] if arguments.get("pipeline") else []) + list(
        arguments.get("pipelines") or []
    )
    unknown = sorted(set(requested) - set(pipelines))
    if unknown:
        raise click.UsageError(
            f"Unknown pipeline {', '.join(map(repr, unknown))}. "
            f"Pipelines: {', '.join(sorted(pipelines))}."
        )


def _run(**arguments: Any) -> Any:
    """Kedro's own `run`, with user errors (folder, photos, parameters, stale data) as one message
    and exit code 1."""
    _refuse_bad_arguments(arguments)
    try:
        return kedro_run.callback(**arguments)
    except Exception as exc:
        user_error = user_error_in(exc)
        if user_error is None:
            raise  # a real bug keeps its traceback
        raise click.ClickException(str(user_error)) from None


def split_params(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Kedro's `--params` parsing, except that a comma inside [...] or {...} belongs to its value,
    so `--params "raw_dir=DIR,categories=[rings,studs]"` passes a list (Kedro's own parser splits it
    at every comma)."""
    if not value or isinstance(value, dict):
        return value or {}
    items, depth, current = [], 0, []
    for char in value:
        depth += (char in "[{") - (char in "]}" and depth > 0)
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    dot_list = []
    for item in filter(None, (item.strip() for item in items)):
        key, equals, item_value = item.partition("=")
        if not equals:
            ctx.fail(
                f"Invalid format of `{param.name}` option: Item `{item}` must contain a key and a "
                "value separated by `=`."
            )
        if not key.strip():
            ctx.fail(
                f"Invalid format of `{param.name}` option: Parameter key cannot be an empty string."
            )
        dot_list.append(f"{key.strip()}={item_value}")
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.from_dotlist(dot_list))


def _run_options() -> list[click.Parameter]:
    """Kedro's `run` options, with `--params` parsed by `split_params`."""
    options = []
    for option in kedro_run.params:
        if option.name == "params":
            option = copy.copy(option)
            option.callback = split_params
        options.append(option)
    return options


@click.group(name="jewelry_pipeline")
def cli() -> None:
    """Project commands: Kedro merges this group into its CLI, overriding `run` (`kedro synth` works
    as well)."""


run = click.Command(
    "run",
    params=_run_options(),
    callback=_run,
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
cli.add_command(run)
cli.add_command(synth)

if __name__ == "__main__":
    main()
