"""Tests for the shared safe decoder, letterbox and perceptual hash."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from jewelry_pipeline.core.images import (
    DecodeLimits,
    Foreground,
    ImageRejected,
    Preprocessing,
    decode_image,
    foreground_kernel,
    foreground_map,
    foreground_maps,
    hamming_pairs,
    letterbox,
    perceptual_hash,
    preprocess,
    sniff_format,
)
from tests.conftest import image_bytes, random_photo


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge size, with a tiny compressed body (a decompression
    bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_accepted_formats_decode_to_rgb(fmt):
    data = image_bytes(random_photo(1), fmt)
    assert sniff_format(data) == fmt
    rgb = decode_image(data)
    assert rgb.dtype == np.uint8 and rgb.shape == (60, 80, 3)


def test_grayscale_is_expanded_to_three_channels():
    gray = random_photo(2)[:, :, 0]
    rgb = decode_image(image_bytes(gray, "PNG"))
    assert rgb.shape == (60, 80, 3)
    assert np.array_equal(rgb[:, :, 0], gray) and np.array_equal(rgb[:, :, 1], gray)


def test_rgba_is_composited_on_white():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)  # opaque red left half, transparent right half
    rgb = decode_image(image_bytes(rgba, "PNG"))
    assert tuple(rgb[5, 2]) == (255, 0, 0)
    assert tuple(rgb[5, 15]) == (255, 255, 255)


def test_palette_with_transparency_and_cmyk():
    palette = Image.fromarray(random_photo(3)).convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    assert decode_image(image_bytes(palette, "PNG", transparency=0)).shape == (60, 80, 3)
    cmyk = Image.fromarray(random_photo(4)).convert("CMYK")
    rgb = decode_image(image_bytes(cmyk, "JPEG"))
    assert rgb.shape == (60, 80, 3)
    assert np.abs(rgb.astype(int) - np.asarray(cmyk.convert("RGB")).astype(int)).mean() < 40


def test_sixteen_bit_grayscale_is_scaled_to_eight_bit():
    ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    rgb = decode_image(image_bytes(Image.fromarray(ramp), "PNG"))
    assert rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255


def test_exif_orientation_is_applied():
    img = Image.fromarray(random_photo(5, size=(80, 40)))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rgb, original = preprocess(image_bytes(img, "JPEG", exif=exif), 32)
    assert decode_image(image_bytes(img, "JPEG", exif=exif)).shape[:2] == (80, 40)
    assert original == (40, 80)
    assert rgb.shape == (32, 32, 3)


def test_extension_is_ignored_and_content_decides():
    png = image_bytes(random_photo(6), "PNG")
    assert sniff_format(png) == "PNG"  # no file name is ever consulted


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_an_image"),
        (b"hello, I am a text file pretending to be a photo" * 10, "not_an_image"),
        (b"\x80\x04\x95pickle-payload", "not_an_image"),
        (image_bytes(random_photo(7), "GIF"), "unsupported_format"),
        (image_bytes(random_photo(7), "TIFF"), "unsupported_format"),
        (image_bytes(random_photo(8), "JPEG")[:400], "truncated"),
        (image_bytes(random_photo(8), "PNG")[:200], "truncated"),
        (image_bytes(random_photo(9, size=(10, 10)), "PNG"), "too_small"),
        (bomb_png(20000, 20000), "too_large"),
    ],
)
def test_bad_files_are_refused_with_a_reason(data, reason):
    with pytest.raises(ImageRejected) as info:
        decode_image(data)
    assert info.value.reason == reason


def test_byte_cap_is_checked_before_parsing():
    limits = DecodeLimits(max_bytes=100)
    with pytest.raises(ImageRejected, match="too_large"):
        decode_image(image_bytes(random_photo(10), "PNG"), limits)


def test_letterbox_keeps_aspect_and_pads():
    wide = np.zeros((20, 80, 3), np.uint8)
    boxed = letterbox(wide, 40, pad_value=255)
    assert boxed.shape == (40, 40, 3)
    assert boxed[0, 20].tolist() == [255, 255, 255]  # padding above
    assert boxed[20, 20].tolist() == [0, 0, 0]  # the image in the middle rows


def test_perceptual_hash_finds_near_copies_only():
    base = random_photo(11)
    brighter = np.clip(base.astype(int) + 6, 0, 255).astype(np.uint8)
    other = random_photo(12)
    hashes = np.array(
        [perceptual_hash(base), perceptual_hash(brighter), perceptual_hash(other)], np.uint64
    )
    pairs = hamming_pairs(hashes, 4).tolist()
    assert pairs == [[0, 1]]


UNALIGNED = Foreground(window=0.33, shade_weight=1.0, floor=0.0, align=False, radius=0.3)


def test_foreground_kernel_is_odd_and_scales_with_the_image():
    assert foreground_kernel(64, 0.33) == 21
    assert foreground_kernel(128, 0.33) % 2 == 1 and foreground_kernel(128, 0.33) > 21
    assert foreground_kernel(8, 0.1) == 3


@pytest.mark.parametrize(
    "block, message",
    [
        ({"window": 0, "shade_weight": 0.5, "floor": 0.5, "align": True, "radius": 0.3}, "window"),
        (
            {"window": 0.3, "shade_weight": 1.5, "floor": 0.5, "align": True, "radius": 0.3},
            "shade_weight",
        ),
        ({"window": 0.3, "shade_weight": 0.5, "floor": 1.0, "align": True, "radius": 0.3}, "floor"),
        (
            {"window": 0.3, "shade_weight": 0.5, "floor": 0.5, "align": True, "radius": 0.6},
            "radius",
        ),
        (
            {"window": 0.3, "floor": 0.5, "align": True, "radius": 0.3},
            "must set window, shade_weight, floor, align and radius",
        ),
        (None, "must set"),
    ],
)
def test_foreground_settings_refuse_bad_config(block, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing.from_config({"image_size": 64, "foreground": block})


def _ring(
    size: int,
    centre: tuple[float, float],
    angle: float,
    scale: float,
    backdrop: tuple[int, int, int],
) -> np.ndarray:
    """A bright tilted ellipse with a knob on top (an upright 'ring'), posed by `angle`, `scale` and
    `centre`."""
    layer = np.zeros((size, size), np.uint8)
    c = size / 2
    cv2.ellipse(
        layer,
        (int(c), int(c)),
        (int(size * 0.22), int(size * 0.12)),
        0,
        0,
        360,
        255,
        max(1, size // 32),
    )
    cv2.circle(layer, (int(c), int(c - size * 0.14)), max(2, size // 20), 255, -1)
    matrix = cv2.getRotationMatrix2D((c, c), angle, scale)
    matrix[:, 2] += (centre[0] - c, centre[1] - c)
    mask = cv2.warpAffine(layer, matrix, (size, size)).astype(np.float32)[..., None] / 255
    image = np.empty((size, size, 3), np.float32)
    image[:] = backdrop
    return (image * (1 - mask) + 255 * mask).astype(np.uint8)


def test_foreground_map_ignores_the_backdrop_colour():
    maps = []
    for backdrop in ((250, 250, 250), (30, 90, 200), (120, 40, 10)):
        image = np.empty((32, 32, 3), np.uint8)
        image[:] = backdrop
        image[8:12, 4:28] = (255 - np.array(backdrop)).astype(
            np.uint8
        )  # a bar that stands out from each backdrop
        maps.append(foreground_map(image, UNALIGNED))
    for found in maps:
        assert found.dtype == np.uint8 and found.shape == (32, 32)
        assert found[8:12, 4:28].min() == 255 and found[20:, :].max() == 0
    assert foreground_map(np.full((16, 16, 3), 77, np.uint8), UNALIGNED).max() == 0
    stacked = foreground_maps(
        np.stack([np.full((16, 16, 3), 9, np.uint8)] * 3), np.array([2, 0]), UNALIGNED
    )
    assert stacked.shape == (2, 16, 16, 1)


def test_foreground_floor_removes_backdrop_texture_and_keeps_the_object():
    rng = np.random.default_rng(0)
    mottled = 120 * (
        1
        + 0.15
        * cv2.resize(
            rng.normal(0, 1, (9, 9)).astype(np.float32), (64, 64), interpolation=cv2.INTER_CUBIC
        )
    )
    image = np.repeat(np.clip(mottled, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    image[30:34, 8:56] = 255
    backdrop = np.ones((64, 64), bool)
    backdrop[26:38, 4:60] = False
    textured = foreground_map(image, UNALIGNED)
    floored = foreground_map(
        image, Foreground(window=0.33, shade_weight=1.0, floor=0.75, align=False, radius=0.3)
    )
    assert floored[30:34, 8:56].mean() > 200
    assert floored[backdrop].mean() < textured[backdrop].mean() / 3


def _mottled(base: tuple[int, int, int], seed: int) -> np.ndarray:
    """A 64 px backdrop of one colour, brightened and darkened in smooth blotches (like a mottled
    cloth)."""
    blotches = cv2.resize(
        np.random.default_rng(seed).normal(0, 1, (9, 9)).astype(np.float32),
        (64, 64),
        interpolation=cv2.INTER_CUBIC,
    )
    return np.clip(np.array(base, np.float32) * (1 + 0.2 * blotches[..., None]), 0, 255)


def test_shade_weight_quiets_mottling_but_not_a_coloured_object():
    image = _mottled((60, 120, 200), 1)
    image[30:33, 8:56] = (55, 175, 225)  # a thin gold bar (BGR), a colour change from the backdrop
    image = image.astype(np.uint8)
    bar, backdrop = np.zeros((64, 64), bool), np.ones((64, 64), bool)
    bar[30:33, 8:56] = True
    backdrop[26:37, 4:60] = False
    contrast = {}
    for weight in (1.0, 0.25):
        fmap = foreground_map(
            image, Foreground(window=0.33, shade_weight=weight, floor=0.0, align=False, radius=0.3)
        ).astype(np.float32)
        contrast[weight] = fmap[bar].mean() / max(fmap[backdrop].mean(), 1e-6)
    assert contrast[0.25] > 2 * contrast[1.0]


def test_shade_weight_leaves_grey_photos_alone():
    image = np.repeat(_mottled((128, 128, 128), 2)[..., :1], 3, axis=2)
    image[30:34, 8:56] = 230
    image = image.astype(np.uint8)
    maps = [
        foreground_map(
            image, Foreground(window=0.33, shade_weight=w, floor=0.5, align=False, radius=0.3)
        ).astype(int)
        for w in (1.0, 0.25)
    ]
    assert maps[0][30:34, 8:56].mean() > 200
    assert np.abs(maps[0] - maps[1]).max() <= 1


def test_aligned_foreground_maps_do_not_depend_on_pose():
    aligned = Foreground(window=0.33, shade_weight=0.25, floor=0.75, align=True, radius=0.3)
    upright = foreground_map(_ring(64, (32, 32), 0, 1.0, (40, 90, 160)), aligned).astype(np.float32)
    unaligned_gaps = []
    for centre, angle, scale, backdrop in (
        ((24, 38), 30, 0.8, (200, 200, 190)),
        ((40, 28), -25, 1.15, (10, 60, 20)),
    ):
        posed = _ring(64, centre, angle, scale, backdrop)
        unaligned_gaps.append(
            np.abs(foreground_map(posed, UNALIGNED).astype(np.float32) - upright).mean()
        )
        gap = np.abs(foreground_map(posed, aligned).astype(np.float32) - upright).mean()
        assert gap < unaligned_gaps[-1] / 3
        assert gap < 12
