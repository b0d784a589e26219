"""Catalog thumbnails: one JPEG per item from the original photo, at twice the size the page shows,
packed into two plain arrays (bytes and offsets) so a bundle holds no pickle."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from jewelry_pipeline.core.folders import RawImageFolder
from jewelry_pipeline.core.images import DecodeLimits, ImageRejected, decode_image

logger = logging.getLogger(__name__)

JPEG_QUALITY = 85


THUMBNAIL_ROUTE = "/items/{item_id}/thumbnail"  # where the service serves an item's thumbnail


def thumbnail_url(item_id: str) -> str:
    """The service's URL of an item's thumbnail (the catalog and every answer link to it)."""
    return THUMBNAIL_ROUTE.format(item_id=item_id)


def thumbnail_jpeg(image: np.ndarray, side: int, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG of an RGB uint8 photo whose longer side is at most `side` (never enlarged)."""
    if side < 16:
        raise ValueError(f"thumbnail side must be at least 16 px, got {side}")
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    pixels = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("the thumbnail could not be encoded as JPEG")
    return encoded.tobytes()


@dataclass(frozen=True)
class Thumbnails:
    """JPEG bytes of every item in one uint8 array; item i is `data[offsets[i]:offsets[i + 1]]`."""

    data: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        offsets = self.offsets
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0:
            raise ValueError("thumbnail offsets must be a 1-d array starting at 0")
        if np.any(np.diff(offsets) < 0) or offsets[-1] != len(self.data):
            raise ValueError("thumbnail offsets must increase and end at the data's length")

    @classmethod
    def from_jpegs(cls, jpegs: list[bytes]) -> Thumbnails:
        """Pack a list of JPEG files in item order."""
        lengths = np.array([len(j) for j in jpegs], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        data = np.frombuffer(b"".join(jpegs), np.uint8) if jpegs else np.empty(0, np.uint8)
        return cls(data, offsets)

    @classmethod
    def from_images(cls, images: np.ndarray, side: int) -> Thumbnails:
        """Thumbnails of decoded RGB photos (for example store rows)."""
        return cls.from_jpegs([thumbnail_jpeg(np.asarray(image), side) for image in images])

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Thumbnails:
        """Read back what `to_arrays` wrote."""
        return cls(np.asarray(arrays["jpeg"], np.uint8), np.asarray(arrays["offsets"], np.int64))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The two arrays to store (`np.savez`, loaded with `allow_pickle=False`)."""
        return {"jpeg": self.data, "offsets": self.offsets}

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def jpeg(self, row: int) -> bytes:
        """The JPEG bytes of item `row`."""
        if not 0 <= row < len(self):
            raise IndexError(f"thumbnail row {row} out of range 0..{len(self) - 1}")
        return self.data[self.offsets[row] : self.offsets[row + 1]].tobytes()

    def select(self, rows: np.ndarray) -> Thumbnails:
        """The thumbnails of `rows`, in that order."""
        return Thumbnails.from_jpegs([self.jpeg(int(r)) for r in rows])


def _original_thumbnail(
    raw_images: RawImageFolder, relpath: str, item_id: str, side: int, limits: DecodeLimits
) -> bytes | None:
    """The thumbnail of the original photo, or None when the file is gone or no longer the photo
    ingestion read (its sha256 no longer starts with the item id)."""
    try:
        data = raw_images.read(relpath)
        if not hashlib.sha256(data).hexdigest().startswith(item_id):
            return None
        return thumbnail_jpeg(decode_image(data, limits, draft_size=side), side)
    except (OSError, ImageRejected):
        return None


def catalog_thumbnails(
    catalog: pd.DataFrame,
    raw_images: RawImageFolder,
    images: np.ndarray,
    side: int,
    limits: DecodeLimits,
    workers: int = 4,
) -> Thumbnails:
    """One JPEG per catalog row (`path`, `item_id`, `store_index`) from its original photo, `side`
    px on the longer side; a photo changed or gone since ingestion falls back to its store row."""
    rows = list(catalog[["path", "item_id", "store_index"]].itertuples(index=False))
    jpegs: list[bytes] = []
    fallbacks, started, last_log = 0, time.perf_counter(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        made = pool.map(
            lambda r: _original_thumbnail(raw_images, str(r.path), str(r.item_id), side, limits),
            rows,
        )
        for row, jpeg in zip(rows, made):
            if jpeg is None:
                fallbacks += 1
                jpeg = thumbnail_jpeg(np.asarray(images[int(row.store_index)]), side)
            jpegs.append(jpeg)
            now = time.perf_counter()
            if now - last_log > 10:
                last_log = now
                done = len(jpegs)
                logger.info("thumbnails: %d/%d (%.0f/s)", done, len(rows), done / (now - started))
    if fallbacks:
        logger.warning(
            "%d of %d photos changed or disappeared since ingestion; their thumbnails are made "
            "from the model-size copy (run the whole pipeline again for sharp ones)",
            fallbacks,
            len(rows),
        )
    thumbnails = Thumbnails.from_jpegs(jpegs)
    logger.info(
        "thumbnails: %d at %d px, %.1f MB", len(thumbnails), side, len(thumbnails.data) / 1e6
    )
    return thumbnails
