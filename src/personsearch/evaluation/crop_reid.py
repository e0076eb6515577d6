"""Re-ID alone, without a detector: the crop-level protocol on ground-truth boxes (``docs/dkd.md``).

Every query's ground-truth box against every ground-truth box of the gallery images except those of the
query's own image; positives = same identity; unlabelled boxes are distractors; mAP (mean of the average
precisions of the queries with at least one positive) and top-1. Used for the teacher alone and, with the
same code, for a person search model's own embeddings of the same boxes (``test --gt-reid``), which
separates the embedding quality from the detector's.
"""

from __future__ import annotations

import numpy as np
import torch

from personsearch.data.annotations import UNLABELED
from personsearch.evaluation.ap import average_precision


def crop_reid_metrics(
    query_feats: torch.Tensor,
    query_pids: np.ndarray,
    query_images: list[str],
    gallery_feats: torch.Tensor,
    gallery_pids: np.ndarray,
    gallery_images: list[str],
) -> dict[str, float]:
    """mAP and top-1 of the crop-level protocol (see the module docstring)."""
    sims = (query_feats @ gallery_feats.t()).numpy()
    gallery_images_arr = np.array(gallery_images)
    aps, top1 = [], []
    for q in range(len(query_pids)):
        keep = gallery_images_arr != query_images[q]
        truth = (gallery_pids[keep] == query_pids[q]) & (gallery_pids[keep] != UNLABELED)
        if not truth.any():
            continue
        scores = sims[q][keep]
        aps.append(average_precision(truth, scores))
        top1.append(float(truth[int(np.argmax(scores))]))
    if not aps:
        return {"mAP": 0.0, "top1": 0.0, "queries": 0}
    return {"mAP": float(np.mean(aps)), "top1": float(np.mean(top1)), "queries": len(aps)}
