"""Draw one query and its ranked gallery hits into a PNG (Pillow only).

Layout: the query image (box drawn) and the query crop, then one panel per hit: a crop of the gallery image
around the detected box with the box drawn, and a caption with the rank and similarity. Green = correct,
red = wrong, grey = unknown (a query whose identity is not annotated).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from personsearch.outputs import atomic_write
from personsearch.search.index import Hit

GREEN = (20, 170, 60)
RED = (215, 35, 35)
GREY = (128, 128, 128)
QUERY = (30, 110, 230)
BACKGROUND = (255, 255, 255)
CAPTION_H = 38
PAD = 6

#: A box ``x1 y1 x2 y2``: four numbers, or an array of them
BoxLike = Sequence[float] | np.ndarray


def font(size: int = 13) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's default font at ``size`` (a fixed-size bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def colour_of(correct: bool | None) -> tuple[int, int, int]:
    return GREY if correct is None else (GREEN if correct else RED)


def context_crop(image: Image.Image, box: BoxLike, margin: float = 0.35) -> tuple[Image.Image, np.ndarray]:
    """Crop around ``box`` enlarged by ``margin`` of its size on each side; returns the crop and the box
    in crop coordinates."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    left = int(max(0, np.floor(x1 - margin * w)))
    top = int(max(0, np.floor(y1 - margin * h)))
    right = int(min(image.width, np.ceil(x2 + margin * w)))
    bottom = int(min(image.height, np.ceil(y2 + margin * h)))
    right, bottom = max(right, left + 1), max(bottom, top + 1)
    return image.crop((left, top, right, bottom)), np.array([x1 - left, y1 - top, x2 - left, y2 - top])


def fit(image: Image.Image, box: np.ndarray, height: int, max_width: int) -> tuple[Image.Image, np.ndarray]:
    """``image`` scaled to fit ``max_width`` x ``height`` (aspect kept), and ``box`` scaled with it."""
    scale = min(height / image.height, max_width / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), box * scale


def draw_box(
    draw: ImageDraw.ImageDraw,
    box: BoxLike,
    colour: tuple[int, int, int],
    width: int = 3,
    label: str | None = None,
    label_size: int = 13,
) -> None:
    """Outline ``box`` (``x1 y1 x2 y2``) in ``colour``; ``label`` is written white on a ``colour`` patch
    above the box's top-left corner (inside the box when there is no room above)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
    if label:
        face = font(label_size)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=face)
        w, h = right - left + 6, bottom - top + 4
        ty = y1 - h if y1 - h >= 0 else y1
        draw.rectangle([x1, ty, x1 + w, ty + h], fill=colour)
        draw.text((x1 + 3 - left, ty + 2 - top), label, fill=(255, 255, 255), font=face)


def panel(
    image: Image.Image,
    box: BoxLike,
    colour: tuple[int, int, int],
    lines: Sequence[str],
    height: int,
    width: int,
    crop: bool = True,
) -> Image.Image:
    """One tile: the (cropped) image scaled into ``width`` x ``height`` with the box and a caption."""
    if crop:
        image, local = context_crop(image, box)
    else:
        local = np.asarray(box, dtype=np.float64)
    image, local = fit(image, local, height, width)
    tile = Image.new("RGB", (width, height + CAPTION_H), BACKGROUND)
    ox = (width - image.width) // 2
    tile.paste(image, (ox, 0))
    draw = ImageDraw.Draw(tile)
    draw_box(draw, local + np.array([ox, 0, ox, 0]), colour)
    caption = font()
    for i, text in enumerate(lines[:2]):
        draw.text((4, height + 2 + 16 * i), text, fill=colour if i == 0 else (40, 40, 40), font=caption)
    draw.rectangle([0, 0, width - 1, height + CAPTION_H - 1], outline=colour, width=2)
    return tile


def _open_rgb(path: Path) -> Image.Image:
    from personsearch.data.images import load_image

    return Image.fromarray(load_image(path))


def render_ranking(
    query_image: Path,
    query_box: BoxLike,
    hits: Sequence[Hit],
    gallery_paths: Sequence[Path],
    out: Path,
    title: str = "",
    tile_height: int = 220,
    tile_width: int = 150,
    per_row: int = 6,
) -> Path:
    """Write the PNG: the query (whole image, then crop) followed by the hits, ``per_row`` tiles a row.

    ``gallery_paths[h.image]`` is the file of hit ``h``'s image.
    """
    tiles = query_tiles(_open_rgb(Path(query_image)), query_box, Path(query_image).name, tile_height, tile_width)
    cache: dict[int, Image.Image] = {}
    for hit in hits:
        if hit.image not in cache:
            cache[hit.image] = _open_rgb(Path(gallery_paths[hit.image]))
        mark = {True: "correct", False: "wrong", None: ""}[hit.correct]
        lines = [f"#{hit.rank} sim {hit.similarity:.3f} {mark}", hit.name]
        tiles.append(panel(cache[hit.image], hit.box, colour_of(hit.correct), lines, tile_height, tile_width))
    return _save(compose_tiles(tiles, title, per_row + 1), out)


def query_tiles(image: Image.Image, box: BoxLike, name: str, tile_height: int, tile_width: int) -> list[Image.Image]:
    """The first two tiles of a ranking sheet: the whole query image (box drawn, ``name`` under it), then its crop."""
    return [
        panel(image, box, QUERY, ["query (image)", name], tile_height, 2 * tile_width, False),
        panel(image, box, QUERY, ["query (crop)", ""], tile_height, tile_width),
    ]


def compose_tiles(tiles: list[Image.Image], title: str, per_row: int) -> Image.Image:
    """Lay tiles out left to right, wrapping rows (``per_row`` units of the narrowest tile's width), under
    a title line."""
    rows: list[list[Image.Image]] = [[]]
    units = 0
    unit = min(t.width for t in tiles)
    for tile in tiles:
        u = max(1, round(tile.width / unit))
        if rows[-1] and units + u > per_row:
            rows.append([])
            units = 0
        rows[-1].append(tile)
        units += u
    title_h = 24 if title else 0
    width = max(sum(t.width for t in row) + PAD * (len(row) + 1) for row in rows)
    height = title_h + sum(max(t.height for t in row) + PAD for row in rows) + PAD
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD, 5), title, fill=(0, 0, 0), font=font(15))
    y = title_h + PAD
    for row in rows:
        x = PAD
        for tile in row:
            canvas.paste(tile, (x, y))
            x += tile.width + PAD
        y += max(t.height for t in row) + PAD
    return canvas


def _save(canvas: Image.Image, out: Path) -> Path:
    return atomic_write(out, lambda handle: canvas.save(handle, format="PNG"), "picture")
