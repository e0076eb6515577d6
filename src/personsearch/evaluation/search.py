"""The vectorised person-search engine shared by the CUHK-SYSU and PRW protocols.

A protocol is turned into *pairs* ``(query, gallery image)``: the images the reference evaluator visits
for a query (docs/evaluation.md), restricted to images that kept at least one detection, with the pair's rank in
the reference visiting order and, for images that contain the query person, the ground-truth box and the
relaxed IoU threshold. Queries are processed in blocks; inside a block the work is reused as follows:

* similarities are computed once per gallery image for all the block's queries that visit it, with one
  batched matrix-vector product per image. The batched product runs the very BLAS kernel the reference's
  per-image ``feat_g @ feat_q`` runs, so every float32 similarity is bit-identical to the reference's;
* the true positive of each positive image is the highest-similarity detection passing the threshold;
  only when several passing detections tie for the maximum is the reference's per-image argsort replayed;
* AP (scikit-learn semantics, ties grouped) needs, for each true positive, the number of items and of true
  positives scoring at least as high; these come from one sort of order-preserving integer keys;
* top-k needs no sort unless the best true positive ties with other items across position k; then the
  query's ``y_score`` is rebuilt in the reference order and ``np.argsort(y_score)[::-1]`` decides, as in
  the reference (docs/evaluation.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from personsearch.evaluation.ap import reference_iou

TOPK = (1, 5, 10)
DEFAULT_BLOCK_ITEMS = 8_000_000


@dataclass
class GalleryDetections:
    """Detections kept by the score threshold, grouped by dataset gallery image (file order inside)."""

    boxes: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    features: np.ndarray  # (K, D) float32, C-contiguous
    start: np.ndarray  # (G,) int64 first row of each gallery image
    count: np.ndarray  # (G,) int64 number of kept rows of each gallery image
    names: list[str]  # dataset gallery names


def group_detections(
    num_images: int,
    image_of_det: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    features: np.ndarray,
    det_thresh: float,
    names: list[str],
) -> GalleryDetections:
    """Keep detections with ``score >= det_thresh`` (compared in float32, as the reference does) and
    group them by image, keeping file order within an image."""
    keep = np.flatnonzero(scores >= np.float32(det_thresh))
    order = keep[np.argsort(image_of_det[keep], kind="stable")]
    img = image_of_det[order]
    count = np.bincount(img, minlength=num_images).astype(np.int64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return GalleryDetections(
        boxes=np.ascontiguousarray(boxes[order]),
        scores=np.ascontiguousarray(scores[order]),
        features=np.ascontiguousarray(features[order]),
        start=start,
        count=count,
        names=names,
    )


@dataclass
class PairBlock:
    """The pairs of one block of queries (see the module docstring)."""

    queries: np.ndarray  # (B,) global query indices
    count_gt: np.ndarray  # (B,) positive entries / frames per query
    pair_query: np.ndarray  # (P,) local query index 0..B-1
    pair_image: np.ndarray  # (P,) gallery image index (kept detections only)
    pair_rank: np.ndarray  # (P,) visiting order of the pair within its query
    pair_positive: np.ndarray  # (P,) the image holds the query person (first entry's box)
    pair_gt: np.ndarray  # (P, 4) int32 x1 y1 x2 y2 (zeros where not positive)
    pair_thr: np.ndarray  # (P,) float64 relaxed IoU threshold
    pair_context: np.ndarray  # (P,) part of name2sim, i.e. seen by CBGM (full-set extras are not)


@dataclass
class QueryOutcome:
    """Per-query results of a block."""

    ap: np.ndarray  # (B,)
    acc: np.ndarray  # (B, len(TOPK))
    count_tp: np.ndarray  # (B,)
    details: list[dict] = field(default_factory=list)


def _ranges(offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(o, o + n)`` for each (o, n)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.repeat(offsets - starts, lengths) + np.arange(total)


def _sort_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of float32 values (``-0.0`` and ``0.0`` share a key)."""
    bits = (values.astype(np.float32) + np.float32(0.0)).view(np.uint32)
    negative = (bits >> np.uint32(31)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint32(0x80000000))


