"""The identity appearance model: clothing, accessories and build that stay fixed across scenes.

A share of identities are *hard negatives*: copies of another identity of the same split with exactly
one attribute changed, so that re-identification has to look at every attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

Color = tuple[int, int, int]
_T = TypeVar("_T")

# Clothing base colours; identities jitter them a little so two "reds" still differ slightly.
CLOTHING: tuple[Color, ...] = (
    (200, 40, 40),
    (40, 70, 170),
    (30, 130, 60),
    (230, 200, 50),
    (240, 240, 235),
    (25, 25, 30),
    (120, 120, 125),
    (140, 80, 40),
    (230, 120, 30),
    (120, 50, 150),
    (240, 150, 180),
    (40, 170, 190),
    (100, 120, 60),
    (190, 170, 130),
    (70, 30, 40),
    (20, 40, 80),
)
SKIN: tuple[Color, ...] = ((250, 215, 185), (225, 180, 140), (190, 140, 100), (140, 95, 65), (95, 65, 45))
HAIR: tuple[Color, ...] = ((20, 15, 10), (70, 45, 25), (120, 80, 40), (200, 170, 110), (150, 150, 150))
PATTERNS = ("plain", "plain", "stripes", "checks")
BOTTOMS = ("trousers", "trousers", "trousers", "shorts", "skirt")
ACCESSORIES = ("none", "none", "bag", "backpack")
# Attributes a hard negative may change (exactly one of them).
_VARIABLE = ("top_color", "bottom_color", "top_pattern", "accessory", "hat", "build", "sleeves")


@dataclass(frozen=True)
class Appearance:
    """Everything that makes a person recognisable; independent of pose and camera."""

    top_color: Color
    top_color2: Color  # second colour of stripes/checks
    top_pattern: str  # plain | stripes | checks
    sleeves: str  # long | short
    bottom_color: Color
    bottom_kind: str  # trousers | shorts | skirt
    shoe_color: Color
    skin: Color
    hair: Color
    long_hair: bool
    accessory: str  # none | bag | backpack
    accessory_color: Color
    hat: bool
    hat_color: Color
    height_scale: float  # relative stature, ~0.88..1.12
    width_scale: float  # relative girth, ~0.85..1.2
    leg_ratio: float  # leg length / body height, ~0.44..0.52


def _jitter(rng: np.random.Generator, color: Color, amount: int = 18) -> Color:
    c = np.clip(np.asarray(color) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _pick(rng: np.random.Generator, options: tuple[_T, ...]) -> _T:
    return options[int(rng.integers(len(options)))]


def _clothing(rng: np.random.Generator, avoid: Color | None = None) -> Color:
    while True:
        c = _jitter(rng, _pick(rng, CLOTHING))
        if avoid is None or sum(abs(a - b) for a, b in zip(c, avoid, strict=True)) > 120:
            return c


def random_appearance(rng: np.random.Generator) -> Appearance:
    """A fresh random person (identities and unlabelled passers-by alike)."""
    top = _clothing(rng)
    return Appearance(
        top_color=top,
        top_color2=_clothing(rng, avoid=top),
        top_pattern=str(_pick(rng, PATTERNS)),
        sleeves="long" if rng.random() < 0.6 else "short",
        bottom_color=_clothing(rng),
        bottom_kind=str(_pick(rng, BOTTOMS)),
        shoe_color=_jitter(rng, _pick(rng, ((20, 20, 20), (240, 240, 240), (110, 70, 40), (60, 60, 140)))),
        skin=_jitter(rng, _pick(rng, SKIN), 8),
        hair=_jitter(rng, _pick(rng, HAIR), 8),
        long_hair=bool(rng.random() < 0.35),
        accessory=str(_pick(rng, ACCESSORIES)),
        accessory_color=_clothing(rng),
        hat=bool(rng.random() < 0.2),
        hat_color=_clothing(rng),
        height_scale=float(rng.uniform(0.88, 1.12)),
        width_scale=float(rng.uniform(0.85, 1.2)),
        leg_ratio=float(rng.uniform(0.44, 0.52)),
    )


def one_attribute_variant(rng: np.random.Generator, base: Appearance) -> tuple[Appearance, str]:
    """A hard negative of ``base``: the same person except for one attribute (returned by name)."""
    attr = str(_pick(rng, _VARIABLE))
    if attr == "top_color":
        new = replace(base, top_color=_clothing(rng, avoid=base.top_color))
    elif attr == "bottom_color":
        new = replace(base, bottom_color=_clothing(rng, avoid=base.bottom_color))
    elif attr == "top_pattern":
        others = [p for p in ("plain", "stripes", "checks") if p != base.top_pattern]
        new = replace(base, top_pattern=others[int(rng.integers(len(others)))])
    elif attr == "accessory":
        others = [a for a in ("none", "bag", "backpack") if a != base.accessory]
        new = replace(base, accessory=others[int(rng.integers(len(others)))])
    elif attr == "hat":
        new = replace(base, hat=not base.hat)
    elif attr == "sleeves":
        new = replace(base, sleeves="short" if base.sleeves == "long" else "long")
    else:
        thinner = base.width_scale > 1.02
        new = replace(
            base,
            width_scale=base.width_scale + (-0.25 if thinner else 0.25),
            height_scale=base.height_scale + (0.12 if thinner else -0.12),
        )
    return new, attr


def make_identities(
    rng: np.random.Generator, count: int, hard_share: float = 0.3
) -> tuple[list[Appearance], list[tuple[int, int, str]]]:
    """``count`` identities and the hard-negative pairs ``(i, j, changed attribute)`` among them."""
    people: list[Appearance] = []
    pairs: list[tuple[int, int, str]] = []
    for i in range(count):
        if i > 0 and rng.random() < hard_share:
            j = int(rng.integers(i))
            variant, attr = one_attribute_variant(rng, people[j])
            people.append(variant)
            pairs.append((j, i, attr))
        else:
            people.append(random_appearance(rng))
    return people, pairs
