"""`kedro run` as a user sees it: quiet on success, one plain message for a user error, a traceback
for a real bug."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest


def _kedro(project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_successful_ingestion_prints_no_warning_from_other_packages_and_no_colour_codes(
    kedro_project, tiny_dataset
):
    result = _kedro(
        kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={tiny_dataset}"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    warnings = [line for line in output.splitlines() if "WARNING" in line or "Warning:" in line]
    assert warnings == [], warnings
    assert "\x1b[" not in output  # not a terminal: no colour codes
    assert "Ingestion: kept 48 photos" in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--pipelines", "ingestoin"],
            "Unknown pipeline 'ingestoin'. Pipelines: __default__, autoencoders",
        ),
        (["--params", "raw_dir="], "--params raw_dir= has no value"),
        (
            ["--pipelines", "ingestion", "--params", "raw_dir=/no/such/folder"],
            "The photo folder '/no/such/folder' does not exist",
        ),
        (
            ["--pipelines", "split", "--params", "raw_dir=SHORT"],
            "No complete ingestion output found. Run `kedro run --pipelines ingestion",
        ),
        (
            ["--pipelines", "ingestion", "--params", "raw_dir=SHORT"],
            "Categories with fewer than min_images_per_category=10 valid images: 'earring' has 2",
        ),
        (
            ["--pipelines", "ingestion", "--params", "raw_dir=SHORT,categories=[ring,bracelet]"],
            "The `categories` parameter lists ['bracelet', 'ring'], "
            "but SHORT has the category folders ['bracelet', 'earring', 'necklace', 'ring']",
        ),
    ],
)
def test_a_user_error_is_one_message_without_traceback(
    kedro_project, tiny_dataset, tmp_path, arguments, message
):
    short = tmp_path / "short"
    shutil.copytree(tiny_dataset, short)
    for path in sorted((short / "earring").iterdir())[2:]:
        path.unlink()
    result = _kedro(kedro_project, *[a.replace("SHORT", str(short)) for a in arguments])
    output = " ".join((result.stdout + result.stderr).split())  # undo the console's line wrapping
    assert result.returncode != 0
    assert "Traceback" not in output and "--from-nodes" not in output
    message = message.replace("SHORT", str(short))
    assert output.count(message.split(".")[0]) == 1, output[-2000:]
    assert message in output


def test_a_real_bug_keeps_its_traceback(kedro_project, tiny_dataset):
    assert (
        _kedro(
            kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={tiny_dataset}"
        ).returncode
        == 0
    )
    result = _kedro(
        kedro_project,
        "--pipelines",
        "split",
        "--params",
        f"raw_dir={tiny_dataset},split.train=lots",
    )
    assert result.returncode != 0
    assert (
        "Traceback" in result.stdout + result.stderr
        and "could not convert string to float" in result.stdout + result.stderr
    )


def test_params_keep_commas_inside_lists_and_refuse_malformed_items():
    import click

    from jewelry_pipeline.cli import run, split_params

    option = next(p for p in run.params if p.name == "params")
    context = click.Context(run)
    assert split_params(
        context, option, "raw_dir=/a/b,categories=[rings, studs],k=3,nested={x: 1, y: [2,3]}"
    ) == {
        "raw_dir": "/a/b",
        "categories": ["rings", "studs"],
        "k": 3,
        "nested": {"x": 1, "y": [2, 3]},
    }
    with pytest.raises(click.UsageError, match="Item `studs` must contain a key and a value"):
        split_params(context, option, "categories=rings,studs")


def test_admin_token_prints_a_token_once_and_stores_only_its_digest(tmp_path):
    import yaml
    from click.testing import CliRunner

    from jewelry_pipeline.cli import main
    from jewelry_pipeline.serving.admin import TOKENS_FILE_VARIABLE, AdminTokens

    credentials = tmp_path / "conf" / "local" / "credentials.yml"
    credentials.parent.mkdir(parents=True)
    credentials.write_text("mlflow:\n  user: kept\n")
    runner = CliRunner()
    made = runner.invoke(main, ["admin-token", "shop-lead", "--credentials", str(credentials)])
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    stored = yaml.safe_load(credentials.read_text())
    assert stored["mlflow"] == {"user": "kept"} and token not in credentials.read_text()
    assert oct(credentials.stat().st_mode & 0o777) == "0o600"
    tokens = AdminTokens.from_environment({TOKENS_FILE_VARIABLE: str(credentials)})
    assert tokens.identify(f"Bearer {token}") == "shop-lead"
    again = runner.invoke(main, ["admin-token", "shop-lead", "--credentials", str(credentials)])
    assert again.exit_code != 0 and "--replace" in again.output
    replaced = runner.invoke(
        main, ["admin-token", "shop-lead", "--credentials", str(credentials), "--replace"]
    )
    new = replaced.output.strip().splitlines()[-1]
    tokens = AdminTokens.from_environment({TOKENS_FILE_VARIABLE: str(credentials)})
    assert tokens.identify(f"Bearer {new}") == "shop-lead"
    assert tokens.identify(f"Bearer {token}") is None  # the replaced one no longer edits
    bad = runner.invoke(main, ["admin-token", "no spaces", "--credentials", str(credentials)])
    assert bad.exit_code != 0 and "letters, digits" in bad.output
