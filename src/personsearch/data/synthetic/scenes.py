"""Scene composition: background with clutter and unannotated person-like distractors, people placed
with perspective, foreground occluders, and per-camera colour cast, brightness, noise and blur."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .figures import Figure, build_figure, draw_figure, random_pose
from .identities import CLOTHING, Appearance, Color

MIN_HEIGHT, MAX_HEIGHT = 0.1, 0.46  # nominal person height range as a fraction of image height


@dataclass(frozen=True)
class CameraStyle:
    """How one camera renders a scene: palette of its location and its imaging defects."""

    gain: tuple[float, float, float]  # per-channel colour cast
    brightness: float
    contrast: float
    noise: float  # std of pixel noise (0..255 scale)
    blur: float  # Gaussian blur radius in pixels
    jpeg_quality: int
    sky: Color
    wall: Color
    ground: Color
    horizon: float  # horizon height as a fraction of the image height


@dataclass(frozen=True)
class PersonRequest:
    """A person to place; ``edge`` = "left"/"top" pushes the box past that image border."""

    appearance: Appearance
    edge: str | None = None


@dataclass(frozen=True)
class Placed:
    """Where a requested person ended up: integer box x, y, w, h (may start < 0 for edge requests)."""

    x: int
    y: int
    w: int
    h: int


def _color(rng: np.random.Generator, lo: int, hi: int) -> Color:
    c = rng.integers(lo, hi, 3)
    return (int(c[0]), int(c[1]), int(c[2]))


def make_camera_style(rng: np.random.Generator) -> CameraStyle:
    """A random camera: colour cast up to ±15 %, brightness ±30, noise, mild blur, JPEG quality."""
    gain = 1.0 + rng.uniform(-0.15, 0.15, 3)
    return CameraStyle(
        gain=(float(gain[0]), float(gain[1]), float(gain[2])),
        brightness=float(rng.uniform(-30, 30)),
        contrast=float(rng.uniform(0.75, 1.1)),
        noise=float(rng.uniform(1.0, 7.0)),
        blur=float(rng.choice([0.0, 0.0, rng.uniform(0.4, 1.1)])),
        jpeg_quality=int(rng.integers(72, 93)),
        sky=_color(rng, 120, 235),
        wall=_color(rng, 70, 200),
        ground=_color(rng, 60, 170),
        horizon=float(rng.uniform(0.28, 0.45)),
    )


def nominal_height(fy: float, horizon_px: float, height: int) -> float:
    """Perspective: nominal person height (px) for a foot at row ``fy``."""
    t = np.clip((fy - horizon_px) / max(height - horizon_px, 1.0), 0.0, 1.0)
    return height * (MIN_HEIGHT + (MAX_HEIGHT - MIN_HEIGHT) * float(t))


# -- background --------------------------------------------------------------------------------------


def _gradient(rng: np.random.Generator, w: int, h: int, style: CameraStyle) -> np.ndarray:
    """Wall/sky above the horizon, ground below, with low-frequency texture (vectorised)."""
    hz = int(style.horizon * h)
    rows = np.empty((h, 3), dtype=np.float32)
    t = np.linspace(0.0, 1.0, max(hz, 1), dtype=np.float32)[:, None]
    rows[:hz] = (1 - t) * np.asarray(style.sky) + t * np.asarray(style.wall)
    t = np.linspace(0.0, 1.0, max(h - hz, 1), dtype=np.float32)[:, None]
    rows[hz:] = (0.8 + 0.3 * t) * np.asarray(style.ground)
    coarse = rng.normal(0.0, 14.0, (max(h // 24, 2), max(w // 24, 2))).astype(np.float32)
    tex = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    arr = rows[:, None, :] + tex[:, :, None]
    return np.clip(arr, 0, 255).astype(np.uint8)


def _buildings(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, hz: int) -> None:
    x = int(rng.integers(-40, 10))
    while x < w:
        bw = int(rng.integers(w // 8, w // 3))
        top = int(rng.integers(0, max(hz - 10, 1)))
        col = _color(rng, 60, 210)
        draw.rectangle([x, top, x + bw, hz], fill=col)
        win = _color(rng, 30, 120) if rng.random() < 0.5 else _color(rng, 170, 250)
        step = int(rng.integers(10, 20))
        for wx in range(x + 4, x + bw - 6, step):
            for wy in range(top + 4, hz - 8, step + 2):
                draw.rectangle([wx, wy, wx + step // 2, wy + step // 2 + 1], fill=win)
        x += bw + int(rng.integers(0, 30))


def _tree(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, fy: float, s: float) -> None:
    draw.rectangle([x - s * 0.05, fy - s * 0.7, x + s * 0.05, fy], fill=_color(rng, 60, 110))
    green = (int(rng.integers(20, 70)), int(rng.integers(90, 160)), int(rng.integers(20, 70)))
    for _ in range(4):
        cx, cy = x + rng.uniform(-0.2, 0.2) * s, fy - s * rng.uniform(0.8, 1.1)
        r = s * rng.uniform(0.2, 0.35)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=green)


def _pole(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, fy: float, s: float) -> None:
    """A post with a round top: person-sized and person-shaped from afar, never annotated."""
    col = _color(rng, 30, 200)
    draw.rectangle([x - s * 0.03, fy - s * 0.9, x + s * 0.03, fy], fill=col)
    r = s * rng.uniform(0.06, 0.1)
    draw.ellipse([x - r, fy - s * 0.9 - 2 * r, x + r, fy - s * 0.9], fill=_color(rng, 150, 255))


def _mannequin(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, fy: float, s: float) -> None:
    """Head and dressed torso on a thin stand, no legs."""
    top = CLOTHING[int(rng.integers(len(CLOTHING)))]
    draw.rectangle([x - s * 0.015, fy - s * 0.5, x + s * 0.015, fy], fill=(60, 60, 60))
    draw.rectangle([x - s * 0.08, fy - s * 0.02, x + s * 0.08, fy], fill=(60, 60, 60))
    draw.polygon(
        [
            x - s * 0.11,
            fy - s * 0.83,
            x + s * 0.11,
            fy - s * 0.83,
            x + s * 0.08,
            fy - s * 0.48,
            x - s * 0.08,
            fy - s * 0.48,
        ],
        fill=top,
    )
    r = s * 0.062
    draw.ellipse([x - r, fy - s * 0.86 - 2 * r, x + r, fy - s * 0.86], fill=_color(rng, 180, 250))


def _sign(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, fy: float, s: float) -> None:
    draw.rectangle([x - s * 0.02, fy - s * 0.8, x + s * 0.02, fy], fill=(90, 90, 95))
    bw, bh = s * rng.uniform(0.2, 0.4), s * rng.uniform(0.15, 0.3)
    draw.rectangle([x - bw, fy - s * 0.8 - bh, x + bw, fy - s * 0.8 + bh * 0.3], fill=_color(rng, 0, 255))


def _bin(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, fy: float, s: float) -> None:
    draw.rectangle([x - s * 0.1, fy - s * 0.28, x + s * 0.1, fy], fill=_color(rng, 20, 140))


_CLUTTER = (_pole, _pole, _mannequin, _sign, _tree, _bin)


def render_background(rng: np.random.Generator, size: tuple[int, int], style: CameraStyle) -> Image.Image:
    """The static part of a scene: gradient, buildings, trees and unannotated distractors."""
    w, h = size
    img = Image.fromarray(_gradient(rng, w, h, style), mode="RGB")
    draw = ImageDraw.Draw(img)
    hz = int(style.horizon * h)
    if rng.random() < 0.75:
        _buildings(draw, rng, w, hz)
    for _ in range(int(rng.integers(2, 4))):  # road / pavement markings
        y = rng.uniform(hz, h)
        draw.line([0, y, w, y + rng.uniform(-20, 20)], fill=_color(rng, 150, 240), width=int(rng.integers(1, 4)))
    n = int(rng.integers(3, 7)) + w * h // 120_000
    for fy in sorted(rng.uniform(hz + 0.02 * h, h, n)):
        s = nominal_height(fy, hz, h) * rng.uniform(0.8, 1.2)
        _CLUTTER[int(rng.integers(len(_CLUTTER)))](draw, rng, rng.uniform(0, w), fy, s)
    return img


# -- people and occluders ----------------------------------------------------------------------------


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _try_place(
    rng: np.random.Generator, req: PersonRequest, size: tuple[int, int], hz: float
) -> tuple[Figure, float, float]:
    w, h = size
    fig = build_figure(req.appearance, random_pose(rng), 1.0)  # unit size to learn the extent
    if req.edge == "top":
        nominal = h * rng.uniform(0.5, 0.6)
        fig = build_figure(req.appearance, random_pose(rng), nominal)
        fy = -fig.bbox[1] - rng.uniform(2, max(3.0, 0.1 * nominal))  # head above the frame
    else:
        fy = hz + 0.03 * h + (h - 2 - hz - 0.03 * h) * float(rng.random() ** 0.8)
        fig = build_figure(req.appearance, random_pose(rng), nominal_height(fy, hz, h) * rng.uniform(0.9, 1.1))
        fy = min(fy, h - 1 - fig.bbox[3])
        fy = max(fy, -fig.bbox[1] + 1)  # the whole person inside the image
    x0, x1 = fig.bbox[0], fig.bbox[2]
    if req.edge == "left":
        cx = -x0 - rng.uniform(2, max(3.0, 0.35 * (x1 - x0)))  # starts left of the frame
    else:
        cx = rng.uniform(-x0 + 1, max(w - 1 - x1, -x0 + 1))
    return fig, float(cx), float(fy)


def _place_all(
    rng: np.random.Generator, people: list[PersonRequest], size: tuple[int, int], hz: float
) -> list[tuple[Figure, float, float]]:
    placed: list[tuple[Figure, float, float]] = []
    boxes: list[tuple[float, ...]] = []
    for req in people:
        best, best_iou = None, math.inf
        for _ in range(30):
            fig, cx, cy = _try_place(rng, req, size, hz)
            box = (fig.bbox[0] + cx, fig.bbox[1] + cy, fig.bbox[2] + cx, fig.bbox[3] + cy)
            worst = max((_iou(box, b) for b in boxes), default=0.0)
            if worst < best_iou:
                best, best_iou = (fig, cx, cy, box), worst
            if worst < 0.15:
                break
        assert best is not None
        placed.append(best[:3])
        boxes.append(best[3])
    return placed


def _occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[float, ...]) -> None:
    """A foreground object covering part of a person: bush, low wall, car front or post."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    kind = int(rng.integers(4))
    top = y1 - bh * rng.uniform(0.25, 0.45)
    if kind == 0:
        green = (int(rng.integers(20, 60)), int(rng.integers(80, 150)), int(rng.integers(20, 60)))
        for _ in range(5):
            cx = rng.uniform(x0 - 0.3 * bw, x1 + 0.3 * bw)
            r = bh * rng.uniform(0.12, 0.2)
            draw.ellipse([cx - r, top - r * 0.3, cx + r, y1 + r], fill=green)
    elif kind == 1:
        draw.rectangle(
            [x0 - bw * rng.uniform(0.5, 2), top, x1 + bw * rng.uniform(0.5, 2), y1 + 3],
            fill=_color(rng, 90, 200),
        )
    elif kind == 2:
        draw.rounded_rectangle(
            [x0 - bw, top, x1 + bw, y1 + bh * 0.2], radius=max(bh * 0.08, 1), fill=_color(rng, 20, 230)
        )
    else:
        side = x0 + bw * (rng.uniform(-0.1, 0.15) if rng.random() < 0.5 else rng.uniform(0.65, 0.9))
        draw.rectangle(
            [side, y0 + bh * rng.uniform(0.1, 0.4), side + bw * rng.uniform(0.25, 0.4), y1 + 2],
            fill=_color(rng, 40, 160),
        )


