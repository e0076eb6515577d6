"""Average precision and IoU with the reference evaluators' exact arithmetic.

* :func:`average_precision` follows ``sklearn.metrics.average_precision_score`` (scikit-learn >= 0.19):
  ``AP = sum_k (R_k - R_{k-1}) * P_k`` over the *distinct* scores in descending order, so tied scores
  enter together at one threshold.
* :func:`reference_iou` reproduces the reference ``_compute_iou(a, b)`` bit for bit, including NumPy's
  scalar type promotion: the reference applies Python's ``max``/``min`` to NumPy scalars, so each
  intermediate keeps the type of the operand it came from (``float32`` detections, ``int32`` ground
  truth), and ``float32 * float32`` products are rounded to ``float32``. Integer-valued boxes give the
  exact IoU either way; the emulation matters only for fractional ``float32`` boxes at a threshold.
"""

from __future__ import annotations

import numpy as np


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """scikit-learn's ``average_precision_score`` for binary labels (ties grouped).

    Returns 0.0 when there is no positive label (the reference evaluators never ask sklearn then).
    """
    y_true = np.asarray(y_true).astype(bool).ravel()
    y_score = np.asarray(y_score).ravel()
    positives = int(y_true.sum())
    if positives == 0 or y_score.size == 0:
        return 0.0
    order = np.argsort(-y_score.astype(np.float64), kind="stable")
    s = y_score[order]
    t = y_true[order]
    tps = np.cumsum(t, dtype=np.float64)
    # the last index of each run of equal scores is one threshold
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tp_at = tps[last]
    precision = tp_at / (last + 1)
    recall_step = np.diff(np.r_[0.0, tp_at]) / positives
    return float(np.sum(recall_step * precision))


def _diff(hi: np.ndarray, lo: np.ndarray, hi_f32: np.ndarray, lo_f32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``hi - lo`` as the reference computes it: in float32 when both come from float32 operands, else
    exactly (int32 - int32) or in float64 (mixed). Returns the value and a float32-typed mask."""
    both = hi_f32 & lo_f32
    exact = hi - lo
    if np.any(both):
        rounded = (hi.astype(np.float32) - lo.astype(np.float32)).astype(np.float64)
        exact = np.where(both, rounded, exact)
    return exact, both


def _area(box: np.ndarray, f32: bool) -> np.ndarray:
    w = box[..., 2] - box[..., 0]
    h = box[..., 3] - box[..., 1]
    if not f32:
        return w * h
    b = box.astype(np.float32)
    return ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])).astype(np.float64)


def reference_iou(a: np.ndarray, b: np.ndarray, a_float32: bool, b_float32: bool) -> np.ndarray:
    """IoU of boxes ``a`` and ``b`` (``x1 y1 x2 y2``, broadcastable ``(..., 4)``) computed exactly like the
    reference ``_compute_iou(a, b)`` with NumPy scalars of type float32 (``*_float32``) or int32."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = np.broadcast_arrays(a, b)
    fa = np.full(a.shape[:-1], a_float32)
    fb = np.full(b.shape[:-1], b_float32)
    # Python max(u, v) returns v only if v > u; min(u, v) returns v only if v < u.
    take_b = [b[..., 0] > a[..., 0], b[..., 1] > a[..., 1], b[..., 2] < a[..., 2], b[..., 3] < a[..., 3]]
    coord = [np.where(tb, b[..., i], a[..., i]) for i, tb in enumerate(take_b)]
    is32 = [np.where(tb, fb, fa) for tb in take_b]
    dx, dx32 = _diff(coord[2], coord[0], is32[2], is32[0])
    dy, dy32 = _diff(coord[3], coord[1], is32[3], is32[1])
    pos_x = dx > 0
    pos_y = dy > 0
    inter = np.where(pos_x & pos_y, dx * dy, 0.0)
    both32 = pos_x & pos_y & dx32 & dy32
    if np.any(both32):
        rounded = (dx.astype(np.float32) * dy.astype(np.float32)).astype(np.float64)
        inter = np.where(both32, rounded, inter)
    union = _area(a, a_float32) + _area(b, b_float32) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def relaxed_threshold(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``min(0.5, w*h / ((w+10)*(h+10)))`` with int32 ``w, h`` as in the references (docs/evaluation.md)."""
    w = np.asarray(w, dtype=np.int64)
    h = np.asarray(h, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (w * h).astype(np.float64) / ((w + 10) * (h + 10)).astype(np.float64)
    return np.where(ratio < 0.5, ratio, 0.5)
