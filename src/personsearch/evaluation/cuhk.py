"""CUHK-SYSU person-search pairs (spec 3.4), from a ``TestG{N}`` protocol.

Semantics: the protocol gallery of each query in file order; a repeated image keeps only its first entry
(SeqNet) while every positive entry counts in ``count_gt``; the full set (``gallery_size=-1``) adds, before
the protocol images, every other pool image with detections except the query image, as negatives
(OIM/NAE semantics, spec 3.4.2).
"""

from __future__ import annotations

from collections.abc import Iterator

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


def cuhk_blocks(
    protocol: GalleryProtocol,
    gallery: GalleryDetections,
    full_set: bool = False,
    budget: int = DEFAULT_BLOCK_ITEMS,
) -> Iterator[PairBlock]:
    """Yield the pair blocks of every query (queries in protocol order)."""
    entries = _dataset_entries(protocol, gallery.names)
    positive = np.asarray(protocol.positive, dtype=bool) & (entries >= 0)
    boxes = positive_boxes(protocol)
    if len(boxes) != int(np.asarray(protocol.positive).sum()):
        raise DatasetError(f"TestG{protocol.size}: positive boxes do not match the positive entries")
    # row of each positive entry in `boxes`
    pos_rank = np.cumsum(np.asarray(protocol.positive, dtype=bool).ravel()) - 1
    num_g = len(gallery.names)
    name_index = {n: i for i, n in enumerate(gallery.names)}
    query_image = np.array([name_index.get(n, -1) for n in protocol.query_names], dtype=np.int64)
    count = gallery.count
    per_query = np.where(entries >= 0, count[np.maximum(entries, 0)], 0).sum(axis=1)
    if full_set:
        per_query = per_query + int(count.sum())
    width = entries.shape[1]
    for queries in plan_blocks(per_query, budget):
        b = len(queries)
        e = entries[queries]
        valid = e >= 0
        first = valid.copy()
        ordered = np.sort(e, axis=1)
        repeats = np.flatnonzero(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any(axis=1))
        for q in repeats.tolist():  # rare: keep the first entry of each image (SeqNet)
            _, first_k = np.unique(e[q], return_index=True)
            first[q] = False
            first[q, first_k] = True
            first[q] &= valid[q]
        take = first & (count[np.maximum(e, 0)] > 0)
        qi, k = np.nonzero(take)
        pair_image = e[qi, k]
        pair_pos = positive[queries][qi, k]
        flat = queries[qi] * width + k
        xywh = np.zeros((len(qi), 4), dtype=np.int32)
        xywh[pair_pos] = boxes[pos_rank[flat[pair_pos]]]
        gt = xywh.copy()
        gt[:, 2:] += gt[:, :2]
        thr = relaxed_threshold(xywh[:, 2], xywh[:, 3])
        rank = k.astype(np.int64)
        context = np.ones(len(qi), dtype=bool)
        if full_set:
            seen = np.zeros((b, num_g), dtype=bool)
            rows = np.repeat(np.arange(b), width).reshape(b, width)
            seen[rows[valid], e[valid]] = True
            extra = (count > 0)[None, :] & ~seen
            qimg = query_image[queries]
            has_img = qimg >= 0
            extra[np.flatnonzero(has_img), qimg[has_img]] = False
            xq, xg = np.nonzero(extra)
            qi = np.concatenate([qi, xq])
            pair_image = np.concatenate([pair_image, xg])
            pair_pos = np.concatenate([pair_pos, np.zeros(len(xq), dtype=bool)])
            gt = np.concatenate([gt, np.zeros((len(xq), 4), dtype=np.int32)])
            thr = np.concatenate([thr, np.zeros(len(xq))])
            rank = np.concatenate([rank, xg.astype(np.int64) - num_g])
            context = np.concatenate([context, np.zeros(len(xq), dtype=bool)])
        yield PairBlock(
            queries=queries,
            count_gt=positive[queries].sum(axis=1),
            pair_query=qi.astype(np.int64),
            pair_image=pair_image.astype(np.int64),
            pair_rank=rank,
            pair_positive=pair_pos,
            pair_gt=gt,
            pair_thr=thr,
            pair_context=context,
        )
