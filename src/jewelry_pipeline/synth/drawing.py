"""Procedural photo-like jewelry: metal strokes, gems, pearls, backgrounds and lighting.
Drawn with OpenCV, in BGR."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Color = tuple[int, int, int]

# BGR base tones; every category draws from the same palettes, so colour alone never gives it away.
METALS: dict[str, Color] = {
    "gold": (55, 175, 225),
    "silver": (196, 196, 192),
    "rose": (135, 150, 215),
}
STONES: list[Color] = [
    (40, 30, 200),  # ruby
    (180, 80, 20),  # sapphire
    (70, 160, 30),  # emerald
    (235, 235, 240),  # diamond
    (150, 50, 130),  # amethyst
    (170, 120, 245),  # pink
    (40, 40, 40),  # onyx
]
PEARLS: list[Color] = [(235, 240, 245), (200, 225, 240), (190, 190, 200), (225, 205, 230)]


def _shade(color: Color, factor: float) -> Color:
    """Lighten (factor > 1) or darken (factor < 1) a colour."""
    return tuple(
        int(np.clip(c * factor + (255 * (factor - 1) * 0.4 if factor > 1 else 0), 0, 255))
        for c in color
    )


class Layer:
    """An object layer: colour plus coverage mask, drawn in local coordinates then placed by
    affine."""

    def __init__(self, size: int):
        self.size = size
        self.color = np.zeros((size, size, 3), np.uint8)
        self.mask = np.zeros((size, size), np.uint8)

    def draw(self, fn: Callable[[np.ndarray, Color | int], None], color: Color) -> None:
        """Apply one drawing call to the colour image and the mask."""
        fn(self.color, color)
        fn(self.mask, 255)


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * 16)), int(round(y * 16))


def _len(v: float) -> int:
    return max(1, int(round(v * 16)))


def metal_ellipse(
    layer: Layer, center, axes, angle, start, end, metal: Color, thick: float
) -> None:
    """An elliptic arc drawn as polished metal: dark rim, body, offset highlight; thick < 0 fills
    it."""
    cx, cy = center
    if thick < 0:
        axes_px = (_len(axes[0]), _len(axes[1]))
        layer.draw(
            lambda img, col: cv2.ellipse(
                img, _pt(cx, cy), axes_px, angle, start, end, col, -1, cv2.LINE_AA, 4
            ),
            metal,
        )
        layer.draw(
            lambda img, col: cv2.ellipse(
                img, _pt(cx, cy), axes_px, angle, start, end, col, 1, cv2.LINE_AA, 4
            ),
            _shade(metal, 0.45),
        )
        highlight = (_len(axes[0] * 0.7), _len(axes[1] * 0.6))
        layer.draw(
            lambda img, col: cv2.ellipse(
                img, _pt(cx, cy), highlight, angle, 200, 250, col, 1, cv2.LINE_AA, 4
            ),
            _shade(metal, 1.6),
        )
        return
    for factor, width, off in ((0.45, 1.0, 0.0), (1.0, 0.7, 0.0), (1.6, 0.25, -0.18)):
        t = max(1, int(round(thick * width)))
        c = (cx + off * thick, cy + off * thick)
        layer.draw(
            lambda img, col, c=c, t=t: cv2.ellipse(
                img,
                _pt(*c),
                (_len(axes[0]), _len(axes[1])),
                angle,
                start,
                end,
                col,
                t,
                cv2.LINE_AA,
                4,
            ),
            _shade(metal, factor),
        )


def metal_polyline(
    layer: Layer, points: np.ndarray, metal: Color, thick: float, closed: bool = False
) -> None:
    """A polyline drawn as metal wire."""
    for factor, width, off in ((0.45, 1.0, 0.0), (1.0, 0.65, 0.0), (1.6, 0.25, -0.15)):
        t = max(1, int(round(thick * width)))
        pts = ((points + off * thick) * 16).round().astype(np.int32).reshape(-1, 1, 2)
        layer.draw(
            lambda img, col, p=pts, t=t: cv2.polylines(img, [p], closed, col, t, cv2.LINE_AA, 4),
            _shade(metal, factor),
        )


def sphere(layer: Layer, center, radius: float, color: Color) -> None:
    """A shaded bead or pearl: body, darker lower rim, specular dot."""
    cx, cy = center
    layer.draw(
        lambda img, col: cv2.circle(img, _pt(cx, cy), _len(radius), col, -1, cv2.LINE_AA, 4),
        _shade(color, 0.6),
    )
    layer.draw(
        lambda img, col: cv2.circle(
            img,
            _pt(cx - radius * 0.12, cy - radius * 0.12),
            _len(radius * 0.82),
            col,
            -1,
            cv2.LINE_AA,
            4,
        ),
        color,
    )
    layer.draw(
        lambda img, col: cv2.circle(
            img,
            _pt(cx - radius * 0.35, cy - radius * 0.35),
            _len(max(radius * 0.25, 0.6)),
            col,
            -1,
            cv2.LINE_AA,
            4,
        ),
        _shade(color, 1.5),
    )


def gem(layer: Layer, center, radius: float, stone: Color, metal: Color, sides: int = 8) -> None:
    """A faceted stone in a metal bezel, with a star of facets and a highlight."""
    cx, cy = center
    layer.draw(
        lambda img, col: cv2.circle(img, _pt(cx, cy), _len(radius * 1.18), col, -1, cv2.LINE_AA, 4),
        _shade(metal, 0.8),
    )
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False) + np.pi / sides
    poly = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
    layer.draw(
        lambda img, col: cv2.fillPoly(img, [(poly * 16).astype(np.int32)], col, cv2.LINE_AA, 4),
        stone,
    )
    inner = np.stack([cx + radius * 0.5 * np.cos(angles), cy + radius * 0.5 * np.sin(angles)], 1)
    layer.draw(
        lambda img, col: cv2.fillPoly(img, [(inner * 16).astype(np.int32)], col, cv2.LINE_AA, 4),
        _shade(stone, 1.3),
    )
    for (x0, y0), (x1, y1) in zip(inner, poly):
        layer.draw(
            lambda img, col, a=(x0, y0), b=(x1, y1): cv2.line(
                img, _pt(*a), _pt(*b), col, 1, cv2.LINE_AA, 4
            ),
            _shade(stone, 0.75),
        )
    layer.draw(
        lambda img, col: cv2.circle(
            img,
            _pt(cx - radius * 0.3, cy - radius * 0.35),
            _len(max(radius * 0.18, 0.6)),
            col,
            -1,
            cv2.LINE_AA,
            4,
        ),
        (255, 255, 255),
    )


def curve_points(kind: str, size: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """Points along a necklace U (open) or a bracelet loop (closed), in layer coordinates."""
    c = size / 2
    if kind == "open":
        half_w = size * rng.uniform(0.33, 0.42)
        top, bottom = size * rng.uniform(0.08, 0.2), size * rng.uniform(0.72, 0.86)
        t = np.linspace(-1, 1, n)
        x = c + half_w * np.sin(t * np.pi / 2 * rng.uniform(0.9, 1.0))
        y = top + (bottom - top) * (1 - np.abs(t) ** rng.uniform(1.6, 2.4))
        return np.stack([x, y], 1)
    radius = size * rng.uniform(0.3, 0.38)
    tilt = rng.uniform(0.45, 1.0)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([c + radius * np.cos(t), c + radius * tilt * np.sin(t)], 1)


def chain_links(layer: Layer, points: np.ndarray, metal: Color, link: float, closed: bool) -> None:
    """Alternating oval links placed along a path."""
    count = len(points) if closed else len(points) - 1
    for i in range(count):
        a, b = points[i], points[(i + 1) % len(points)]
        mid = (a + b) / 2
        angle = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
        minor = link * (0.55 if i % 2 == 0 else 0.22)
        metal_ellipse(layer, mid, (link, minor), angle, 0, 360, metal, max(1.0, link * 0.45))


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A photo backdrop: plain, gradient, textured cloth or mottled noise."""
    kind = rng.choice(["plain", "gradient", "cloth", "noise"])
    base = rng.integers(20, 250, 3).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "plain":
        img = np.broadcast_to(base, (size, size, 3)).copy()
    elif kind == "gradient":
        other = rng.integers(20, 250, 3).astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        ramp = np.clip((xx - 0.5) * np.cos(theta) + (yy - 0.5) * np.sin(theta) + 0.5, 0, 1)[
            ..., None
        ]
        img = base * (1 - ramp) + other * ramp
    elif kind == "cloth":
        freq = rng.uniform(25, 60)
        theta = rng.uniform(0, np.pi)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        weave = np.sin(u * freq * np.pi) * np.sin(v * freq * np.pi)
        folds = np.sin((u * rng.uniform(2, 5) + rng.uniform(0, 6)) * np.pi) * 0.5
        img = base * (1 + 0.12 * weave[..., None] + 0.15 * folds[..., None])
    else:
        noise = rng.normal(0, 1, (size // 8 + 1, size // 8 + 1, 1)).astype(np.float32)
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
        img = base * (1 + 0.18 * noise)
    return np.clip(img, 0, 255).astype(np.float32)


def place(layer: Layer, scene: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Rotate, scale and shift the object layer onto the scene with a soft drop shadow."""
    size = scene.shape[0]
    angle = rng.uniform(-35, 35)
    shift = rng.uniform(-0.14, 0.14, 2) * size
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += shift
    color = cv2.warpAffine(layer.color, matrix, (size, size), flags=cv2.INTER_LINEAR)
    mask = (
        cv2.warpAffine(layer.mask, matrix, (size, size), flags=cv2.INTER_LINEAR).astype(np.float32)
        / 255
    )
    offset = rng.uniform(0.01, 0.04, 2) * size
    shadow = cv2.warpAffine(mask, np.float32([[1, 0, offset[0]], [0, 1, offset[1]]]), (size, size))
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(0.8, size * 0.02))
    scene = scene * (1 - rng.uniform(0.25, 0.5) * shadow[..., None])
    return scene * (1 - mask[..., None]) + color.astype(np.float32) * mask[..., None]


def lighting(scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Directional light fall-off, exposure, white balance, sensor noise and slight blur."""
    size = scene.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    theta = rng.uniform(0, 2 * np.pi)
    falloff = 1 + rng.uniform(0, 0.45) * (xx * np.cos(theta) + yy * np.sin(theta))
    vignette = 1 - rng.uniform(0, 0.35) * (xx**2 + yy**2) * 2
    balance = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    scene = scene * (falloff * vignette)[..., None] * balance * rng.uniform(0.75, 1.2)
    scene = scene + rng.normal(0, rng.uniform(0, 7), scene.shape).astype(np.float32)
    sigma = rng.uniform(0, 0.9)
    if sigma > 0.3:
        scene = cv2.GaussianBlur(scene, (0, 0), sigma)
    return np.clip(scene, 0, 255).astype(np.uint8)
