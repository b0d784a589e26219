"""Ingestion on a messy folder: every bad-file kind is reported with its reason, every good file
kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset
from PIL import Image

from jewelry_pipeline.core.folders import list_image_folder
from jewelry_pipeline.pipelines.ingestion import create_pipeline
from jewelry_pipeline.pipelines.ingestion.nodes import check_categories, decode_images

from ...conftest import image_bytes, random_photo

PREPROCESSING = {
    "image_size": 32,
    "pad_value": 255,
    "max_bytes": 5_000_000,
    "max_pixels": 4_000_000,
    "min_side": 16,
}
INGESTION = {
    "min_images_per_category": 5,
    "near_duplicate_max_hamming": 2,
    "near_duplicate_max_pixel_diff": 6.0,
    "workers": 2,
    "chunk_size": 4,
}


def build_messy_folder(
    root: Path, with_small_category: bool = True
) -> tuple[set[str], dict[str, str]]:
    """Write good photos in many forms plus one file of every bad kind; return (good paths,
    bad path -> reason)."""
    good: set[str] = set()
    bad: dict[str, str] = {}

    def put(relpath: str, data: bytes, reason: str | None = None) -> None:
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if reason:
            bad[relpath] = reason
        else:
            good.add(relpath)

    seed = iter(range(100, 10_000))
    for category in ("bracelet", "ring"):
        put(f"{category}/a.jpg", image_bytes(random_photo(next(seed)), "JPEG"))
        put(f"{category}/b.PNG", image_bytes(random_photo(next(seed)), "PNG"))
        put(f"{category}/c.webp", image_bytes(random_photo(next(seed)), "WEBP"))
        put(f"{category}/d.bmp", image_bytes(random_photo(next(seed)), "BMP"))
        put(f"{category}/png_named.jpg", image_bytes(random_photo(next(seed)), "PNG"))
        put(f"{category}/gray.png", image_bytes(random_photo(next(seed))[:, :, 0], "PNG"))
        rgba = np.dstack([random_photo(next(seed)), np.full((60, 80), 128, np.uint8)])
        put(f"{category}/rgba.png", image_bytes(rgba, "PNG"))
        put(
            f"{category}/sixteen.png",
            image_bytes(
                Image.fromarray(random_photo(next(seed))[:, :, 0].astype(np.uint16) * 257), "PNG"
            ),
        )
        put(
            f"{category}/cmyk.jpg",
            image_bytes(Image.fromarray(random_photo(next(seed))).convert("CMYK"), "JPEG"),
        )
        put(
            f"{category}/nested/deeper/e.jpeg",
            image_bytes(random_photo(next(seed), (640, 480)), "JPEG"),
        )
        put(f"{category}/tiny28.png", image_bytes(random_photo(next(seed), (28, 28)), "PNG"))
        (root / category / ".hidden.jpg").write_bytes(b"hidden: reported, never read")
        bad[f"{category}/.hidden.jpg"] = "hidden"
    original = image_bytes(random_photo(7), "PNG")
    put("ring/original.png", original)
    put("ring/zz_exact_copy.png", original, "duplicate")
    brighter = np.clip(random_photo(7).astype(int) + 2, 0, 255).astype(np.uint8)
    put("ring/zz_near_copy.png", image_bytes(brighter, "PNG"), "near_duplicate")
    put("ring/notes.jpg", b"this is not an image at all, just text" * 5, "not_an_image")
    put("ring/empty.png", b"", "not_an_image")
    put("ring/cut.jpg", image_bytes(random_photo(8), "JPEG")[:300], "truncated")
    put("bracelet/anim.gif", image_bytes(random_photo(9), "GIF"), "unsupported_format")
    put("bracelet/small.png", image_bytes(random_photo(10, (12, 12)), "PNG"), "too_small")
    from tests.core.test_images import bomb_png

    put("bracelet/bomb.png", bomb_png(20000, 20000), "too_large")
    if with_small_category:
        put("necklace/only.jpg", image_bytes(random_photo(11), "JPEG"))
        put("necklace/broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt")
    return good, bad


def test_every_bad_file_is_reported_and_every_good_file_kept(tmp_path):
    good, bad = build_messy_folder(tmp_path)
    raw = list_image_folder(tmp_path)
    store, manifest, rejects, _ = decode_images(raw, {}, PREPROCESSING, INGESTION)
    assert dict(zip(rejects["path"], rejects["reason"])) == bad
    assert set(manifest["path"]) == good
    assert store.shape == (len(good), 32, 32, 3) and store.dtype == np.uint8
    assert manifest["store_index"].tolist() == list(range(len(good)))
    assert manifest["item_id"].is_unique
    row = manifest.set_index("path").loc["ring/nested/deeper/e.jpeg"]
    assert (row["width"], row["height"], row["format"]) == (640, 480, "JPEG")
    assert manifest.set_index("path").loc["ring/png_named.jpg", "format"] == "PNG"


def test_small_category_fails_with_its_name(tmp_path):
    build_messy_folder(tmp_path)
    raw = list_image_folder(tmp_path)
    _, manifest, _, _ = decode_images(raw, {}, PREPROCESSING, INGESTION)
    with pytest.raises(ValueError, match="'necklace' has 1"):
        check_categories(
            manifest,
            pd.DataFrame(columns=["path", "category", "reason", "detail"]),
            np.zeros((len(manifest), 1, 1, 3), np.uint8),
            raw,
            INGESTION,
        )


def test_a_single_category_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    raw = list_image_folder(tmp_path)
    with pytest.raises(ValueError, match="at least 2 category folders"):
        check_categories(
            pd.DataFrame({"category": []}),
            pd.DataFrame({"category": [], "reason": []}),
            np.zeros((0, 1, 1, 3), np.uint8),
            raw,
            INGESTION,
        )


def test_pipeline_on_generated_data(tiny_dataset, tmp_path):
    catalog = DataCatalog(
        {
            "raw_images": MemoryDataset(list_image_folder(tiny_dataset), copy_mode="assign"),
            "decode_cache": MemoryDataset({}),
            "ingestion_rejects": CSVDataset(
                filepath=str(tmp_path / "rejects.csv")
            ),  # kept after its last reader
        },
    )
    catalog["params:preprocessing"] = PREPROCESSING
    catalog["params:ingestion"] = INGESTION
    catalog["params:categories"] = None
    SequentialRunner().run(create_pipeline(), catalog)
    manifest = catalog.load("ingestion_manifest")
    assert catalog.load("categories") == ["bracelet", "earring", "necklace", "ring"]
    assert len(manifest) + len(catalog.load("ingestion_rejects")) == 48
    assert len(manifest) >= 46
    assert catalog.load("image_store").shape == (len(manifest), 32, 32, 3)


def _kedro(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_kedro_run_on_a_messy_folder_via_runtime_params(kedro_project, tmp_path):
    photos = tmp_path / "photos"
    good, bad = build_messy_folder(photos, with_small_category=False)
    result = _kedro(kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={photos}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rejects = pd.read_csv(kedro_project / "data/08_reporting/ingestion_rejects.csv")
    assert dict(zip(rejects["path"], rejects["reason"])) == bad
    manifest = pd.read_csv(kedro_project / "data/03_primary/manifest.csv")
    assert set(manifest["path"]) == good
    assert np.load(kedro_project / "data/03_primary/image_store.npy").shape[0] == len(good)


def test_kedro_run_names_the_short_category_and_keeps_the_report(kedro_project, tmp_path):
    photos = tmp_path / "photos"
    build_messy_folder(photos, with_small_category=True)
    result = _kedro(kedro_project, "--pipelines", "ingestion", "--params", f"raw_dir={photos}")
    assert result.returncode != 0
    assert "'necklace' has 1" in result.stdout + result.stderr
    rejects = pd.read_csv(kedro_project / "data/08_reporting/ingestion_rejects.csv")
    assert "necklace/broken.png" in set(rejects["path"])


def test_the_same_photo_in_two_categories_is_a_label_conflict_and_no_copy_is_kept(tmp_path):
    photo = image_bytes(random_photo(3), "PNG")
    for category, seeds in (("bracelet", (40, 41, 42)), ("ring", (50, 51, 52))):
        for seed in seeds:
            (tmp_path / category).mkdir(exist_ok=True)
            (tmp_path / category / f"{seed}.png").write_bytes(
                image_bytes(random_photo(seed), "PNG")
            )
    (tmp_path / "bracelet" / "z_shared.png").write_bytes(photo)
    (tmp_path / "ring" / "a_shared.png").write_bytes(photo)
    _, manifest, rejects, _ = decode_images(
        list_image_folder(tmp_path), {}, PREPROCESSING, INGESTION
    )
    conflicts = rejects[rejects["reason"] == "label_conflict"].set_index("path")["detail"]
    assert set(conflicts.index) == {"bracelet/z_shared.png", "ring/a_shared.png"}
    assert (
        "ring/a_shared.png" in conflicts["bracelet/z_shared.png"]
    )  # the detail names the other copy
    assert len(manifest) == 6 and not manifest["path"].str.contains("shared").any()


def test_summary_line_counts_kept_and_refused_by_reason_and_names_the_report(tmp_path, caplog):
    build_messy_folder(tmp_path, with_small_category=False)
    raw = list_image_folder(tmp_path)
    _, manifest, rejects, _ = decode_images(raw, {}, PREPROCESSING, INGESTION)
    with caplog.at_level("INFO"):
        check_categories(
            manifest, rejects, np.zeros((len(manifest), 1, 1, 3), np.uint8), raw, INGESTION
        )
    last = caplog.records[-1].getMessage()
    assert last.startswith(f"Ingestion: kept {len(manifest)} photos, refused {len(rejects)} (")
    assert "hidden 2" in last and "duplicate 1" in last and "ingestion_rejects.csv" in last


def test_size_refusals_name_the_configured_cap_and_its_setting(tmp_path):
    from tests.core.test_images import bomb_png

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "bomb.png").write_bytes(
        bomb_png(12000, 12000)
    )  # 144 MP: over Pillow's own limit too
    (tmp_path / "b" / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 6_000_000)
    _, _, rejects, _ = decode_images(list_image_folder(tmp_path), {}, PREPROCESSING, INGESTION)
    detail = rejects.set_index("path")["detail"]
    assert (
        detail["a/bomb.png"]
        == "144000000 pixels > cap 4000000 pixels (setting preprocessing.max_pixels)"
    )
    assert detail["b/big.png"].endswith("> cap 5000000 (setting preprocessing.max_bytes)")


def test_a_short_category_says_why_it_is_short(tmp_path):
    for seed in range(6):
        (tmp_path / "good").mkdir(exist_ok=True)
        (tmp_path / "good" / f"{seed}.png").write_bytes(image_bytes(random_photo(seed + 60), "PNG"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    raw = list_image_folder(tmp_path)
    _, manifest, rejects, _ = decode_images(raw, {}, PREPROCESSING, INGESTION)
    with pytest.raises(ValueError, match=r"'bad' has 0 \(refused: corrupt 1\)"):
        check_categories(
            manifest, rejects, np.zeros((len(manifest), 1, 1, 3), np.uint8), raw, INGESTION
        )
