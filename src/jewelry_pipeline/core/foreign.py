"""Made-up photos of nothing in any catalog (plain colours, gradients, noise, rendered text,
stripes): what the "not in our catalog" threshold must refuse, made by the run itself."""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("plain", "gradient", "noise", "text", "stripes")
WORDS = ("INVOICE", "Total 42.00", "hello", "Order #1937", "receipt", "QTY 3", "SALE", "Dear Sir")


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float64)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    axis = np.linspace(0.0, 1.0, size)
    xx, yy = np.meshgrid(axis, axis)
    angle = rng.uniform(0, np.pi)
    weight = np.cos(angle) * xx + np.sin(angle) * yy
    weight = ((weight - weight.min()) / (np.ptp(weight) + 1e-9))[..., None]
    return _colour(rng) * (1 - weight) + _colour(rng) * weight


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    if rng.random() < 0.5:
        noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.5, 3.0))
    return noise.astype(np.float64)


def _text(rng: np.random.Generator, size: int) -> np.ndarray:
    page = np.ascontiguousarray(np.broadcast_to(_colour(rng), (size, size, 3))).astype(np.uint8)
    ink = tuple(int(v) for v in _colour(rng))
    for line in range(int(rng.integers(1, 4))):
        origin = (int(rng.integers(0, max(1, size // 4))), int(size * (line + 1) / 4))
        word = WORDS[int(rng.integers(len(WORDS)))]
        cv2.putText(
            page, word, origin, cv2.FONT_HERSHEY_SIMPLEX, size / 160, ink, max(1, size // 64)
        )
    return page.astype(np.float64)


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    period = int(rng.integers(2, max(3, size // 4)))
    stripes = ((np.arange(size) // period) % 2)[None, :]
    if rng.random() < 0.5:
        stripes = stripes.T
    return np.where(stripes[..., None] == 1, _colour(rng), _colour(rng)) * np.ones((size, size, 1))


def foreign_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """`count` RGB uint8 images of `size` px, the `KINDS` in turn, the same for the same seed."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        if kind == "plain":
            image = np.broadcast_to(_colour(rng), (size, size, 3))
        elif kind == "gradient":
            image = _gradient(rng, size)
        elif kind == "noise":
            image = _noise(rng, size)
        elif kind == "text":
            image = _text(rng, size)
        else:
            image = _stripes(rng, size)
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images
