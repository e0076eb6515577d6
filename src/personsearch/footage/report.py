"""Visual query results: a self-contained HTML report, a PNG contact sheet and a picture of numbered people.

* :func:`write_html_report`: one HTML file that opens offline — every picture is an embedded base64 JPEG
  (``data:`` URI), no scripts, no external resources. The query (its crop next to its image, box drawn),
  then one card per hit: the person's crop next to the image with the box drawn, rank, similarity,
  detection score, path and video timestamp. Clicking a card shows the larger frame (CSS ``:target``);
  clicking it again closes it.
* :func:`write_contact_sheet`: a PNG grid (query first, then the hits with box, rank and similarity) for
  terminals and notebooks.
* :func:`write_people_picture`: the query image with its detected people numbered (``query --pick``).

Every file is written atomically; a hit image that cannot be read is drawn as a grey placeholder with a
one-line warning.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from personsearch.errors import PersonSearchError, PersonSearchWarning
from personsearch.footage.images import ImageLike, to_rgb
from personsearch.outputs import atomic_write
from personsearch.search.draw import (
    QUERY,
    BoxLike,
    compose_tiles,
    context_crop,
    draw_box,
    fit,
    font,
    panel,
    query_tiles,
)

if TYPE_CHECKING:
    from personsearch.footage.store import Hit

#: Box colour of a hit (the query's is :data:`personsearch.search.draw.QUERY`).
HIT = (230, 120, 20)
THUMB_H = 200
FRAME_MAX = 1280

ReadImage = Callable[[int], np.ndarray]


def _line_width(image: Image.Image) -> int:
    return max(2, round(max(image.size) / 320))


def _placeholder(width: int = 320, height: int = 240, text: str = "image unavailable") -> Image.Image:
    tile = Image.new("RGB", (width, height), (200, 200, 200))
    ImageDraw.Draw(tile).text((10, height // 2 - 8), text, fill=(60, 60, 60), font=font(14))
    return tile


class _Images:
    """Hit images by id, each read once; an unreadable one is a placeholder and one warning."""

    def __init__(self, read_image: ReadImage) -> None:
        self.read_image = read_image
        self.cache: dict[int, Image.Image | None] = {}

    def get(self, hit: Hit) -> Image.Image | None:
        if hit.image_id not in self.cache:
            try:
                self.cache[hit.image_id] = Image.fromarray(to_rgb(self.read_image(hit.image_id)))
            except (PersonSearchError, OSError) as exc:
                warnings.warn(f"hit #{hit.rank}: cannot read {hit.path} ({exc})", PersonSearchWarning, stacklevel=3)
                self.cache[hit.image_id] = None
        return self.cache[hit.image_id]


def _with_box(image: Image.Image, box: BoxLike, colour: tuple[int, int, int]) -> Image.Image:
    out = image.copy()
    draw_box(ImageDraw.Draw(out), box, colour, width=_line_width(image))
    return out


def _card_picture(image: Image.Image | None, box: Sequence[float], colour: tuple[int, int, int]) -> Image.Image:
    """The person's crop (with context) next to the whole image, each with the box, ``THUMB_H`` high."""
    if image is None:
        return _placeholder(320, THUMB_H)
    crop, local = context_crop(image, box)
    crop, local = fit(crop, local, THUMB_H, THUMB_H)
    crop = _with_box(crop, local, colour)
    whole, scaled = fit(image, np.asarray(box, dtype=np.float64), THUMB_H, 2 * THUMB_H)
    whole = _with_box(whole, scaled, colour)
    gap = 6
    card = Image.new("RGB", (crop.width + gap + whole.width, THUMB_H), (255, 255, 255))
    card.paste(crop, (0, (THUMB_H - crop.height) // 2))
    card.paste(whole, (crop.width + gap, (THUMB_H - whole.height) // 2))
    return card


def _large_frame(image: Image.Image | None, box: Sequence[float], colour: tuple[int, int, int]) -> Image.Image:
    if image is None:
        return _placeholder(640, 480)
    scale = min(1.0, FRAME_MAX / max(image.size))
    scaled = np.asarray(box, dtype=np.float64)
    if scale < 1.0:
        image, scaled = fit(image, scaled, round(image.height * scale), round(image.width * scale))
    return _with_box(image, scaled, colour)


def _data_uri(image: Image.Image, quality: int = 85) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _time(seconds: float | None) -> str:
    from personsearch.footage.query import format_timestamp

    return format_timestamp(seconds)


_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;background:#f4f4f4;color:#222}
h1{font-size:18px;margin:0 0 12px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:2px solid #ccc;border-radius:6px;padding:6px;margin:0;max-width:620px}
.card.query{border-color:rgb(30,110,230)}
.card img{display:block;height:200px;max-width:100%;object-fit:contain;cursor:zoom-in}
.card figcaption{font-size:13px;line-height:1.35;margin-top:4px;word-break:break-all}
.rank{font-weight:bold;font-size:15px}
.frame{display:none;position:fixed;inset:0;z-index:10;
  background-color:rgba(0,0,0,.88);background-repeat:no-repeat;background-position:center;background-size:contain}
.frame:target{display:block}
.frame a{position:absolute;inset:0;cursor:zoom-out}
.frame p{position:absolute;left:0;right:0;bottom:0;margin:0;padding:6px 10px;color:#fff;
  background:rgba(0,0,0,.6);font-size:14px}
"""


def _card(anchor: str, picture: Image.Image, alt: str, caption: str, extra: str = "") -> str:
    return (
        f'<figure class="card{extra}"><a href="#{anchor}"><img src="{_data_uri(picture)}" alt="{html.escape(alt)}">'
        f"</a><figcaption>{caption}</figcaption></figure>"
    )


def _frame(anchor: str, picture: Image.Image, caption: str) -> str:
    return (
        f'<div class="frame" id="{anchor}" style="background-image:url({_data_uri(picture)})">'
        f'<a href="#_" aria-label="close"></a><p>{caption}</p></div>'
    )


def write_html_report(
    out: str | Path,
    query_image: ImageLike,
    query_box: Sequence[float],
    hits: Sequence[Hit],
    read_image: ReadImage,
    title: str = "",
    query_name: str = "",
) -> Path:
    """Write the self-contained HTML report of one query (see the module docstring).

    ``query_image`` is the query image (path, PIL image or RGB array), ``query_box`` the person in it,
    ``hits`` the ranked hits and ``read_image(image_id)`` returns a hit's image as an RGB array
    (:meth:`GalleryIndex.read_image`). The report has one ``<img>`` for the query and one per hit.
    """
    query = Image.fromarray(to_rgb(query_image))
    images = _Images(read_image)
    esc = html.escape
    box_text = ",".join(f"{v:.0f}" for v in query_box)
    q_caption = f'<span class="rank">query</span><br>{esc(query_name)}<br>box {box_text}'
    cards = [_card("f0", _card_picture(query, query_box, QUERY), "query", q_caption, " query")]
    frames = [_frame("f0", _large_frame(query, query_box, QUERY), f"query {esc(query_name)} box {box_text}")]
    for n, hit in enumerate(hits, start=1):
        image = images.get(hit)
        when = "" if hit.timestamp is None else f" at {_time(hit.timestamp)}"
        box = ",".join(f"{v:.0f}" for v in hit.box)
        caption = (
            f'<span class="rank">#{hit.rank}</span> similarity {hit.similarity:.4f} &middot; score {hit.score:.3f}'
            f"<br>{esc(hit.path)}{esc(when)}<br>box {box}"
        )
        cards.append(_card(f"f{n}", _card_picture(image, hit.box, HIT), f"hit {hit.rank}", caption))
        line = f"#{hit.rank} similarity {hit.similarity:.4f} &middot; {esc(hit.path)}{esc(when)}"
        frames.append(_frame(f"f{n}", _large_frame(image, hit.box, HIT), line))
    heading = esc(title or f"{query_name}: top {len(hits)}")
    none = "" if hits else "<p>no hits</p>"
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{heading}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{heading}</h1>\n"
        f'<p>Click a picture for the larger frame; click the frame to close it.</p>\n{none}<div class="grid">\n'
        + "\n".join(cards)
        + "\n</div>\n"
        + "\n".join(frames)
        + "\n</body></html>\n"
    )
    data = document.encode("utf-8")
    return atomic_write(out, lambda handle: handle.write(data), "HTML report")


def _save_png(out: str | Path, picture: Image.Image, what: str) -> Path:
    return atomic_write(out, lambda handle: picture.save(handle, format="PNG"), what)


def write_contact_sheet(
    out: str | Path,
    query_image: ImageLike,
    query_box: Sequence[float],
    hits: Sequence[Hit],
    read_image: ReadImage,
    title: str = "",
    tile_height: int = 220,
    tile_width: int = 150,
    per_row: int = 6,
) -> Path:
    """Write a PNG grid: the query image (box drawn) and its crop, then each hit's crop with its box, rank,
    similarity and file name, ``per_row`` hits a row."""
    query = Image.fromarray(to_rgb(query_image))
    images = _Images(read_image)
    tiles = query_tiles(query, query_box, "", tile_height, tile_width)
    for hit in hits:
        image = images.get(hit)
        when = "" if hit.timestamp is None else f" {_time(hit.timestamp)}"
        lines = [f"#{hit.rank} sim {hit.similarity:.3f}", f"{Path(hit.path).name}{when}"]
        if image is None:
            image, box = _placeholder(tile_width, tile_height, "unavailable"), (0, 0, 0, 0)
            tiles.append(panel(image, box, HIT, lines, tile_height, tile_width, False))
        else:
            tiles.append(panel(image, hit.box, HIT, lines, tile_height, tile_width))
    return _save_png(out, compose_tiles(tiles, title, per_row + 1), "contact sheet")


def write_people_picture(
    out: str | Path, image: ImageLike, boxes: np.ndarray, scores: np.ndarray, max_side: int = 1600
) -> Path:
    """Write a PNG of ``image`` with each box drawn and numbered from 1 (with its score)."""
    picture = Image.fromarray(to_rgb(image))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scale = min(1.0, max_side / max(picture.size))
    if scale < 1.0:
        picture, boxes = fit(picture, boxes, round(picture.height * scale), round(picture.width * scale))
    draw = ImageDraw.Draw(picture)
    for n, (box, score) in enumerate(zip(boxes, np.asarray(scores).reshape(-1), strict=True), start=1):
        draw_box(draw, box, HIT, width=_line_width(picture), label=f"{n} ({score:.2f})", label_size=14)
    return _save_png(out, picture, "picture")
