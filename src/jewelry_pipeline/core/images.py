"""The one safe image decoder, letterbox resize, perceptual hash and foreground map.

Used by the ingestion pipeline and by the serving endpoint alike, so both refuse the same files.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A truncated file must be refused, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")

# Signatures of image formats we recognise but do not accept (reason: unsupported_format).
_OTHER_IMAGE_SIGNATURES = (
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"\x00\x00\x01\x00",  # ICO
    b"8BPS",  # PSD
    b"\xff\x0a",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL ",
)


class ImageRejected(ValueError):
    """A file that is not a usable image; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodeLimits:
    """Caps that keep decoding bounded: bytes on the wire, pixels in the header, smallest side."""

    max_bytes: int = 40 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 16


def sniff_format(data: bytes) -> str | None:
    """Return the accepted format named by the file's leading bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    return None


def _looks_like_other_image(data: bytes) -> bool:
    """True for image formats that are recognised but not accepted (GIF, TIFF, HEIC...)."""
    if any(data.startswith(sig) for sig in _OTHER_IMAGE_SIGNATURES):
        return True
    return data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"avif", b"msf1")


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an RGB uint8 array; transparency is composited on white."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(img, dtype=np.float32)
        scale = 257.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 1.0
        gray = np.clip(values / scale, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def decode_image(
    data: bytes, limits: DecodeLimits = DecodeLimits(), draft_size: int | None = None
) -> np.ndarray:
    """Decode bytes to an RGB uint8 array, refusing anything unsafe with `ImageRejected`.

    The format comes from the content, never the file name. Size caps are checked from the
    header before any pixel is decoded, so a decompression bomb costs almost nothing.
    `draft_size` lets JPEG decode at reduced scale when only a small image is needed.
    """
    if not data:
        raise ImageRejected("not_an_image", "empty file")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            "too_large",
            f"{len(data)} bytes > cap {limits.max_bytes} (setting preprocessing.max_bytes)",
        )
    fmt = sniff_format(data)
    if fmt is None:
        if _looks_like_other_image(data):
            raise ImageRejected("unsupported_format", "only JPEG, PNG, WEBP and BMP are accepted")
        raise ImageRejected("not_an_image", "content is not a recognised image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[fmt])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_refusal(exc, limits) from None
        except Exception as exc:  # noqa: BLE001 - any parser failure is a refusal
            raise _refusal(exc, fmt) from None
        width, height = img.size
        if width * height > limits.max_pixels:
            raise ImageRejected(
                "too_large",
                f"{width}x{height} px > cap {limits.max_pixels} pixels "
                "(setting preprocessing.max_pixels)",
            )
        if min(width, height) < limits.min_side:
            raise ImageRejected("too_small", f"{width}x{height} px < {limits.min_side} px side")
        try:
            if draft_size and fmt == "JPEG":
                img.draft("RGB", (draft_size * 2, draft_size * 2))
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return np.ascontiguousarray(_to_rgb_array(img))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_refusal(exc, limits) from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a refusal
            raise _refusal(exc, fmt) from None


def _bomb_refusal(exc: Exception, limits: DecodeLimits) -> ImageRejected:
    """Refuse a decompression bomb quoting the configured cap, not Pillow's own limit."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1))} pixels" if found else "more pixels than Pillow decodes safely"
    return ImageRejected(
        "too_large", f"{size} > cap {limits.max_pixels} pixels (setting preprocessing.max_pixels)"
    )


def _refusal(exc: Exception, fmt: str) -> ImageRejected:
    """Classify a Pillow failure as a truncated or an otherwise corrupt file, in words a user can
    act on."""
    if isinstance(exc, UnidentifiedImageError):
        return ImageRejected(
            "corrupt", f"starts like a {fmt} file but its content cannot be decoded"
        )
    message = str(exc) or type(exc).__name__
    lowered = message.lower()
    truncated = isinstance(exc, EOFError) or any(
        w in lowered for w in ("truncat", "eof", "broken", "end of file")
    )
    return ImageRejected("truncated" if truncated else "corrupt", message)


def letterbox(image: np.ndarray, size: int, pad_value: int = 255) -> np.ndarray:
    """Resize keeping aspect ratio to fit `size`x`size`, centred on a `pad_value` canvas."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    canvas = np.full((size, size, image.shape[2] if image.ndim == 3 else 1), pad_value, np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized.reshape(new_h, new_w, -1)
    return canvas


def model_input(
    data: bytes, size: int, limits: DecodeLimits = DecodeLimits(), pad_value: int = 255
) -> np.ndarray:
    """Decode one file with every safety check and letterbox it to `size`x`size`x3."""
    return letterbox(decode_image(data, limits, draft_size=size), size, pad_value)


def preprocess(
    data: bytes, size: int, limits: DecodeLimits = DecodeLimits(), pad_value: int = 255
) -> tuple[np.ndarray, tuple[int, int]]:
    """`model_input`, plus the original (w, h) that ingestion records."""
    return model_input(data, size, limits, pad_value), _original_size(data)


def _original_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header, honouring EXIF rotation."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def perceptual_hash(image: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash) of an RGB image."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def hamming_pairs(hashes: np.ndarray, max_distance: int, block: int = 512) -> np.ndarray:
    """All index pairs (i < j) whose 64-bit hashes differ in at most `max_distance` bits."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = []
    for start in range(0, len(hashes), block):
        rows = hashes[start : start + block]
        distances = np.bitwise_count(rows[:, None] ^ hashes[None, :])
        i, j = np.nonzero(distances <= max_distance)
        i = i + start
        keep = i < j
        found.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)


