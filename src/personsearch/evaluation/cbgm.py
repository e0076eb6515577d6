"""Context Bipartite Graph Matching (CBGM, docs/evaluation.md), applied to a block's similarities in place.

For each query the ``k1`` highest-similarity gallery detections (``np.argsort(sims)[-k1:]`` over the
query's visited images in visiting order, as the reference) select images; in each selected image the
query image's first ``k2`` detections (the query box first) are matched to the image's detections by a
maximum-weight bipartite matching on dot products, and if the query box is matched, its partner's
similarity becomes the largest weight of the matching. The matching is found with the textbook
Kuhn-Munkres (vertex labelling) algorithm in the same traversal order as the reference's ``utils/km.py``
(smaller side as the label side, the gallery side on equal sizes; tolerance 1e-8), so that among several
optimal matchings the same one is chosen.
"""

from __future__ import annotations

import sys

import numpy as np

from personsearch.evaluation.search import BlockEngine

TOLERANCE = 1e-8


def kuhn_munkres(weights: np.ndarray) -> list[tuple[int, int]]:
    """Maximum-weight matching of a complete bipartite graph ``weights[x, y]`` (``x`` the smaller or equal
    side), every ``x`` matched. Returns ``(x, y)`` pairs in ``x`` order."""
    w = np.asarray(weights, dtype=np.float64)
    nx, ny = w.shape
    label_x = [float(v) for v in w.max(axis=1)] if ny else [0.0] * nx
    label_y = [0.0] * ny
    match_y: list[int | None] = [None] * ny
    rows = w.tolist()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * nx + 100))

    for start in range(nx):
        while True:
            seen_x = [False] * nx
            seen_y = [False] * ny
            slack = [float("inf")]

            def augment(i: int, seen_x=seen_x, seen_y=seen_y, slack=slack) -> bool:
                seen_x[i] = True
                for j in range(ny):
                    if seen_y[j]:
                        continue
                    gap = label_x[i] + label_y[j] - rows[i][j]
                    if abs(gap) < TOLERANCE:
                        seen_y[j] = True
                        owner = match_y[j]
                        if owner is None or augment(owner):
                            match_y[j] = i
                            return True
                    elif gap >= TOLERANCE:
                        slack[0] = min(slack[0], gap)
                return False

            if augment(start):
                break
            if slack[0] == float("inf"):  # cannot happen on a complete graph; avoid looping forever
                break
            for i in range(nx):
                if seen_x[i]:
                    label_x[i] -= slack[0]
            for j in range(ny):
                if seen_y[j]:
                    label_y[j] += slack[0]
    pairs = [(i, j) for j, i in enumerate(match_y) if i is not None]
    return sorted(pairs)


def matching_max(weights: np.ndarray) -> tuple[int | None, float]:
    """CBGM's matching on ``weights[query detection, gallery detection]``: the gallery detection matched to
    the query box (row 0), or None, and the largest matched weight (at least -100, as the reference)."""
    k, n = weights.shape
    # the smaller side carries the labels; on equal sizes the gallery side does
    pairs = kuhn_munkres(weights) if k < n else [(y, x) for x, y in kuhn_munkres(weights.T)]
    best = -100.0
    partner = None
    for a, b in pairs:
        best = max(best, float(weights[a, b]))
        if a == 0:
            partner = b
    return partner, best


class CbgmHook:
    """Callable run by :class:`BlockEngine` after the similarities of a block are computed."""

    def __init__(self, query_det_index: np.ndarray, query_det_features: np.ndarray, k1: int, k2: int):
        order = np.argsort(query_det_index, kind="stable")
        self.features = query_det_features[order]
        counts = np.bincount(query_det_index, minlength=int(query_det_index.max(initial=-1)) + 1)
        self.start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.count = counts
        self.k1 = k1
        self.k2 = k2

    def context(self, query: int) -> np.ndarray:
        n = min(self.k2, int(self.count[query])) if query < len(self.count) else 0
        s = int(self.start[query]) if n else 0
        return self.features[s : s + n]

    def __call__(self, engine: BlockEngine) -> None:
        block = engine.block
        gal = engine.gallery
        for local in range(len(block.queries)):
            pairs = engine.query_pairs(local)
            pairs = pairs[block.pair_context[pairs]]
            if pairs.size == 0:
                continue
            items = engine.pair_items(pairs)
            owner = np.repeat(pairs, engine.pair_n[pairs])
            top = np.argsort(engine.sims[items])[-self.k1 :]
            qfeats = self.context(int(block.queries[local]))
            if len(qfeats) == 0:
                continue
            for p in np.unique(owner[top]).tolist():
                img = int(block.pair_image[p])
                a, n = int(gal.start[img]), int(gal.count[img])
                weights = (qfeats[:, None, :] * gal.features[a : a + n][None, :, :]).sum(-1)
                partner, best = matching_max(weights)
                if partner is not None:
                    engine.sims[int(engine.pair_off[p]) + partner] = np.float32(best)
