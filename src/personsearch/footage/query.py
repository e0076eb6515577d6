"""Queries over a gallery index: one person (a box in an image, a detected person, or a whole crop) ranked
against every indexed detection, with filters, a printed table, JSON and visual reports.

:func:`search_index` is the library call (:meth:`personsearch.Searcher.query` uses it);
:func:`personsearch.footage.query_run.run_query` is ``personsearch query`` without the argument parsing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from personsearch.errors import PersonSearchError
from personsearch.footage.images import ImageLike, check_box, describe, to_rgb

if TYPE_CHECKING:
    from personsearch.footage.detections import Detections
    from personsearch.footage.searcher import Searcher
    from personsearch.footage.store import GalleryIndex, Hit


@dataclass
class QueryResult:
    """One query's outcome: the query image and box (clipped to it), the ranked hits, and the index paths
    left out as the query's own image."""

    image: np.ndarray
    box: list[float]
    hits: list[Hit]
    excluded: list[str] = field(default_factory=list)


def path_forms(path: str | os.PathLike[str]) -> list[str]:
    """The spellings under which an index may hold ``path``: as given, absolute, and resolved."""
    forms = [os.fspath(path), os.path.abspath(path)]
    with contextlib.suppress(OSError):
        forms.append(str(Path(path).resolve()))
    return list(dict.fromkeys(forms))


def indexed_forms(index: GalleryIndex, image: ImageLike) -> list[str]:
    """The spellings of the query image's path that ``index`` holds (empty when it is not a path or not
    indexed)."""
    if not isinstance(image, (str, os.PathLike)):
        return []
    return [form for form in path_forms(image) if index.contains_path(form)]


def search_index(
    searcher: Searcher,
    index: GalleryIndex,
    image: ImageLike,
    box: Sequence[float] | None = None,
    top_k: int = 20,
    *,
    sources: Sequence[str | os.PathLike[str]] | None = None,
    time_range: tuple[float, float] | None = None,
    exclude_paths: Sequence[str] = (),
    exclude_query_image: bool | None = None,
    index_name: str | os.PathLike[str] | None = None,
) -> QueryResult:
    """Rank ``index`` for the person in ``box`` of ``image`` (the whole image when None).

    ``sources``: only hits indexed from these sources (folders, videos, list files); ``time_range``:
    only video frames from ``start`` to ``end`` seconds; ``exclude_paths``: no hits from these images;
    ``exclude_query_image``: no hits from the query image itself (None, the default: when the index holds
    it). A model that is not the index's, a box outside the image or of zero size, an unreadable image are
    each a :class:`PersonSearchError`.
    """
    if top_k < 1:
        raise PersonSearchError(f"top_k must be a positive integer, got {top_k}")
    searcher.check_index(index, index_name)
    array = to_rgb(image)
    height, width = array.shape[:2]
    if box is None:
        box = [0.0, 0.0, float(width), float(height)]
    clipped = check_box(box, describe(image), (width, height))
    feature = searcher.embed(array, [clipped])[0]
    excluded: list[str] = []
    if exclude_query_image is not False:
        excluded = indexed_forms(index, image)
    source_forms = None
    if sources is not None:
        source_forms = list(dict.fromkeys(form for s in sources for form in path_forms(s)))
    hits = index.search(
        feature,
        top_k=top_k,
        sources=source_forms,
        time_range=None if time_range is None else (float(time_range[0]), float(time_range[1])),
        exclude_paths=[*exclude_paths, *excluded],
    )
    return QueryResult(array, clipped, list(hits), excluded)


def people(searcher: Searcher, image: ImageLike) -> Detections:
    """The detected people of ``image``, best score first (numbered from 1 in that order by ``--pick``)."""
    from personsearch.footage.detections import Detections

    found = searcher.detect(image)[0]
    order = np.argsort(-found.scores, kind="stable")
    return Detections(found.boxes[order], found.scores[order], found.embeddings[order])


# ---------------------------------------------------------------------------------------------------------
# checks and formatting shared by the query command and the web app


def resolve_checkpoint(index: GalleryIndex, index_path: str | os.PathLike[str], checkpoint: str | None) -> str:
    """The checkpoint to query ``index`` with (``checkpoint``, else the one recorded in the index), after
    checking it is the model that built the index."""
    from personsearch.export.runtime import model_id as model_id_of

    if checkpoint is None:
        checkpoint = index.checkpoint
        if not checkpoint:
            raise PersonSearchError(f"index {index_path} records no checkpoint; give --checkpoint")
        if not Path(checkpoint).exists():  # a checkpoint file, or an exported model's folder
            raise PersonSearchError(
                f"index {index_path} was built with checkpoint {checkpoint}, which does not exist; give --checkpoint"
            )
    model_id = model_id_of(checkpoint)
    if model_id != index.model_id:
        raise PersonSearchError(
            f"index {index_path} was built with model {index.model_id[:12]}, checkpoint {checkpoint} is {model_id[:12]}"
        )
    return str(checkpoint)


def format_timestamp(seconds: float | None) -> str:
    """``h:mm:ss.ss`` (``m:ss.ss`` under an hour) for a video frame, ``-`` for a still image."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(float(seconds), 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes}:{secs:05.2f}"


def format_hits(hits: Sequence[Hit]) -> str:
    """The hits as a table: rank, image path, video timestamp, box, detection score, similarity."""
    rows = [("rank", "image", "time", "box", "score", "similarity")]
    for h in hits:
        box = ",".join(f"{v:.0f}" for v in h.box)
        rows.append((str(h.rank), h.path, format_timestamp(h.timestamp), box, f"{h.score:.3f}", f"{h.similarity:.4f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {0, 4, 5}
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def hit_dict(hit: Hit) -> dict[str, Any]:
    """A hit as plain JSON values."""
    row = asdict(hit)
    row["box"] = [float(v) for v in hit.box]
    return row


def format_people(found: Detections) -> str:
    """Numbered detections (from 1): number, box, score."""
    lines = [f"{len(found)} {'person' if len(found) == 1 else 'people'} detected:"]
    for n, (box, score) in enumerate(zip(found.boxes, found.scores, strict=True), start=1):
        lines.append(f"  {n:>3}  box {','.join(f'{v:.0f}' for v in box)}  score {score:.3f}")
    return "\n".join(lines)
