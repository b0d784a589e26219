"""The built-in dataset: 4 jewelry categories x 3 sub-styles.
Each photo is drawn procedurally and deterministically."""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from .drawing import (
    METALS,
    PEARLS,
    STONES,
    Layer,
    background,
    chain_links,
    curve_points,
    gem,
    lighting,
    metal_ellipse,
    metal_polyline,
    place,
    sphere,
)

logger = logging.getLogger(__name__)


def _ring_band(s: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """The shared ring geometry in three-quarter view: (centre y, radius, tilt)."""
    radius, tilt = s * rng.uniform(0.2, 0.27), rng.uniform(0.45, 0.8)
    return s * 0.55, radius, tilt


def ring_plain(layer: Layer, rng, metal) -> float:
    s = layer.size
    cy, r, tilt = _ring_band(s, rng)
    depth, thick = s * rng.uniform(0.05, 0.09), s * rng.uniform(0.05, 0.08)
    metal_ellipse(layer, (s / 2, cy + depth), (r, r * tilt), 0, 0, 180, metal, thick)
    metal_ellipse(layer, (s / 2, cy), (r, r * tilt), 0, 0, 360, metal, thick)
    return rng.uniform(0.85, 1.15)


def ring_solitaire(layer: Layer, rng, metal) -> float:
    s = layer.size
    cy, r, tilt = _ring_band(s, rng)
    metal_ellipse(layer, (s / 2, cy), (r, r * tilt), 0, 0, 360, metal, s * rng.uniform(0.025, 0.04))
    top = cy - r * tilt
    radius = s * rng.uniform(0.07, 0.1)
    for dx in (-0.7, 0.7):
        metal_polyline(
            layer,
            np.array(
                [
                    [s / 2 + dx * radius, top + radius * 0.2],
                    [s / 2 + dx * radius * 0.8, top - radius],
                ]
            ),
            metal,
            s * 0.02,
        )
    gem(
        layer,
        (s / 2, top - radius * 0.55),
        radius,
        STONES[rng.integers(len(STONES))],
        metal,
        int(rng.choice([6, 8, 10])),
    )
    return rng.uniform(0.85, 1.15)


def ring_signet(layer: Layer, rng, metal) -> float:
    s = layer.size
    cy, r, tilt = _ring_band(s, rng)
    metal_ellipse(layer, (s / 2, cy), (r, r * tilt), 0, 0, 360, metal, s * rng.uniform(0.04, 0.06))
    top = cy - r * tilt
    w, h = s * rng.uniform(0.14, 0.19), s * rng.uniform(0.09, 0.13)
    metal_ellipse(layer, (s / 2, top), (w, h), 0, 0, 360, metal, -1)
    metal_ellipse(
        layer,
        (s / 2, top),
        (w * 0.62, h * 0.55),
        0,
        0,
        360,
        tuple(int(c * 0.55) for c in metal),
        max(1.0, s * 0.012),
    )
    return rng.uniform(0.85, 1.15)


def _pair(draw_one: Callable[[float], None], s: float, rng) -> None:
    gap = s * rng.uniform(0.17, 0.24)
    for side in (-1, 1):
        draw_one(s / 2 + side * gap)


def earring_stud(layer: Layer, rng, metal) -> float:
    s = layer.size
    radius, stone = s * rng.uniform(0.06, 0.09), STONES[rng.integers(len(STONES))]
    sides = int(rng.choice([5, 6, 8, 12]))
    _pair(lambda x: gem(layer, (x, s / 2), radius, stone, metal, sides), s, rng)
    return rng.uniform(0.9, 1.2)


def earring_hoop(layer: Layer, rng, metal) -> float:
    s = layer.size
    radius, tilt, thick = (
        s * rng.uniform(0.11, 0.16),
        rng.uniform(0.75, 1.0),
        s * rng.uniform(0.025, 0.045),
    )
    gap = rng.uniform(15, 40)
    _pair(
        lambda x: metal_ellipse(
            layer, (x, s / 2), (radius * tilt, radius), 0, -90 + gap, 270 - gap, metal, thick
        ),
        s,
        rng,
    )
    return rng.uniform(0.9, 1.2)


def earring_drop(layer: Layer, rng, metal) -> float:
    s = layer.size
    hook, length = s * rng.uniform(0.04, 0.06), s * rng.uniform(0.1, 0.18)
    radius, stone = s * rng.uniform(0.05, 0.075), STONES[rng.integers(len(STONES))]
    top = s * 0.3

    def one(x: float) -> None:
        metal_ellipse(layer, (x, top), (hook, hook), 0, 180, 360, metal, s * 0.018)
        metal_polyline(
            layer, np.array([[x + hook, top], [x + hook, top + length]]), metal, s * 0.016
        )
        tip = np.array(
            [
                [x + hook - radius, top + length + radius],
                [x + hook, top + length - radius * 0.4],
                [x + hook + radius, top + length + radius],
            ]
        )
        metal_polyline(layer, tip, metal, s * 0.02)
        gem(layer, (x + hook, top + length + radius * 1.2), radius, stone, metal, 8)

    _pair(one, s, rng)
    return rng.uniform(0.9, 1.15)


def necklace_chain(layer: Layer, rng, metal) -> float:
    s = layer.size
    points = curve_points("open", s, rng, int(rng.integers(18, 28)))
    chain_links(layer, points, metal, s * rng.uniform(0.018, 0.026), closed=False)
    return rng.uniform(0.9, 1.1)


def necklace_pendant(layer: Layer, rng, metal) -> float:
    s = layer.size
    points = curve_points("open", s, rng, 40)
    metal_polyline(layer, points, metal, s * rng.uniform(0.01, 0.018))
    bottom = points[len(points) // 2]
    radius = s * rng.uniform(0.06, 0.09)
    gem(
        layer,
        (bottom[0], bottom[1] + radius * 1.1),
        radius,
        STONES[rng.integers(len(STONES))],
        metal,
        int(rng.choice([4, 6, 8])),
    )
    return rng.uniform(0.9, 1.1)


def necklace_pearls(layer: Layer, rng, metal) -> float:
    s = layer.size
    radius = s * rng.uniform(0.025, 0.035)
    points = curve_points("open", s, rng, 60)
    spacing = np.r_[0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    pearl = PEARLS[rng.integers(len(PEARLS))]
    for d in np.arange(0, spacing[-1], radius * 2.05):
        i = np.searchsorted(spacing, d)
        sphere(layer, points[min(i, len(points) - 1)], radius, pearl)
    return rng.uniform(0.9, 1.1)


def bracelet_bangle(layer: Layer, rng, metal) -> float:
    s = layer.size
    radius, tilt = s * rng.uniform(0.3, 0.37), rng.uniform(0.35, 0.95)
    thick, depth = s * rng.uniform(0.035, 0.06), s * rng.uniform(0.03, 0.07)
    metal_ellipse(layer, (s / 2, s / 2 + depth), (radius, radius * tilt), 0, 0, 180, metal, thick)
    metal_ellipse(layer, (s / 2, s / 2), (radius, radius * tilt), 0, 0, 360, metal, thick)
    return rng.uniform(0.9, 1.12)


def bracelet_chain(layer: Layer, rng, metal) -> float:
    s = layer.size
    points = curve_points("closed", s, rng, int(rng.integers(20, 30)))
    chain_links(layer, points, metal, s * rng.uniform(0.02, 0.028), closed=True)
    return rng.uniform(0.9, 1.12)


def bracelet_beaded(layer: Layer, rng, metal) -> float:
    s = layer.size
    radius = s * rng.uniform(0.03, 0.045)
    points = curve_points("closed", s, rng, 200)
    perimeter = np.r_[0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    palette = [STONES[i] for i in rng.choice(len(STONES), 2)] + [PEARLS[rng.integers(len(PEARLS))]]
    for k, d in enumerate(np.arange(0, perimeter[-1], radius * 2.05)):
        i = np.searchsorted(perimeter, d)
        sphere(layer, points[min(i, len(points) - 1)], radius, palette[k % int(rng.integers(1, 4))])
    return rng.uniform(0.9, 1.12)


SUBSTYLES: dict[str, dict[str, Callable]] = {
    "bracelet": {
        "bangle": bracelet_bangle,
        "chain_link": bracelet_chain,
        "beaded": bracelet_beaded,
    },
    "earring": {"stud": earring_stud, "hoop": earring_hoop, "drop": earring_drop},
    "necklace": {
        "chain": necklace_chain,
        "pendant": necklace_pendant,
        "pearl_strand": necklace_pearls,
    },
    "ring": {"plain_band": ring_plain, "solitaire": ring_solitaire, "signet": ring_signet},
}
CATEGORIES = tuple(SUBSTYLES)


def render(category: str, substyle: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw one photo (BGR uint8, size x size) of the given category and sub-style."""
    scene = background(size, rng)
    layer = Layer(size)
    metal = METALS[rng.choice(list(METALS))]
    scale = SUBSTYLES[category][substyle](layer, rng, metal)
    scene = place(layer, scene, rng, scale)
    return lighting(scene, rng)


def _item(seed: int, category: str, index: int) -> tuple[str, str, np.random.Generator]:
    """The sub-style, file extension and random stream of one item; fixed by (seed, category,
    index)."""
    cat_idx = CATEGORIES.index(category)
    styles = list(SUBSTYLES[category])
    rng = np.random.default_rng([seed, cat_idx, index])
    ext = "jpg" if rng.random() < 0.7 else "png"
    return styles[index % len(styles)], ext, rng


def _write_one(args: tuple[str, int, int, int, str]) -> tuple[str, str, str]:
    out, seed, size, index, category = args
    substyle, ext, rng = _item(seed, category, index)
    image = render(category, substyle, rng, size)
    relpath = f"{category}/{category}_{index:05d}.{ext}"
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))]
        if ext == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    ok, encoded = cv2.imencode(f".{ext}", image, params)
    if not ok:
        raise RuntimeError(f"could not encode {relpath}")
    Path(out, relpath).write_bytes(encoded.tobytes())
    return relpath, category, substyle


def contact_sheet(seed: int, size: int, columns: int = 8) -> np.ndarray:
    """A grid image: one row per category x sub-style, `columns` samples each, labelled."""
    label_w, rows = 150, []
    for category in CATEGORIES:
        for index_offset, substyle in enumerate(SUBSTYLES[category]):
            tiles = []
            for k in range(columns):
                index = index_offset + k * len(SUBSTYLES[category])
                _, _, rng = _item(seed, category, index)
                tiles.append(render(category, substyle, rng, size))
            label = np.full((size, label_w, 3), 255, np.uint8)
            cv2.putText(
                label,
                category,
                (6, size // 2 - 4),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
            cv2.putText(
                label,
                substyle,
                (6, size // 2 + 16),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                (80, 80, 80),
                1,
                cv2.LINE_AA,
            )
            rows.append(np.hstack([label, *tiles]))
    return np.vstack(rows)


def contact_sheet_path(out: str | Path) -> Path:
    """Where the contact sheet of a dataset written to `out` goes: beside the tree, so ingestion
    never sees it."""
    out = Path(out)
    return out.parent / f"{out.name}_contact_sheet.png"


def generate_dataset(
    out: str | Path, per_category: int, seed: int = 42, size: int = 128, workers: int | None = None
) -> dict[str, float]:
    """Write `out/<category>/*.{jpg,png}`, `out/substyles.csv` and, beside the photo tree,
    `<out>_contact_sheet.png`."""
    out = Path(out)
    for category in CATEGORIES:
        (out / category).mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), seed, size, i, c) for c in CATEGORIES for i in range(per_category)]
    workers = workers or os.cpu_count() or 1
    started = time.perf_counter()
    rows = []
    # spawn, not fork: forking a process that already runs TensorFlow threads can deadlock.
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        for done, row in enumerate(pool.map(_write_one, tasks, chunksize=64), start=1):
            rows.append(row)
            if done % 500 == 0 or done == len(tasks):
                rate = done / (time.perf_counter() - started)
                logger.info("synth: %d/%d images (%.0f images/s)", done, len(tasks), rate)
    with open(out / "substyles.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "category", "substyle"])
        writer.writerows(sorted(rows))
    cv2.imwrite(str(contact_sheet_path(out)), contact_sheet(seed, size))
    elapsed = time.perf_counter() - started
    return {"images": len(rows), "seconds": elapsed, "images_per_second": len(rows) / elapsed}
