"""PRW person-search pairs (docs/evaluation.md).

Every test frame except the query frame is a gallery frame (with ``cross_camera``, frames of the query's
camera are dropped too). A frame is positive when it contains the query pid; the first box of that pid in
the frame is the ground truth. ``count_gt`` counts positive gallery frames, detected or not.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from personsearch.data.annotations import UNLABELED, PersonSearchData
from personsearch.evaluation.ap import relaxed_threshold
from personsearch.evaluation.search import DEFAULT_BLOCK_ITEMS, GalleryDetections, PairBlock, plan_blocks


def _occurrences(data: PersonSearchData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, pid, first box of that pid in the frame) for every labelled pid of every gallery frame,
    sorted by pid then frame."""
    frames, pids, boxes = [], [], []
    for g, rec in enumerate(data.gallery):
        labeled = rec.pids != UNLABELED
        if not labeled.any():
            continue
        uniq, first = np.unique(rec.pids[labeled], return_index=True)
        frames.append(np.full(len(uniq), g, dtype=np.int64))
        pids.append(uniq)
        boxes.append(rec.boxes[labeled][first])
    if not frames:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.int32)
    f, p, b = np.concatenate(frames), np.concatenate(pids), np.concatenate(boxes)
    order = np.lexsort((f, p))
    return f[order], p[order], b[order].astype(np.int32)


def prw_blocks(
    data: PersonSearchData,
    gallery: GalleryDetections,
    cross_camera: bool = False,
    budget: int = DEFAULT_BLOCK_ITEMS,
) -> Iterator[PairBlock]:
    """Yield the pair blocks of every query (queries in ``query_info.txt`` order)."""
    num_g = len(data.gallery)
    cams = np.array([r.cam_id for r in data.gallery], dtype=np.int64)
    index = {r.name: i for i, r in enumerate(data.gallery)}
    qframe = np.array([index.get(q.name, -1) for q in data.queries], dtype=np.int64)
    qpid = np.array([q.pid for q in data.queries], dtype=np.int64)
    qcam = np.array([q.cam_id for q in data.queries], dtype=np.int64)
    occ_frame, occ_pid, occ_box = _occurrences(data)
    lo = np.searchsorted(occ_pid, qpid, side="left")
    hi = np.searchsorted(occ_pid, qpid, side="right")
    has = gallery.count > 0
    per_query = np.full(len(data.queries), int(gallery.count.sum()))
    for queries in plan_blocks(per_query, budget):
        if cross_camera:  # group by camera: each frame's allowed queries form few consecutive runs
            queries = queries[np.argsort(qcam[queries], kind="stable")]
        b = len(queries)
        allowed = np.ones((b, num_g), dtype=bool)
        qf = qframe[queries]
        ok = qf >= 0
        allowed[np.flatnonzero(ok), qf[ok]] = False
        if cross_camera:
            allowed &= cams[None, :] != qcam[queries][:, None]
        gt_row = np.full((b, num_g), -1, dtype=np.int64)
        for j, q in enumerate(queries.tolist()):
            rows = np.arange(lo[q], hi[q])
            gt_row[j, occ_frame[rows]] = rows
        gt_row[~allowed] = -1
        count_gt = (gt_row >= 0).sum(axis=1)
        qi, g = np.nonzero(allowed & has[None, :])
        row = gt_row[qi, g]
        pos = row >= 0
        gt = np.zeros((len(qi), 4), dtype=np.int32)
        gt[pos] = occ_box[row[pos]]
        thr = relaxed_threshold(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1])
        yield PairBlock(
            queries=queries,
            count_gt=count_gt,
            pair_query=qi.astype(np.int64),
            pair_image=g.astype(np.int64),
            pair_rank=g.astype(np.int64),
            pair_positive=pos,
            pair_gt=gt,
            pair_thr=thr,
            pair_context=np.ones(len(qi), dtype=bool),
        )