class BlockEngine:
    """Evaluates one :class:`PairBlock` (similarities, true positives, AP, top-k)."""

    def __init__(
        self,
        gallery: GalleryDetections,
        query_features: np.ndarray,
        context_hook: Callable[[BlockEngine], None] | None = None,
        want_details: bool = False,
        detail_k: int = 10,
    ) -> None:
        self.gallery = gallery
        self.query_features = query_features
        self.context_hook = context_hook
        self.want_details = want_details
        self.detail_k = detail_k

    # -- similarities -------------------------------------------------------------------------------
    def _similarities(self, block: PairBlock) -> None:
        g = self.gallery
        n = g.count[block.pair_image]
        if len(n) == 0:  # no (query, image) pair has a kept detection
            self.pair_off, self.pair_n, self.sims = np.zeros(0, np.int64), n, np.zeros(0, np.float32)
            return
        corder = np.lexsort((block.pair_query, block.pair_image))
        n_c = n[corder]
        off_c = np.concatenate([[0], np.cumsum(n_c)[:-1]]).astype(np.int64)
        pair_off = np.empty(len(n), dtype=np.int64)
        pair_off[corder] = off_c
        sims = np.empty(int(n.sum()), dtype=np.float32)
        img_c = block.pair_image[corder]
        local_q = block.pair_query[corder]
        qblock = np.ascontiguousarray(self.query_features[block.queries])
        cuts = np.flatnonzero(img_c[1:] != img_c[:-1]) + 1
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts, [len(img_c)]])
        images = img_c[starts]
        # runs of consecutive block queries need no gather (a strided view feeds the same gemv)
        breaks = np.ones(len(img_c), dtype=bool)
        breaks[1:] = (local_q[1:] != local_q[:-1] + 1) | (img_c[1:] != img_c[:-1])
        runs = np.add.reduceat(breaks.astype(np.int64), starts) if len(starts) else starts
        feats = g.features
        for s, e, a, k, o, r in zip(
            starts.tolist(),
            ends.tolist(),
            g.start[images].tolist(),
            g.count[images].tolist(),
            off_c[starts].tolist(),
            runs.tolist(),
            strict=True,
        ):
            # one gemv per query, the same kernel as the reference's per-image feat_g @ feat_q
            f = feats[a : a + k]
            if r > 4:
                out = sims[o : o + (e - s) * k].reshape(e - s, k, 1)
                np.matmul(f, qblock[local_q[s:e]][:, :, None], out=out)
                continue
            run_starts = [*(np.flatnonzero(breaks[s:e]) + s).tolist(), e]
            for rs, re_ in itertools.pairwise(run_starts):
                q0 = int(local_q[rs])
                out = sims[o + (rs - s) * k : o + (re_ - s) * k].reshape(re_ - rs, k, 1)
                np.matmul(f, qblock[q0 : q0 + re_ - rs][:, :, None], out=out)
        self.pair_off = pair_off
        self.pair_n = n
        self.sims = sims

    def pair_items(self, pairs: np.ndarray) -> np.ndarray:
        """Item positions (into ``self.sims``) of the given pairs, pair after pair, file order inside."""
        return _ranges(self.pair_off[pairs], self.pair_n[pairs])

    def det_index(self, pairs: np.ndarray) -> np.ndarray:
        """Kept-detection rows of the items of the given pairs (same order as :meth:`pair_items`)."""
        return _ranges(self.gallery.start[self.block.pair_image[pairs]], self.pair_n[pairs])

    def query_pairs(self, local_query: int) -> np.ndarray:
        """The pairs of one query in the reference visiting order."""
        a, b = self._qbounds[local_query], self._qbounds[local_query + 1]
        return self._qorder[a:b]

    # -- labels ------------------------------------------------------------------------------------
    def _true_positives(self) -> np.ndarray:
        """Item positions of the true positives: per positive pair, the first detection in descending
        similarity order whose IoU with the ground truth reaches the relaxed threshold."""
        block = self.block
        pos = np.flatnonzero(block.pair_positive)
        if pos.size == 0:
            return np.zeros(0, dtype=np.int64)
        lengths = self.pair_n[pos]
        items = self.pair_items(pos)
        dets = self.det_index(pos)
        owner = np.repeat(np.arange(len(pos)), lengths)
        iou = reference_iou(self.gallery.boxes[dets], block.pair_gt[pos][owner], True, False)
        passing = iou >= block.pair_thr[pos][owner]
        s = self.sims[items]
        seg = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        masked = np.where(passing, s, np.float32(-np.inf))
        best = np.maximum.reduceat(masked, seg)
        has_pass = np.add.reduceat(passing.astype(np.int64), seg) > 0
        is_best = passing & (s == best[owner])
        n_best = np.add.reduceat(is_best.astype(np.int64), seg)
        tps = items[is_best & (n_best[owner] == 1)].tolist()
        for p in np.flatnonzero(has_pass & (n_best > 1)).tolist():
            seg_items = items[seg[p] : seg[p] + lengths[p]]
            order = np.argsort(self.sims[seg_items])[::-1]
            first = np.flatnonzero(passing[seg[p] : seg[p] + lengths[p]][order])[0]
            tps.append(int(seg_items[order[first]]))
        return np.sort(np.asarray(tps, dtype=np.int64))

    # -- reference order ---------------------------------------------------------------------------
    def reference_items(self, local_query: int, labels: np.ndarray) -> np.ndarray:
        """The query's items in the order of the reference's ``y_score`` list (positive images sorted by
        descending similarity, others in file order)."""
        pairs = self.query_pairs(local_query)
        parts = []
        for p in pairs.tolist():
            o, n = int(self.pair_off[p]), int(self.pair_n[p])
            seg = np.arange(o, o + n)
            if self.block.pair_positive[p]:
                seg = seg[np.argsort(self.sims[seg])[::-1]]
            parts.append(seg)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _literal_ranking(self, local_query: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        items = self.reference_items(local_query, labels)
        order = np.argsort(self.sims[items])[::-1]
        return items[order], labels[items[order]]

    # -- main --------------------------------------------------------------------------------------
    def run(self, block: PairBlock) -> QueryOutcome:
        self.block = block
        nq = len(block.queries)
        self._qorder = np.lexsort((block.pair_rank, block.pair_query))
        self._qbounds = np.searchsorted(block.pair_query[self._qorder], np.arange(nq + 1))
        self._similarities(block)
        if self.context_hook is not None:
            self.context_hook(self)
        tp_items = self._true_positives()
        labels = np.zeros(len(self.sims), dtype=bool)
        labels[tp_items] = True
        by_off = np.argsort(self.pair_off)
        off_sorted = self.pair_off[by_off]
        query_sorted = block.pair_query[by_off]

        def query_of(items: np.ndarray) -> np.ndarray:
            return query_sorted[np.searchsorted(off_sorted, items, side="right") - 1]

        tp_q = query_of(tp_items).astype(np.int64)
        count_tp = np.bincount(tp_q, minlength=nq)
        has_tp = count_tp > 0
        # items below the query's lowest true positive never matter for AP or top-k
        floor = np.full(nq, np.inf, dtype=np.float32)
        np.minimum.at(floor, tp_q, self.sims[tp_items])
        floor_items = np.repeat(floor[query_sorted], self.pair_n[by_off])
        cand = np.flatnonzero(self.sims >= floor_items)
        del floor_items
        cand_q = query_of(cand).astype(np.uint64)
        cand_keys = (cand_q << np.uint64(32)) | _sort_keys(self.sims[cand]).astype(np.uint64)
        cand_keys.sort()
        tp_keys = (tp_q.astype(np.uint64) << np.uint64(32)) | _sort_keys(self.sims[tp_items]).astype(np.uint64)
        tp_sorted = np.sort(tp_keys)
        q_end = (tp_q.astype(np.uint64) + np.uint64(1)) << np.uint64(32)
        n_ge = np.searchsorted(cand_keys, q_end) - np.searchsorted(cand_keys, tp_keys)
        tp_ge = np.searchsorted(tp_sorted, q_end) - np.searchsorted(tp_sorted, tp_keys)
        sums = np.bincount(tp_q, weights=tp_ge / n_ge, minlength=nq)
        with np.errstate(divide="ignore", invalid="ignore"):
            ap = np.where(has_tp & (block.count_gt > 0), sums / np.maximum(block.count_gt, 1), 0.0)
        self._query_sorted = (off_sorted, by_off)

        acc = np.zeros((nq, len(TOPK)))
        qs = np.flatnonzero(has_tp)
        if qs.size:
            last_of_q = np.searchsorted(tp_sorted, (qs.astype(np.uint64) + np.uint64(1)) << np.uint64(32)) - 1
            best = tp_sorted[last_of_q]
            q_hi = (qs.astype(np.uint64) + np.uint64(1)) << np.uint64(32)
            above = np.searchsorted(cand_keys, q_hi) - np.searchsorted(cand_keys, best, side="right")
            equal = np.searchsorted(cand_keys, best, side="right") - np.searchsorted(cand_keys, best)
            tp_equal = np.searchsorted(tp_sorted, best, side="right") - np.searchsorted(tp_sorted, best)
            for c, k in enumerate(TOPK):
                sure = (above < k) & ((above + equal <= k) | (tp_equal == equal))
                acc[qs, c] = sure
                unsure = (above < k) & (above + equal > k) & (tp_equal < equal)
                for j in np.flatnonzero(unsure).tolist():
                    _, ranked = self._literal_ranking(int(qs[j]), labels)
                    acc[qs[j], c] = float(ranked[:k].any())
        outcome = QueryOutcome(ap=ap, acc=acc, count_tp=count_tp)
        if self.want_details:
            outcome.details = [self._detail(q, labels, float(ap[q])) for q in range(nq)]
        return outcome

    def _detail(self, local_query: int, labels: np.ndarray, ap: float) -> dict:
        off_sorted, by_off = self._query_sorted
        ranked_items, ranked_labels = self._literal_ranking(local_query, labels)
        top = ranked_items[: self.detail_k]
        rows = []
        for item, label in zip(top.tolist(), ranked_labels[: self.detail_k].tolist(), strict=True):
            pair = int(by_off[np.searchsorted(off_sorted, item, side="right") - 1])
            img = int(self.block.pair_image[pair])
            det = int(self.gallery.start[img]) + item - int(self.pair_off[pair])
            rows.append(
                {
                    "image": self.gallery.names[img],
                    "box": [float(v) for v in self.gallery.boxes[det]],
                    "similarity": float(self.sims[item]),
                    "match": bool(label),
                }
            )
        return {"query": int(self.block.queries[local_query]), "ap": ap, "top": rows}


def plan_blocks(items_per_query: np.ndarray, budget: int = DEFAULT_BLOCK_ITEMS) -> list[np.ndarray]:
    """Split query indices into consecutive blocks of about ``budget`` items each."""
    blocks = []
    start = 0
    total = 0
    for q, n in enumerate(items_per_query.tolist()):
        if q > start and total + n > budget:
            blocks.append(np.arange(start, q))
            start, total = q, 0
        total += n
    if start < len(items_per_query):
        blocks.append(np.arange(start, len(items_per_query)))
    return blocks
