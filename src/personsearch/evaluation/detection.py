"""Detection AP and recall with the references' mutual-best-IoU matching (docs/evaluation.md).

Every gallery ground-truth box counts (labelled and unlabelled). A detection is a true positive when its
IoU with a ground truth box reaches 0.5, that box is its highest-IoU box and it is that box's highest-IoU
detection (``np.argmax`` first-index tie rule, on float32 IoUs as the reference stores them). AP follows
scikit-learn and is scaled by recall.
"""

from __future__ import annotations

import numpy as np

from personsearch.data.annotations import PersonSearchData
from personsearch.evaluation.ap import average_precision, reference_iou
from personsearch.evaluation.search import GalleryDetections


def _segment_argmax(values: np.ndarray, seg_starts: np.ndarray, seg_len: np.ndarray) -> np.ndarray:
    """``np.argmax`` (first maximum; a NaN wins) of each contiguous segment, as offsets in the segment."""
    owner = np.repeat(np.arange(len(seg_starts)), seg_len)
    pos = np.arange(len(values)) - np.repeat(seg_starts, seg_len)
    nan = np.isnan(values)
    filled = np.where(nan, -np.inf, values)
    seg_max = np.maximum.reduceat(filled, seg_starts)
    big = np.iinfo(np.int64).max
    first_max = np.minimum.reduceat(np.where(filled == seg_max[owner], pos, big), seg_starts)
    first_nan = np.minimum.reduceat(np.where(nan, pos, big), seg_starts)
    return np.where(first_nan < big, first_nan, first_max)


def evaluate_detection(data: PersonSearchData, gallery: GalleryDetections, iou_thresh: float = 0.5) -> dict:
    """``{"ap", "recall"}`` over the dataset gallery for the kept detections of ``gallery``."""
    gt_count = np.array([len(r.boxes) for r in data.gallery], dtype=np.int64)
    gt_boxes = (
        np.concatenate([r.boxes for r in data.gallery]).astype(np.int32)
        if len(data.gallery)
        else np.zeros((0, 4), np.int32)
    )
    gt_start = np.concatenate([[0], np.cumsum(gt_count)[:-1]]).astype(np.int64)
    count_gt = int(gt_count.sum())
    n_det = gallery.count
    imgs = np.flatnonzero((n_det > 0) & (gt_count > 0))
    m, n = gt_count[imgs], n_det[imgs]
    sizes = m * n
    total = int(sizes.sum())
    y_true = np.zeros(len(gallery.scores), dtype=bool)
    count_tp = 0
    if total:
        owner = np.repeat(np.arange(len(imgs)), sizes)
        local = np.arange(total) - np.repeat(np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
        gi = local // n[owner]  # gt index within the image (gt-major layout)
        dj = local % n[owner]  # detection index within the image
        gt_row = gt_start[imgs][owner] + gi
        det_row = gallery.start[imgs][owner] + dj
        iou = reference_iou(gt_boxes[gt_row], gallery.boxes[det_row], False, True).astype(np.float32)
        # each gt's best detection: segments of the gt-major layout
        gt_seg = np.concatenate([[0], np.cumsum(np.repeat(n, m))[:-1]])
        best_det = _segment_argmax(iou, gt_seg, np.repeat(n, m))
        gt_ord = np.repeat(np.arange(len(gt_seg)), np.repeat(n, m))
        # each detection's best gt: reorder det-major
        det_major = np.lexsort((gi, det_row))
        det_seg = np.concatenate([[0], np.cumsum(np.repeat(m, n))[:-1]])
        best_gt = _segment_argmax(iou[det_major], det_seg, np.repeat(m, n))
        det_ord = np.empty(total, dtype=np.int64)
        det_ord[det_major] = np.repeat(np.arange(len(det_seg)), np.repeat(m, n))
        tf = (iou >= np.float32(iou_thresh)) & (dj == best_det[gt_ord]) & (gi == best_gt[det_ord])
        count_tp = int(tf.sum())
        y_true[det_row[tf]] = True
    recall = count_tp / count_gt if count_gt else 0.0
    ap = average_precision(y_true, gallery.scores) * recall if len(gallery.scores) else 0.0
    return {"ap": float(ap), "recall": float(recall)}