_NOISE_TILE = 512


def _noise_tile() -> np.ndarray:
    """A fixed unit-variance noise tile; windows of it are the per-image sensor noise (cheap)."""
    if not hasattr(_noise_tile, "tile"):
        tile = np.random.default_rng(12345).standard_normal((_NOISE_TILE, _NOISE_TILE), dtype=np.float32)
        _noise_tile.tile = tile  # type: ignore[attr-defined]
    return _noise_tile.tile  # type: ignore[attr-defined]


def _noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    tile = _noise_tile()
    reps = (h // _NOISE_TILE + 2, w // _NOISE_TILE + 2)
    big = np.tile(tile, reps)
    oy, ox = int(rng.integers(_NOISE_TILE)), int(rng.integers(_NOISE_TILE))
    return np.rint(big[oy : oy + h, ox : ox + w] * sigma).astype(np.int16)


def _apply_camera(rng: np.random.Generator, img: Image.Image, style: CameraStyle) -> Image.Image:
    """Colour cast, contrast and brightness (one lookup table), sensor noise, then optical blur."""
    level = np.arange(256, dtype=np.float32)
    shift = style.brightness + rng.uniform(-8, 8)
    lut = [np.clip(((level - 128.0) * style.contrast + 128.0 + shift) * g, 0, 255) for g in style.gain]
    img = img.point(np.concatenate(lut).astype(np.uint8).tolist())
    w, h = img.size
    arr = np.asarray(img, dtype=np.int16) + _noise(rng, h, w, style.noise)[:, :, None]
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")
    if style.blur > 0:
        out = out.filter(ImageFilter.GaussianBlur(style.blur))
    return out


def compose_scene(
    rng: np.random.Generator,
    background: Image.Image,
    style: CameraStyle,
    people: list[PersonRequest],
    occlusion_rate: float = 0.2,
) -> tuple[Image.Image, list[Placed]]:
    """Draw ``people`` (nearest last) over ``background``; boxes come back in request order."""
    img = background.copy()
    draw = ImageDraw.Draw(img)
    size = img.size
    hz = style.horizon * size[1]
    placed = _place_all(rng, people, size, hz)
    for i in sorted(range(len(placed)), key=lambda k: placed[k][2]):
        fig, cx, cy = placed[i]
        draw_figure(draw, fig, cx, cy)
    for fig, cx, cy in placed:
        if rng.random() < occlusion_rate:
            _occluder(draw, rng, (fig.bbox[0] + cx, fig.bbox[1] + cy, fig.bbox[2] + cx, fig.bbox[3] + cy))
    boxes = []
    for fig, cx, cy in placed:
        x, y = math.floor(fig.bbox[0] + cx), math.floor(fig.bbox[1] + cy)
        x2, y2 = math.ceil(fig.bbox[2] + cx), math.ceil(fig.bbox[3] + cy)
        x2, y2 = min(x2, size[0]), min(y2, size[1])
        boxes.append(Placed(x, y, x2 - x, y2 - y))
    return _apply_camera(rng, img, style), boxes
