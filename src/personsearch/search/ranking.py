"""One query ranked over a results file's gallery and drawn: ``personsearch search`` and ``demo-report``
without the argument parsing.

The query is the dataset's query N (:func:`rank_dataset_query`) or an arbitrary box in an image, embedded by
a trained model (:func:`rank_image_box`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from personsearch.errors import PersonSearchError

if TYPE_CHECKING:
    from personsearch.data.annotations import PersonSearchData
    from personsearch.evaluation import SearchResults
    from personsearch.search.index import GalleryIndex, Hit


@dataclass
class Ranking:
    """One query's ranked hits: the query image and box, and what the query is (for titles and JSON)."""

    image: Path
    box: Sequence[float] | np.ndarray
    what: str
    hits: list[Hit]


def dataset_results(
    data: PersonSearchData, results: Path | None, checkpoint: Path | None, device: str = "auto"
) -> SearchResults:
    """The results file ``results`` (checked against ``data``), else the results of ``checkpoint`` over
    ``data`` (inference runs first)."""
    from personsearch.evaluation import load_results, make_results

    if results:
        return load_results(results, data)
    if not checkpoint:
        raise PersonSearchError("give --results (a results file) or --checkpoint (to run inference first)")
    from personsearch.engine.inference import run_inference
    from personsearch.engine.loading import load_trained_model

    model, _, torch_device = load_trained_model(checkpoint, device)
    return make_results(**run_inference(model, data, torch_device, progress=True))


def rank_image_box(index: GalleryIndex, feature: np.ndarray, image: Path, box: Sequence[float], top: int) -> Ranking:
    """The ``top`` gallery detections most similar to ``feature`` (the person in ``box`` of ``image``),
    from every gallery image but ``image`` itself; marked correct when ``box`` is an annotated person. A
    feature of another size than the results' is a :class:`PersonSearchError` (another model)."""
    from personsearch.search.index import identify_box, mark_correct

    expected = index.query_features.shape[1]
    if feature.shape[0] != expected:
        raise PersonSearchError(
            f"the model's embedding has {feature.shape[0]} dimensions but the results' "
            f"{expected}: use the results file of the same model"
        )
    data = index.data
    pid = identify_box(data, image.name, np.asarray(box))
    images = np.asarray([i for i, r in enumerate(data.gallery) if r.name != image.name], dtype=np.int64)
    hits = mark_correct(index.rank(feature, top, images), data, pid)
    return Ranking(image, box, f"{image.name} box {box}", hits)


def rank_dataset_query(
    index: GalleryIndex, query: int, top: int, gallery_size: int | None = -1, cross_camera: bool = False
) -> Ranking:
    """The ``top`` hits of the dataset's query ``query`` in its gallery (:meth:`GalleryIndex.search`)."""
    hits = index.search(query, top, gallery_size, cross_camera)
    q = index.data.queries[query]
    return Ranking(q.path, q.box, f"query {query} ({q.name}, identity {q.pid})", hits)


def first_correct_query(index: GalleryIndex, gallery_size: int | None = -1, cross_camera: bool = False) -> int:
    """The first query whose top-1 hit is correct (0 when there is none)."""
    for q in range(len(index.data.queries)):
        hits = index.search(q, 1, gallery_size, cross_camera)
        if hits and hits[0].correct:
            return q
    return 0


def draw_ranking(ranking: Ranking, data: PersonSearchData, out: Path, title: str) -> None:
    """The query and its hits as a picture (:func:`~personsearch.search.draw.render_ranking`); a failed write
    (a full disk) is one line naming it."""
    from personsearch.search.draw import render_ranking

    try:
        render_ranking(ranking.image, ranking.box, ranking.hits, [r.path for r in data.gallery], out, title=title)
    except OSError as exc:
        raise PersonSearchError(f"cannot write picture {out} ({exc.strerror or exc})") from None
