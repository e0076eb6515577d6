"""Articulated person figures: a pose plus an appearance become a list of filled shapes.

Geometry is built in *body units* (top of the head at y = 0, soles at about y = 1, x to the right),
for a right-facing or frontal figure, mirrored for left-facing ones, and scaled to pixels with the foot
point at the origin. The shapes' union gives the tight box an annotator would draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from .identities import Appearance, Color

FACINGS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class Pose:
    """Pose of one figure in one scene."""

    facing: str  # front | back | left | right
    stride: float  # half-angle between the legs (radians); ~0 when standing
    arm_swing: float  # arm swing angle in side view (radians)
    arm_spread: float  # outward arm angle in frontal views (radians)
    elbow_bend: float  # forearm bend (radians)
    lean: float  # forward lean of the upper body (body units of x per unit y)


@dataclass
class Shape:
    """One filled primitive; ``pts`` is (k, 2) for a polygon or (2, 2) corners for an ellipse."""

    kind: str  # poly | ellipse
    pts: np.ndarray
    fill: Color


@dataclass
class Figure:
    """A drawn person relative to its foot point, in pixels."""

    shapes: list[Shape]
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 relative to the foot point


def random_pose(rng: np.random.Generator) -> Pose:
    """Walking (60 %) or standing, any of four facings, varied arms."""
    walking = rng.random() < 0.6
    return Pose(
        facing=FACINGS[int(rng.choice(4, p=[0.3, 0.25, 0.225, 0.225]))],
        stride=float(rng.uniform(0.22, 0.42) if walking else rng.uniform(0.0, 0.07)),
        arm_swing=float(rng.uniform(0.2, 0.5) if walking else rng.uniform(0.0, 0.12)),
        arm_spread=float(rng.uniform(0.04, 0.3)),
        elbow_bend=float(rng.choice([0.0, rng.uniform(0.1, 0.4), rng.uniform(0.8, 1.5)], p=[0.4, 0.45, 0.15])),
        lean=float(rng.uniform(0.0, 0.05) if walking else 0.0),
    )


def _shade(color: Color, factor: float) -> Color:
    return (int(color[0] * factor), int(color[1] * factor), int(color[2] * factor))


def _limb(p0: np.ndarray, p1: np.ndarray, w0: float, w1: float) -> np.ndarray:
    """Quad around the segment p0→p1 with widths w0 at p0 and w1 at p1."""
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (float(np.hypot(*d)) + 1e-9)
    return np.stack([p0 + n * w0 / 2, p1 + n * w1 / 2, p1 - n * w1 / 2, p0 - n * w0 / 2])


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return np.array([[cx - rx, cy - ry], [cx + rx, cy + ry]])


def _down(p: np.ndarray, angle: float, length: float) -> np.ndarray:
    """Point ``length`` away from ``p`` at ``angle`` from straight down (positive = towards +x)."""
    return p + length * np.array([math.sin(angle), math.cos(angle)])


def _pattern_quads(quad: np.ndarray, rows: int, cols: int) -> list[tuple[int, int, np.ndarray]]:
    """Split quad (tl, tr, br, bl) into rows×cols cells by bilinear interpolation."""
    tl, tr, br, bl = quad
    u = np.linspace(0.0, 1.0, cols + 1)
    v = np.linspace(0.0, 1.0, rows + 1)
    top = tl[None] + (tr - tl)[None] * u[:, None]
    bot = bl[None] + (br - bl)[None] * u[:, None]
    grid = top[None] + (bot - top)[None] * v[:, None, None]  # (rows+1, cols+1, 2)
    cells = []
    for i in range(rows):
        for j in range(cols):
            cells.append((i, j, np.stack([grid[i, j], grid[i, j + 1], grid[i + 1, j + 1], grid[i + 1, j]])))
    return cells


def _textured(quad: np.ndarray, app: Appearance, px_height: float, shade: float = 1.0) -> list[Shape]:
    """The torso quad filled with the identity's top pattern (stripes / checks / plain)."""
    base, second = _shade(app.top_color, shade), _shade(app.top_color2, shade)
    if app.top_pattern == "plain" or px_height < 8:
        return [Shape("poly", quad, base)]
    rows = int(np.clip(px_height / 5.0, 3, 10))
    cols = 1 if app.top_pattern == "stripes" else max(2, rows * 2 // 3)
    shapes = [Shape("poly", quad, base)]
    for i, j, cell in _pattern_quads(quad, rows, cols):
        if (i + (j if cols > 1 else 0)) % 2:
            shapes.append(Shape("poly", cell, second))
    return shapes


class _Builder:
    """Collects the shapes of one figure in body units (right-facing or frontal)."""

    def __init__(self, app: Appearance, pose: Pose, px_height: float) -> None:
        self.app, self.pose, self.px = app, pose, px_height
        self.side = pose.facing in ("left", "right")
        self.shapes: list[Shape] = []
        ws = app.width_scale
        self.head_r = 0.064
        self.neck_y, self.sh_y = 0.135, 0.17
        self.hip_y = 1.0 - app.leg_ratio
        self.sw = (0.05 if self.side else 0.105) * ws
        self.hw = (0.058 if self.side else 0.08) * ws
        self.leg_len = app.leg_ratio - 0.02
        self.lean = pose.lean

    def poly(self, pts: np.ndarray, fill: Color) -> None:
        self.shapes.append(Shape("poly", pts, fill))

    def ellipse(self, box: np.ndarray, fill: Color) -> None:
        self.shapes.append(Shape("ellipse", box, fill))

    # -- parts -------------------------------------------------------------------------------------
    def leg(self, hip_x: float, thigh_a: float, shin_a: float, shade: float) -> None:
        app = self.app
        hip = np.array([hip_x, self.hip_y + 0.02])
        knee = _down(hip, thigh_a, self.leg_len / 2)
        ankle = _down(knee, shin_a, self.leg_len / 2)
        w = 0.068 * app.width_scale
        upper = app.skin if app.bottom_kind == "skirt" else app.bottom_color
        lower = app.bottom_color if app.bottom_kind == "trousers" else app.skin
        self.poly(_limb(hip, knee, w, w * 0.85), _shade(upper, shade))
        self.ellipse(_ellipse(knee[0], knee[1], w * 0.43, w * 0.43), _shade(lower, shade))
        self.poly(_limb(knee, ankle, w * 0.8, w * 0.62), _shade(lower, shade))
        toe = 0.045 if self.side else 0.0
        self.ellipse(
            _ellipse(ankle[0] + toe, ankle[1] + 0.008, 0.042 + toe * 0.4, 0.018),
            _shade(app.shoe_color, shade),
        )

    def arm(self, sh_x: float, upper_a: float, bend: float, shade: float) -> None:
        app = self.app
        sh = np.array([sh_x + self.lean * 0.5, self.sh_y + 0.015])
        elbow = _down(sh, upper_a, 0.17)
        wrist = _down(elbow, upper_a + bend, 0.155)
        w = 0.05 * app.width_scale
        sleeve = _shade(app.top_color, shade)
        fore = sleeve if app.sleeves == "long" else _shade(app.skin, shade)
        self.poly(_limb(sh, elbow, w, w * 0.85), sleeve)
        self.ellipse(_ellipse(elbow[0], elbow[1], w * 0.42, w * 0.42), fore)
        self.poly(_limb(elbow, wrist, w * 0.8, w * 0.65), fore)
        self.ellipse(_ellipse(wrist[0], wrist[1], 0.022, 0.025), _shade(app.skin, shade))

    def torso(self) -> None:
        lx = self.lean
        quad = np.array(
            [
                [-self.sw + lx, self.sh_y],
                [self.sw + lx, self.sh_y],
                [self.hw, self.hip_y + 0.03],
                [-self.hw, self.hip_y + 0.03],
            ]
        )
        if self.side:  # chest a little forward
            quad[1, 0] += 0.015
        self.shapes.extend(_textured(quad, self.app, (self.hip_y - self.sh_y) * self.px))

    def pelvis(self) -> None:
        app = self.app
        y0, y1 = self.hip_y, self.hip_y + 0.07
        self.poly(
            np.array([[-self.hw, y0], [self.hw, y0], [self.hw * 0.95, y1], [-self.hw * 0.95, y1]]),
            app.bottom_color,
        )
        if app.bottom_kind == "skirt":
            flare = self.hw * 1.45
            y2 = self.hip_y + self.leg_len * 0.5
            self.poly(np.array([[-self.hw, y0], [self.hw, y0], [flare, y2], [-flare, y2]]), app.bottom_color)

    def head(self, show_face: bool, face_dx: float) -> None:
        app, r = self.app, self.head_r
        cx, cy = self.lean, self.head_r + 0.005
        self.poly(
            _limb(np.array([cx * 0.8, self.neck_y - 0.01]), np.array([cx * 0.6, self.sh_y + 0.01]), 0.045, 0.05),
            app.skin,
        )
        self.ellipse(_ellipse(cx, cy, r * 0.92, r), app.hair)
        if show_face:
            self.ellipse(_ellipse(cx + face_dx, cy + r * 0.18, r * 0.78, r * 0.8), app.skin)
        if app.hat:
            self.ellipse(_ellipse(cx, cy - r * 0.55, r * 1.35, r * 0.22), app.hat_color)
            self.poly(
                np.array(
                    [
                        [cx - r * 0.85, cy - r * 0.5],
                        [cx + r * 0.85, cy - r * 0.5],
                        [cx + r * 0.7, cy - r * 1.12],
                        [cx - r * 0.7, cy - r * 1.12],
                    ]
                ),
                app.hat_color,
            )

    def long_hair(self) -> None:
        r, cx = self.head_r, self.lean
        self.poly(
            np.array(
                [
                    [cx - r * 0.95, r],
                    [cx + r * 0.95, r],
                    [cx + r, self.sh_y + 0.08],
                    [cx - r, self.sh_y + 0.08],
                ]
            ),
            self.app.hair,
        )

    def backpack_body(self, x0: float, x1: float) -> None:
        self.poly(
            np.array(
                [
                    [x0, self.sh_y + 0.01],
                    [x1, self.sh_y + 0.01],
                    [x1, self.sh_y + 0.26],
                    [x0, self.sh_y + 0.26],
                ]
            ),
            self.app.accessory_color,
        )

    def straps(self) -> None:
        c = _shade(self.app.accessory_color, 0.8)
        for s in (-1, 1):
            top = np.array([s * self.sw * 0.6 + self.lean, self.sh_y])
            self.poly(_limb(top, top + np.array([s * 0.01, 0.16]), 0.022, 0.022), c)

    def bag(self, x: float) -> None:
        c = self.app.accessory_color
        strap_top = np.array([-x * 0.5 + self.lean, self.sh_y + 0.005])
        bag_top = np.array([x, self.hip_y - 0.04])
        self.poly(_limb(strap_top, bag_top, 0.016, 0.016), _shade(c, 0.75))
        self.poly(
            np.array(
                [
                    [x - 0.05, self.hip_y - 0.05],
                    [x + 0.05, self.hip_y - 0.05],
                    [x + 0.055, self.hip_y + 0.08],
                    [x - 0.055, self.hip_y + 0.08],
                ]
            ),
            c,
        )

    # -- assembly ----------------------------------------------------------------------------------
    def frontal(self, back: bool) -> None:
        p, app = self.pose, self.app
        spread = 0.03 + p.stride * 0.18
        if not back and app.long_hair:
            self.long_hair()
        for s in (-1, 1):
            self.leg(s * self.hw * 0.5, s * spread, s * spread * 0.6, 1.0)
        self.pelvis()
        self.torso()
        if app.accessory == "backpack" and not back:
            self.straps()
        bend_sign = 1.0 if back else -1.0
        for s in (-1, 1):
            bend = p.elbow_bend if s > 0 else p.elbow_bend * 0.3
            self.arm(s * self.sw * 0.95, s * p.arm_spread, -s * bend * bend_sign * 0.6, 1.0)
        self.head(show_face=not back, face_dx=0.0)
        if back and app.long_hair:
            self.long_hair()
        if app.accessory == "backpack" and back:
            self.backpack_body(-self.sw * 0.75, self.sw * 0.75)
        if app.accessory == "bag":
            self.bag(self.hw + 0.045)

    def profile(self) -> None:
        p, app = self.pose, self.app
        self.arm(0.0, -p.arm_swing, p.elbow_bend, 0.78)  # far arm
        self.leg(0.0, p.stride, p.stride * 0.5, 0.8)  # far leg (forward)
        if app.accessory == "backpack":
            self.backpack_body(-self.sw - 0.075, -self.sw + 0.01)
        if app.long_hair:
            self.long_hair()
        self.pelvis()
        self.torso()
        self.leg(0.0, -p.stride * 0.9, -p.stride * 0.9 - 0.25 * (p.stride > 0.1), 1.0)  # near leg
        if app.accessory == "bag":
            self.bag(0.01)
        self.arm(0.0, p.arm_swing, p.elbow_bend, 1.0)  # near arm
        self.head(show_face=True, face_dx=0.028)


def build_figure(app: Appearance, pose: Pose, height_px: float) -> Figure:
    """Shapes of one person of nominal height ``height_px`` (times their stature), foot point at (0, 0)."""
    height_px *= app.height_scale
    b = _Builder(app, pose, height_px)
    if b.side:
        b.profile()
    else:
        b.frontal(back=pose.facing == "back")
    mirror = -1.0 if pose.facing == "left" else 1.0
    lo = np.array([np.inf, np.inf])
    hi = -lo
    for shape in b.shapes:
        pts = shape.pts * height_px
        pts[:, 0] *= mirror
        pts[:, 1] -= height_px  # soles at about y = 0
        if shape.kind == "ellipse":
            pts = np.stack([pts.min(axis=0), pts.max(axis=0)])
        shape.pts = pts
        lo = np.minimum(lo, pts.min(axis=0))
        hi = np.maximum(hi, pts.max(axis=0))
    return Figure(b.shapes, (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])))


def draw_figure(draw: ImageDraw.ImageDraw, fig: Figure, dx: float, dy: float) -> None:
    """Paint ``fig`` with its foot point at (dx, dy)."""
    offset = np.array([dx, dy])
    for shape in fig.shapes:
        pts = shape.pts + offset
        if shape.kind == "poly":
            draw.polygon(pts.ravel().tolist(), fill=shape.fill)
        else:
            draw.ellipse(pts.ravel().tolist(), fill=shape.fill)
