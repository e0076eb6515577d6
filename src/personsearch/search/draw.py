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

from personsearch.search.index import Hit

GREEN = (20, 170, 60)
RED = (215, 35, 35)
GREY = (128, 128, 128)
QUERY = (30, 110, 230)
BACKGROUND = (255, 255, 255)
CAPTION_H = 38
PAD = 6


def _font(size: int = 13) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def colour_of(correct: bool | None) -> tuple[int, int, int]:
    return GREY if correct is None else (GREEN if correct else RED)


def context_crop(image: Image.Image, box: Sequence[float], margin: float = 0.35) -> tuple[Image.Image, np.ndarray]:
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


def _fit(image: Image.Image, box: np.ndarray, height: int, max_width: int) -> tuple[Image.Image, np.ndarray]:
    scale = min(height / image.height, max_width / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), box * scale


def panel(
    image: Image.Image,
    box: Sequence[float],
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
    image, local = _fit(image, local, height, width)
    tile = Image.new("RGB", (width, height + CAPTION_H), BACKGROUND)
    ox = (width - image.width) // 2
    tile.paste(image, (ox, 0))
    draw = ImageDraw.Draw(tile)
    x1, y1, x2, y2 = local.tolist()
    draw.rectangle([ox + x1, y1, ox + x2, y2], outline=colour, width=3)
    font = _font()
    for i, text in enumerate(lines[:2]):
        draw.text((4, height + 2 + 16 * i), text, fill=colour if i == 0 else (40, 40, 40), font=font)
    draw.rectangle([0, 0, width - 1, height + CAPTION_H - 1], outline=colour, width=2)
    return tile


def _open_rgb(path: Path) -> Image.Image:
    from personsearch.data.images import load_image

    return Image.fromarray(load_image(path))


def render_ranking(
    query_image: Path,
    query_box: Sequence[float],
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
    qimg = _open_rgb(Path(query_image))
    tiles = [
        panel(qimg, query_box, QUERY, ["query (image)", Path(query_image).name], tile_height, 2 * tile_width, False),
        panel(qimg, query_box, QUERY, ["query (crop)", ""], tile_height, tile_width),
    ]
    cache: dict[int, Image.Image] = {}
    for hit in hits:
        if hit.image not in cache:
            cache[hit.image] = _open_rgb(Path(gallery_paths[hit.image]))
        mark = {True: "correct", False: "wrong", None: ""}[hit.correct]
        lines = [f"#{hit.rank} sim {hit.similarity:.3f} {mark}", hit.name]
        tiles.append(panel(cache[hit.image], hit.box, colour_of(hit.correct), lines, tile_height, tile_width))
    return _compose(tiles, out, title, per_row + 1)


def _compose(tiles: list[Image.Image], out: Path, title: str, per_row: int) -> Path:
    """Lay tiles out left to right, wrapping rows, under a title line."""
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
        draw.text((PAD, 5), title, fill=(0, 0, 0), font=_font(15))
    y = title_h + PAD
    for row in rows:
        x = PAD
        for tile in row:
            canvas.paste(tile, (x, y))
            x += tile.width + PAD
        y += max(t.height for t in row) + PAD
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format="PNG")
    return out
