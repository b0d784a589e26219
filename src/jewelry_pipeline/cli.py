"""The `jewelry-pipeline` console script: dataset generation and other helper commands."""

from __future__ import annotations

import logging

import click

from jewelry_pipeline.synth import generate_dataset


@click.group()
def main() -> None:
    """jewelry-pipeline helper commands (the pipelines themselves run with `kedro run`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write into.")
@click.option("--per-category", default=500, show_default=True, type=click.IntRange(1), help="Images per category.")
@click.option("--seed", default=42, show_default=True, type=int, help="Random seed; same seed, same files.")
@click.option("--size", default=128, show_default=True, type=click.IntRange(28, 1024), help="Image side in pixels.")
@click.option("--workers", default=None, type=click.IntRange(1), help="Processes (default: all cores).")
def synth(out: str, per_category: int, seed: int, size: int, workers: int | None) -> None:
    """Generate the built-in jewelry dataset: OUT/<category>/*.jpg|png plus substyles.csv."""
    stats = generate_dataset(out, per_category=per_category, seed=seed, size=size, workers=workers)
    click.echo(f"wrote {stats['images']} images to {out} in {stats['seconds']:.1f}s ({stats['images_per_second']:.0f} images/s)")


# Kedro merges a project's `cli.cli` group into its own CLI, so `kedro synth` works as well.
cli = main

if __name__ == "__main__":
    main()
