"""A literal, loop-based transcription of the spec's evaluation pseudo-code (3.3, 3.4, 3.5, 3.8) with
scikit-learn's ``average_precision_score``: the slow reference the vectorised evaluator is checked against.
Also the spec's worked examples (section 4) on this reference and on the sklearn semantics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from personsearch.evaluation.cbgm import matching_max


def ref_iou(a, b):
    """Spec 3.2 with NumPy scalars, exactly as the references write it."""
    x1 = max(a[0], b[0])
    y1 = max(a[1], b[1])
    x2 = min(a[2], b[2])
    y2 = min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter * 1.0 / union


def ref_detection(gt_boxes, dets, det_thresh, iou_thresh=0.5):
    """Spec 3.3. ``gt_boxes[i]``: int32 (m, 4); ``dets[i]``: float32 (n, 5)."""
    y_true, y_score = [], []
    count_gt = count_tp = 0
    for gt, det in zip(gt_boxes, dets, strict=True):
        det = det[det[:, 4] >= det_thresh] if len(det) else det
        if len(det) == 0:
            count_gt += len(gt)
            continue
        ious = np.zeros((len(gt), len(det)), dtype=np.float32)
        for i in range(len(gt)):
            for j in range(len(det)):
                ious[i, j] = ref_iou(gt[i], det[j, :4])
        tf = ious >= iou_thresh
        for j in range(len(det)):
            best = np.argmax(ious[:, j])
            for i in range(len(gt)):
                if i != best:
                    tf[i, j] = False
        for i in range(len(gt)):
            best = np.argmax(ious[i, :])
            for j in range(len(det)):
                if j != best:
                    tf[i, j] = False
        for j in range(len(det)):
            y_score.append(det[j, 4])
            y_true.append(tf[:, j].any())
        count_tp += tf.sum()
        count_gt += len(gt)
    recall = count_tp / count_gt
    ap = average_precision_score(y_true, y_score) * recall if count_tp else 0.0
    return ap, recall


def brute_force_matching(weights):
    """Maximum-weight matching covering the smaller side; (row 0's partner or None, max matched weight)."""
    k, n = weights.shape
    best, best_pairs = -np.inf, None
    if k <= n:
        for cols in itertools.permutations(range(n), k):
            total = sum(float(weights[r, c]) for r, c in enumerate(cols))
            if total > best:
                best, best_pairs = total, list(enumerate(cols))
    else:
        for rows in itertools.permutations(range(k), n):
            total = sum(float(weights[r, c]) for c, r in enumerate(rows))
            if total > best:
                best, best_pairs = total, [(r, c) for c, r in enumerate(rows)]
    max_val = max(-100.0, max(float(weights[r, c]) for r, c in best_pairs))
    partner = next((c for r, c in best_pairs if r == 0), None)
    return partner, max_val


def _cbgm(name2sim, name_to_det_feat, qfeats, k1):
    sims = np.concatenate(list(name2sim.values())) if name2sim else np.zeros(0, np.float32)
    names = np.array([n for n, s in name2sim.items() for _ in range(len(s))])
    top = np.argsort(sims)[-k1:]
    for img in set(names[top].tolist()):
        sim = name2sim[img]
        feat_g = name_to_det_feat[img][1]
        weights = np.array([[(p * g).sum() for g in feat_g] for p in qfeats], dtype=np.float32)
        partner, max_val = matching_max(weights)
        if partner is not None:
            sim[partner] = max_val


def _label(name2sim, name_to_det_feat, name2gt_xyxy, count_gt, y_true, y_score):
    """Step 4 of spec 3.4/3.5: label each image's detections; returns count_tp."""
    count_tp = 0
    for name, sim in name2sim.items():
        det = name_to_det_feat[name][0]
        label = np.zeros(len(sim), dtype=np.int32)
        gt = name2gt_xyxy.get(name)
        if gt is not None:
            w, h = gt[2] - gt[0], gt[3] - gt[1]
            thr = min(0.5, (w * h * 1.0) / ((w + 10) * (h + 10)))
            order = np.argsort(sim)[::-1]
            sim = sim[order]
            det = det[order]
            for j, roi in enumerate(det[:, :4]):
                if ref_iou(roi, gt) >= thr:
                    label[j] = 1
                    count_tp += 1
                    break
        y_true.extend(list(label))
        y_score.extend(list(sim))
    return count_tp


def _finish(y_true, y_score, count_tp, count_gt):
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    ap = 0.0 if count_tp == 0 else average_precision_score(y_true, y_score) * count_tp / count_gt
    order = np.argsort(y_score)[::-1]
    y_true = y_true[order]
    return ap, [min(1, int(sum(y_true[:k]))) for k in (1, 5, 10)]


def _name_to_det_feat(names, dets, feats, det_thresh):
    out = {}
    for name, det, feat in zip(names, dets, feats, strict=True):
        if len(det) == 0:
            continue
        keep = det[:, 4] >= det_thresh
        if keep.any():
            out[name] = (det[keep], feat[keep])
    return out


def ref_search_cuhk(gallery_names, dets, feats, query_feats, protocol, det_thresh=0.5, full_set=False, cbgm=None):
    """Spec 3.4 with SeqNet dedupe and OIM full set. ``protocol[i] = (query_name, [(name, xywh), ...])``,
    ``xywh`` an int32 array of 4 values or of none. ``cbgm = (query_ctx_feats list, k1, k2)``."""
    name_to_det_feat = _name_to_det_feat(gallery_names, dets, feats, det_thresh)
    aps, accs = [], []
    for i, (q_name, entries) in enumerate(protocol):
        q = query_feats[i].ravel()
        tested = {q_name}
        count_gt = 0
        y_true, y_score = [], []
        name2sim, name2gt = {}, {}
        for g_name, gt in entries:
            gt = np.asarray(gt).astype(np.int32)
            count_gt += gt.size > 0
            if g_name not in name_to_det_feat:
                continue
            feat = name_to_det_feat[g_name][1]
            sim = feat.reshape(len(feat), -1) @ q
            if g_name in name2sim:
                continue
            name2sim[g_name] = sim
            name2gt[g_name] = gt
            tested.add(g_name)
        if full_set:
            for g_name in gallery_names:
                if g_name in tested or g_name not in name_to_det_feat:
                    continue
                _det, feat = name_to_det_feat[g_name]
                sim = feat @ q
                y_true.extend([0] * len(sim))
                y_score.extend(list(sim))
        if cbgm is not None:
            ctx, k1, k2 = cbgm
            _cbgm(name2sim, name_to_det_feat, ctx[i][:k2], k1)
        xyxy = {}
        for name, gt in name2gt.items():
            if gt.size > 0:
                box = gt.copy()
                box[2:] += box[:2]
                xyxy[name] = box
        count_tp = _label(name2sim, name_to_det_feat, xyxy, count_gt, y_true, y_score)
        ap, acc = _finish(y_true, y_score, count_tp, count_gt)
        aps.append(ap)
        accs.append(acc)
    return float(np.mean(aps)), np.mean(accs, axis=0), aps


def ref_search_prw(gallery, dets, feats, queries, query_feats, det_thresh=0.5, ignore_cam_id=True, cbgm=None):
    """Spec 3.5. ``gallery[i] = (name, boxes int32 xyxy, pids, cam)``; ``queries[i] = (name, pid, cam)``."""
    names = [g[0] for g in gallery]
    name_to_det_feat = _name_to_det_feat(names, dets, feats, det_thresh)
    aps, accs = [], []
    for i, (qn, qpid, qcam) in enumerate(queries):
        q = query_feats[i].ravel()
        query_gts = {name: boxes[pids == qpid] for name, boxes, pids, _ in gallery if qpid in pids and name != qn}
        members = [g for g in gallery if g[0] != qn and (ignore_cam_id or g[3] != qcam)]
        count_gt = 0
        name2sim = {}
        for name, _, _, _ in members:
            count_gt += name in query_gts
            if name not in name_to_det_feat:
                continue
            name2sim[name] = name_to_det_feat[name][1] @ q
        if cbgm is not None:
            ctx, k1, k2 = cbgm
            _cbgm(name2sim, name_to_det_feat, ctx[i][:k2], k1)
        xyxy = {name: query_gts[name].ravel()[:4] for name in name2sim if name in query_gts}
        y_true, y_score = [], []
        count_tp = _label(name2sim, name_to_det_feat, xyxy, count_gt, y_true, y_score)
        ap, acc = _finish(y_true, y_score, count_tp, count_gt)
        aps.append(ap)
        accs.append(acc)
    return float(np.mean(aps)), np.mean(accs, axis=0), aps


# ---------------------------------------------------------------------------------------------------
# the spec's worked examples (section 4) on the reference transcription


def test_spec_4_1_reference_transcription():
    d = np.float32
    det = {
        "G1": np.array([[102, 52, 141, 148, 0.9], [300, 40, 340, 140, 0.9]], d),
        "G2": np.array([[5, 5, 20, 32, 0.9]], d),
        "G3": np.array([[200, 30, 250, 150, 0.3]], d),
        "G4": np.array([[0, 0, 10, 10, 0.9], [20, 20, 30, 30, 0.9]], d),
        "G5": np.array([[0, 0, 10, 10, 0.9]], d),
    }
    sims = {"G1": [0.62, 0.70], "G2": [0.55], "G3": [0.1], "G4": [0.80, 0.10], "G5": [0.40]}
    names = list(det)
    feats = [np.array([[s, 0.0] for s in sims[n]], d) for n in names]
    protocol = [
        ("Q", [("G1", [100, 50, 40, 100]), ("G2", [10, 10, 8, 20]), ("G3", [200, 30, 50, 120]), ("G4", []), ("G5", [])])
    ]
    m_ap, acc, _ = ref_search_cuhk(names, [det[n] for n in names], feats, np.array([[1.0, 0.0]], d), protocol)
    assert m_ap == pytest.approx(0.277777777, abs=1e-8)
    assert acc.tolist() == [0, 1, 1]


def test_spec_4_2_reference_transcription():
    gt = np.array([[0, 0, 10, 20], [30, 0, 40, 20]], np.int32)
    det = np.array(
        [[1, 0, 11, 20, 0.9], [0, 1, 10, 19, 0.8], [29, 0, 41, 22, 0.6], [100, 100, 110, 120, 0.55]], np.float32
    )
    ap, recall = ref_detection([gt], [det], 0.5)
    assert recall == 1.0
    assert ap == pytest.approx(0.5833333, abs=1e-6)


def test_kuhn_munkres_finds_the_optimum():
    rng = np.random.default_rng(0)
    for _ in range(200):
        k, n = int(rng.integers(1, 5)), int(rng.integers(1, 6))
        weights = rng.standard_normal((k, n)).astype(np.float32)
        assert matching_max(weights) == brute_force_matching(weights)


def test_spec_3_6_tie_rule():
    assert average_precision_score([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert average_precision_score([0, 1, 1, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(2 / 3)
