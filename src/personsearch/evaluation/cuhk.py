"""CUHK-SYSU person-search pairs (docs/evaluation.md), from a ``TestG{N}`` protocol.

Semantics: the protocol gallery of each query in file order; a repeated image keeps only its first entry
(SeqNet) while every positive entry counts in ``count_gt``; the full set (``gallery_size=-1``) adds, before
the protocol images, every other pool image with detections except the query image, as negatives
(OIM/NAE semantics, docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from personsearch.data.annotations import GalleryProtocol
from personsearch.errors import DatasetError
from personsearch.evaluation.ap import relaxed_threshold
from personsearch.evaluation.search import DEFAULT_BLOCK_ITEMS, GalleryDetections, PairBlock, plan_blocks


def positive_boxes(protocol: GalleryProtocol) -> np.ndarray:
    """(P, 4) int32 x, y, w, h of the positive entries, in ``np.nonzero(protocol.positive)`` order."""
    sparse = getattr(protocol, "positive_boxes_xywh", None)
    if sparse is not None:
        return np.asarray(sparse, dtype=np.int32).reshape(-1, 4)
    return np.asarray(protocol.boxes_xywh)[protocol.positive].astype(np.int32)


def _dataset_entries(protocol: GalleryProtocol, gallery_names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(gallery_names)}
    mapping = np.empty(len(protocol.gallery_names) + 1, dtype=np.int64)
    mapping[-1] = -1  # padding entries (-1) map to -1
    for i, name in enumerate(protocol.gallery_names):
        if name not in index:
            raise DatasetError(f"TestG{protocol.size}: gallery image {name} is not in the gallery (pool.mat)")
        mapping[i] = index[name]
    return mapping[np.asarray(protocol.entries)]


@dataclass
class _Pairs:
    """Pairs of a block in visiting order (``query`` is the row within the block)."""

    query: np.ndarray
    image: np.ndarray
    positive: np.ndarray
    gt: np.ndarray  # (P, 4) int32 x1 y1 x2 y2 (zeros for negatives)
    thr: np.ndarray
    rank: np.ndarray
    context: np.ndarray

    def concat(self, other: _Pairs) -> _Pairs:
        return _Pairs(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))

    def block(self, queries: np.ndarray, count_gt: np.ndarray) -> PairBlock:
        return PairBlock(
            queries=queries,
            count_gt=count_gt,
            pair_query=self.query.astype(np.int64),
            pair_image=self.image.astype(np.int64),
            pair_rank=self.rank,
            pair_positive=self.positive,
            pair_gt=self.gt,
            pair_thr=self.thr,
            pair_context=self.context,
        )


def _first_entries(e: np.ndarray) -> np.ndarray:
    """The valid entries of each row, keeping only the first entry of a repeated image (SeqNet)."""
    valid = e >= 0
    first = valid.copy()
    ordered = np.sort(e, axis=1)
    repeats = np.flatnonzero(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any(axis=1))
    for q in repeats.tolist():  # rare
        _, first_k = np.unique(e[q], return_index=True)
        first[q] = False
        first[q, first_k] = True
        first[q] &= valid[q]
    return first


def _protocol_pairs(
    e: np.ndarray,
    flat_row: np.ndarray,
    positive: np.ndarray,
    boxes: np.ndarray,
    pos_rank: np.ndarray,
    count: np.ndarray,
) -> _Pairs:
    """The block's protocol entries on images with detections; ``e``/``positive`` are the block's rows and
    ``flat_row`` their offsets into the flattened protocol (to find each positive's box)."""
    take = _first_entries(e) & (count[np.maximum(e, 0)] > 0)
    qi, k = np.nonzero(take)
    pair_pos = positive[qi, k]
    flat = flat_row[qi] + k
    xywh = np.zeros((len(qi), 4), dtype=np.int32)
    xywh[pair_pos] = boxes[pos_rank[flat[pair_pos]]]
    gt = xywh.copy()
    gt[:, 2:] += gt[:, :2]
    thr = relaxed_threshold(xywh[:, 2], xywh[:, 3])
    return _Pairs(qi, e[qi, k], pair_pos, gt, thr, k.astype(np.int64), np.ones(len(qi), dtype=bool))


def _full_set_pairs(e: np.ndarray, query_image: np.ndarray, count: np.ndarray) -> _Pairs:
    """Negatives of the full set: every other image with detections that the rows do not list, except the
    query image; ranked after the protocol entries in gallery order."""
    b, width = e.shape
    num_g = len(count)
    valid = e >= 0
    seen = np.zeros((b, num_g), dtype=bool)
    rows = np.repeat(np.arange(b), width).reshape(b, width)
    seen[rows[valid], e[valid]] = True
    extra = (count > 0)[None, :] & ~seen
    has_img = query_image >= 0
    extra[np.flatnonzero(has_img), query_image[has_img]] = False
    xq, xg = np.nonzero(extra)
    n = len(xq)
    no = np.zeros(n, dtype=bool)
    return _Pairs(xq, xg, no, np.zeros((n, 4), dtype=np.int32), np.zeros(n), xg.astype(np.int64) - num_g, no)


def cuhk_blocks(
    protocol: GalleryProtocol,
    gallery: GalleryDetections,
    full_set: bool = False,
    budget: int = DEFAULT_BLOCK_ITEMS,
) -> Iterator[PairBlock]:
    """Yield the pair blocks of every query (queries in protocol order)."""
    entries = _dataset_entries(protocol, gallery.names)
    listed_positive = np.asarray(protocol.positive, dtype=bool)
    positive = listed_positive & (entries >= 0)
    boxes = positive_boxes(protocol)
    if len(boxes) != int(np.asarray(protocol.positive).sum()):
        raise DatasetError(f"TestG{protocol.size}: positive boxes do not match the positive entries")
    pos_rank = np.cumsum(listed_positive.ravel()) - 1  # row of each positive entry in `boxes`
    name_index = {n: i for i, n in enumerate(gallery.names)}
    query_image = np.array([name_index.get(n, -1) for n in protocol.query_names], dtype=np.int64)
    count = gallery.count
    per_query = np.where(entries >= 0, count[np.maximum(entries, 0)], 0).sum(axis=1)
    if full_set:
        per_query = per_query + int(count.sum())
    for queries in plan_blocks(per_query, budget):
        e = entries[queries]
        pairs = _protocol_pairs(e, queries * e.shape[1], positive[queries], boxes, pos_rank, count)
        if full_set:
            pairs = pairs.concat(_full_set_pairs(e, query_image[queries], count))
        yield pairs.block(queries, positive[queries].sum(axis=1))