def downsized_pixels(images: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """Store rows resized to `size`x`size` and flattened to [0, 1] floats (pixel features)."""
    small = [cv2.resize(images[r], (size, size), interpolation=cv2.INTER_AREA) for r in rows]
    return np.stack(small).reshape(len(rows), -1).astype(np.float32) / 255


@dataclass(frozen=True)
class Foreground:
    """How a foreground map is made (the `preprocessing.foreground` parameters).

    `window`: side of the backdrop's median filter, as a fraction of the image side. `shade_weight`:
    how much a gap that only brightens or darkens the backdrop's own colour (shadow, shading,
    mottling) counts against a change of colour; 1 counts both alike. `floor`: the quantile of the
    gaps taken as backdrop texture and subtracted. `align`: move the foreground's centre of mass to
    the centre, turn its principal axes upright and scale it to `radius`.
    """

    window: float
    shade_weight: float
    floor: float
    align: bool
    radius: float

    def __post_init__(self) -> None:
        if not 0 < self.window <= 1:
            raise ValueError(
                f"preprocessing.foreground.window must be in (0, 1]; got {self.window}"
            )
        if not 0 <= self.shade_weight <= 1:
            raise ValueError(
                f"preprocessing.foreground.shade_weight must be in [0, 1]; got {self.shade_weight}"
            )
        if not 0 <= self.floor < 1:
            raise ValueError(f"preprocessing.foreground.floor must be in [0, 1); got {self.floor}")
        if not 0 < self.radius < 0.5:
            raise ValueError(
                f"preprocessing.foreground.radius must be in (0, 0.5); got {self.radius}"
            )

    @classmethod
    def from_block(cls, block: Any) -> Foreground:
        """Read the `foreground` block of the `preprocessing` parameters (through
        `Preprocessing.from_config`); a missing key is an error."""
        if not isinstance(block, dict) or set(block) != {
            "window",
            "shade_weight",
            "floor",
            "align",
            "radius",
        }:
            raise ValueError(
                "preprocessing.foreground must set window, shade_weight, floor, align and radius; "
                f"got {block!r}"
            )
        return cls(
            float(block["window"]),
            float(block["shade_weight"]),
            float(block["floor"]),
            bool(block["align"]),
            float(block["radius"]),
        )


def foreground_kernel(image_size: int, window: float) -> int:
    """The odd median-filter side, `window` of the image side (at least 3), that estimates the
    backdrop."""
    return max(3, int(round(image_size * window)) // 2 * 2 + 1)


def foreground_map(image: np.ndarray, foreground: Foreground) -> np.ndarray:
    """How far each pixel stands out from its backdrop, 0-255 uint8, optionally aligned.

    The backdrop is a median filter spanning `foreground.window` of the side, so hue, gradients and
    exposure drop out. Each pixel's gap to it is split into a shade part (along the backdrop's own
    colour: shadows, shading, mottling) weighted by `foreground.shade_weight`, and a colour part;
    the gap is the largest channel of their sum. The `foreground.floor` quantile of the gaps (cloth,
    leftover mottling, sensor noise) is subtracted, and the 99th percentile of what remains maps to
    255.
    """
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    kernel = foreground_kernel(max(image.shape[:2]), foreground.window)
    backdrop = np.stack(
        [
            cv2.medianBlur(np.ascontiguousarray(image[:, :, c]), kernel)
            for c in range(image.shape[2])
        ],
        axis=-1,
    )
    backdrop = backdrop.astype(np.float32)
    difference = image.astype(np.float32) - backdrop
    # The backdrop's colour direction; the offset makes a black backdrop's direction grey.
    tint = backdrop + 10.0
    direction = tint / np.linalg.norm(tint, axis=-1, keepdims=True)
    shade = (difference * direction).sum(axis=-1, keepdims=True)
    gap = np.abs(difference - (1.0 - foreground.shade_weight) * shade * direction).max(axis=-1)
    if foreground.floor > 0:
        gap = np.maximum(gap - np.quantile(gap, foreground.floor), 0)
    scale = float(np.percentile(gap, 99))
    fmap = np.clip(np.rint(gap * (255.0 / max(scale, 1.0))), 0, 255).astype(np.uint8)
    return align_foreground(fmap, foreground.radius) if foreground.align else fmap


def align_foreground(fmap: np.ndarray, radius: float) -> np.ndarray:
    """Shift the map's centre of mass to the centre, rotate its principal axes upright and scale it.

    Only pixels above the map's Otsu threshold count, so faint leftover texture does not pull the
    pose. The rotation is taken modulo 90 degrees (at most 45 either way), so an upright object
    stays upright; the scale brings the RMS radius to `radius` of the side (by at most 4x either
    way).
    """
    threshold, _ = cv2.threshold(fmap, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    weights = np.where(fmap > threshold, fmap, 0).astype(np.float64)
    total = weights.sum()
    if total <= 0:
        return fmap
    height, width = fmap.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = (weights * xs).sum() / total, (weights * ys).sum() / total
    dx, dy = xs - cx, ys - cy
    mxx, myy, mxy = (
        (weights * dx * dx).sum() / total,
        (weights * dy * dy).sum() / total,
        (weights * dx * dy).sum() / total,
    )
    angle = (0.5 * np.degrees(np.arctan2(2 * mxy, mxx - myy)) + 45) % 90 - 45
    scale = float(np.clip(radius * max(height, width) / max(np.sqrt(mxx + myy), 1e-6), 0.25, 4.0))
    matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), float(angle), scale)
    matrix[:, 2] += (width / 2 - cx, height / 2 - cy)
    return cv2.warpAffine(fmap, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)


def foreground_maps(images: np.ndarray, rows: np.ndarray, foreground: Foreground) -> np.ndarray:
    """`foreground_map` of the given store rows, stacked as (n, h, w, 1) uint8."""
    maps = np.empty((len(rows), *images.shape[1:3], 1), np.uint8)
    for i, row in enumerate(rows):
        maps[i, :, :, 0] = foreground_map(images[row], foreground)
    return maps


AUTOENCODER_INPUTS = ("photo", "foreground")


def autoencoder_inputs(
    images: np.ndarray, rows: np.ndarray, kind: str, foreground: Foreground | None
) -> np.ndarray:
    """What the autoencoders see for the given store rows: the RGB photos, or their foreground maps
    (n, h, w, 1).

    `kind` is chosen per run on the user's own photos (see the autoencoders pipeline) and recorded
    in the serving bundle, so the service builds query vectors from the same input.
    """
    if kind == "photo":
        return np.asarray(images[np.asarray(rows)], dtype=np.uint8)
    if kind == "foreground":
        if foreground is None:
            raise ValueError("the foreground input needs the preprocessing.foreground settings")
        return foreground_maps(images, rows, foreground)
    raise ValueError(f"autoencoder input must be one of {AUTOENCODER_INPUTS}; got '{kind}'")


@dataclass(frozen=True)
class Preprocessing:
    """The `preprocessing` parameters, read once and only here: model input side, letterbox fill,
    decode caps, the foreground map, and (in a bundle) which input the autoencoders were trained
    on."""

    image_size: int
    pad_value: int = 255
    limits: DecodeLimits = DecodeLimits()
    foreground: Foreground | None = None
    autoencoder_input: str = "foreground"

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"preprocessing.image_size must be at least 8; got {self.image_size}")
        if not 0 <= self.pad_value <= 255:
            raise ValueError(f"preprocessing.pad_value must be in [0, 255]; got {self.pad_value}")
        if self.autoencoder_input not in AUTOENCODER_INPUTS:
            raise ValueError(
                f"autoencoder input must be one of {AUTOENCODER_INPUTS}; "
                f"got '{self.autoencoder_input}'"
            )

    @classmethod
    def from_config(
        cls, config: dict[str, Any], autoencoder_input: str | None = None
    ) -> Preprocessing:
        """Read the `preprocessing` parameters (or a bundle's copy); a bad value is a ValueError.

        `autoencoder_input` is the run's choice (`autoencoder_input.json`), when not in `config`.
        """
        return cls(
            image_size=int(config["image_size"]),
            pad_value=int(config.get("pad_value", 255)),
            limits=DecodeLimits(
                max_bytes=int(config.get("max_bytes", DecodeLimits.max_bytes)),
                max_pixels=int(config.get("max_pixels", DecodeLimits.max_pixels)),
                min_side=int(config.get("min_side", DecodeLimits.min_side)),
            ),
            foreground=Foreground.from_block(config["foreground"])
            if "foreground" in config
            else None,
            autoencoder_input=str(
                autoencoder_input or config.get("autoencoder_input", "foreground")
            ),
        )

    def to_config(self) -> dict[str, Any]:
        """`from_config` reversed: the plain parameters a bundle stores."""
        config: dict[str, Any] = {
            "image_size": self.image_size,
            "pad_value": self.pad_value,
            "max_bytes": self.limits.max_bytes,
            "max_pixels": self.limits.max_pixels,
            "min_side": self.limits.min_side,
            "autoencoder_input": self.autoencoder_input,
        }
        if self.foreground is not None:
            config["foreground"] = dataclasses.asdict(self.foreground)
        return config

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode an upload with every safety check and letterbox it to the model input."""
        return model_input(data, self.image_size, self.limits, self.pad_value)
