"""The vectorised evaluator against the literal reference transcription (tests/test_eval_reference.py), on
randomised data with ties, misses, empty images, repeated entries, the query image in its own gallery,
the same pid twice in a frame; plus the spec's worked examples and the AP tie semantics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from personsearch.data.annotations import (
    UNLABELED,
    GalleryProtocol,
    ImageRecord,
    PersonSearchData,
    QueryRecord,
)
from personsearch.evaluation import evaluate, make_results
from personsearch.evaluation.ap import average_precision, reference_iou
from test_eval_reference import ref_detection, ref_search_cuhk, ref_search_prw

F32 = np.float32


# ---------------------------------------------------------------------------------------------------
# random worlds


def _boxes(rng, k, small=False):
    w = rng.integers(4, 20 if small else 80, k)
    h = rng.integers(4, 30 if small else 160, k)
    x = rng.integers(0, 300, k)
    y = rng.integers(0, 200, k)
    return np.stack([x, y, x + w, y + h], 1).astype(np.int32)


def _features(rng, n, dim, quantised):
    if quantised:  # few distinct values: exact ties in the dot products
        return (rng.integers(-2, 3, (n, dim)) / 4).astype(F32)
    f = rng.standard_normal((n, dim)).astype(F32)
    return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(F32)


def _detections(rng, gt, dim, quantised, fractional):
    """Detections of one image: jittered ground truth (some missed, some doubled) plus clutter."""
    rows = []
    for box in gt:
        if rng.random() < 0.2:
            continue
        for _ in range(1 + (rng.random() < 0.2)):
            jitter = rng.normal(0, 3, 4) if fractional else rng.integers(-4, 5, 4)
            rows.append(box + jitter)
        if rng.random() < 0.1:  # expanded by 5 px on each side: IoU exactly the relaxed threshold
            rows.append(box + np.array([-5, -5, 5, 5]))
    for _ in range(rng.integers(0, 3)):
        rows.append(_boxes(rng, 1)[0])
    if not rows:
        return np.zeros((0, 4), F32), np.zeros(0, F32), np.zeros((0, dim), F32)
    boxes = np.array(rows, dtype=F32)
    scores = (
        rng.choice(np.array([0.2, 0.5, 0.7, 0.9, 0.95], F32), len(rows))
        if quantised
        else rng.random(len(rows)).astype(F32)
    )
    return boxes, scores, _features(rng, len(rows), dim, quantised)


def _results_for(rng, names, gts, query_names, dim, quantised, fractional, drop_images=0.1, cbgm=False):
    det_image, boxes, scores, feats, listed = [], [], [], [], []
    for gt in gts:
        keep = rng.random() >= drop_images
        b, s, f = _detections(rng, gt, dim, quantised, fractional)
        if not keep:
            continue
        listed_index = len(listed)
        listed.append(len(listed))
        det_image.extend([listed_index] * len(b))
        boxes.append(b)
        scores.append(s)
        feats.append(f)
    kept_names = [n for n, gt in zip(names, gts, strict=True)]  # placeholder for order
    del kept_names
    order = rng.permutation(len(det_image)) if det_image else np.zeros(0, int)
    # keep file order within an image: stable sort by image after shuffling images' interleaving
    det_image = np.asarray(det_image, dtype=np.int64)[order]
    boxes = np.concatenate(boxes)[order] if boxes else np.zeros((0, 4), F32)
    scores = np.concatenate(scores)[order] if scores else np.zeros(0, F32)
    feats = np.concatenate(feats)[order] if feats else np.zeros((0, dim), F32)
    return det_image, boxes, scores, feats, listed


def _split_per_image(num_images, image_of_det, boxes, scores, feats):
    dets, fs = [], []
    for i in range(num_images):
        rows = np.flatnonzero(image_of_det == i)
        dets.append(np.concatenate([boxes[rows], scores[rows, None]], 1).astype(F32))
        fs.append(feats[rows])
    return dets, fs


def _query_context(rng, n_queries, dim, quantised):
    index, boxes, scores, feats = [], [], [], []
    for q in range(n_queries):
        n = int(rng.integers(1, 5))
        index.extend([q] * n)
        boxes.append(_boxes(rng, n).astype(F32))
        scores.append(np.sort(rng.random(n).astype(F32))[::-1])
        feats.append(_features(rng, n, dim, quantised))
    return (np.array(index), np.concatenate(boxes), np.concatenate(scores), np.concatenate(feats))


def cuhk_world(seed, quantised=True, fractional=False, n_images=30, n_queries=25, size=8, dim=6):
    rng = np.random.default_rng(seed)
    names = [f"s{i}.jpg" for i in rng.permutation(n_images * 3)[:n_images]]
    gts = [_boxes(rng, int(rng.integers(1, 5)), small=rng.random() < 0.3) for _ in range(n_images)]
    protocol_rows, query_names, qboxes = [], [], []
    for _ in range(n_queries):
        qi = int(rng.integers(n_images))
        query_names.append(names[qi])
        qbox = gts[qi][0]
        qboxes.append([qbox[0], qbox[1], qbox[2] - qbox[0], qbox[3] - qbox[1]])
        n_pos = int(rng.integers(1, 4))
        pos_imgs = rng.choice(n_images, n_pos, replace=False).tolist()
        entries = []
        for g in pos_imgs:
            box = gts[g][rng.integers(len(gts[g]))]
            entries.append((g, [box[0], box[1], box[2] - box[0], box[3] - box[1]]))
        if rng.random() < 0.3:  # repeated image, maybe with another box
            g, box = entries[0]
            other = gts[g][rng.integers(len(gts[g]))]
            entries.append((g, [other[0], other[1], other[2] - other[0], other[3] - other[1]]))
        if rng.random() < 0.2:  # the query's own image as a positive
            entries.insert(0, (qi, qboxes[-1]))
        negatives = [g for g in rng.permutation(n_images).tolist() if g not in pos_imgs]
        while len(entries) < size:
            entries.append((negatives.pop(), []))
        if rng.random() < 0.1:  # a repeated negative image
            entries.append((entries[-1][0], []))
        protocol_rows.append(entries)
    width = max(len(r) for r in protocol_rows)
    entries_arr = np.full((n_queries, width), -1, np.int32)
    positive = np.zeros((n_queries, width), bool)
    dense = np.zeros((n_queries, width, 4), np.int32)
    for q, row in enumerate(protocol_rows):
        for k, (g, box) in enumerate(row):
            entries_arr[q, k] = g
            if len(box):
                positive[q, k] = True
                dense[q, k] = box
    protocol = GalleryProtocol.from_dense(
        size, names, query_names, np.array(qboxes, np.int32), entries_arr, positive, dense
    )
    gallery = [ImageRecord(n, Path(n), g, np.full(len(g), UNLABELED)) for n, g in zip(names, gts, strict=True)]
    queries = [
        QueryRecord(n, Path(n), np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]]), q + 1)
        for q, (n, b) in enumerate(zip(query_names, qboxes, strict=True))
    ]
    data = PersonSearchData("cuhk-sysu", Path("."), [], gallery, queries)
    det_image, boxes, scores, feats, listed = _results_for(rng, names, gts, query_names, dim, quantised, fractional)
    qfeats = _features(rng, n_queries, dim, quantised)
    ctx = _query_context(rng, n_queries, dim, quantised)
    results = make_results([names[i] for i in listed], det_image, boxes, scores, feats, query_names, qfeats, *ctx)
    full_dets, full_feats = _split_per_image(
        n_images, np.asarray(listed)[det_image] if len(det_image) else det_image, boxes, scores, feats
    )
    ref_protocol = [
        (query_names[q], [(names[g], np.array(b, np.int32)) for g, b in row]) for q, row in enumerate(protocol_rows)
    ]
    ctx_feats = [ctx[3][ctx[0] == q] for q in range(n_queries)]
    return data, protocol, results, (names, full_dets, full_feats, qfeats, ref_protocol, gts, ctx_feats)


def prw_world(seed, quantised=True, fractional=False, n_frames=40, n_people=8, n_queries=20, dim=6):
    rng = np.random.default_rng(seed)
    names = [f"c{rng.integers(1, 4)}s1_{i:06d}.jpg" for i in range(n_frames)]
    gallery, gts, pid_lists = [], [], []
    for name in names:
        k = int(rng.integers(1, 5))
        boxes = _boxes(rng, k, small=rng.random() < 0.3)
        pids = rng.integers(1, n_people + 1, k)
        pids[rng.random(k) < 0.2] = UNLABELED
        gallery.append(ImageRecord(name, Path(name), boxes, pids, int(name[1])))
        gts.append(boxes)
        pid_lists.append(pids)
    queries = []
    for _ in range(n_queries):
        while True:
            f = int(rng.integers(n_frames))
            labeled = np.flatnonzero(pid_lists[f] != UNLABELED)
            if labeled.size:
                break
        j = int(rng.choice(labeled))
        box = gts[f][j] + rng.integers(-3, 4, 4)
        queries.append(
            QueryRecord(names[f], Path(names[f]), np.clip(box, 0, None), int(pid_lists[f][j]), int(names[f][1]))
        )
    data = PersonSearchData("prw", Path("."), [], gallery, queries)
    det_image, boxes, scores, feats, listed = _results_for(rng, names, gts, None, dim, quantised, fractional)
    qfeats = _features(rng, n_queries, dim, quantised)
    ctx = _query_context(rng, n_queries, dim, quantised)
    results = make_results(
        [names[i] for i in listed], det_image, boxes, scores, feats, [q.name for q in queries], qfeats, *ctx
    )
    full_dets, full_feats = _split_per_image(
        n_frames, np.asarray(listed)[det_image] if len(det_image) else det_image, boxes, scores, feats
    )
    ref_gallery = [(r.name, r.boxes, r.pids, r.cam_id) for r in gallery]
    ref_queries = [(q.name, q.pid, q.cam_id) for q in queries]
    ctx_feats = [ctx[3][ctx[0] == q] for q in range(n_queries)]
    return data, results, (ref_gallery, full_dets, full_feats, ref_queries, qfeats, gts, ctx_feats)


def _check_search(ours, ref):
    m_ap, acc, _ = ref
    assert ours["search"]["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert [ours["search"]["top1"], ours["search"]["top5"], ours["search"]["top10"]] == pytest.approx(
        acc.tolist(), abs=1e-12
    )


# ---------------------------------------------------------------------------------------------------
# AP semantics


def test_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        y = rng.random(n) < 0.3
        if not y.any():
            y[rng.integers(n)] = True
        s = rng.integers(0, 6, n).astype(F32) / 5  # many ties
        if rng.random() < 0.3:
            s[rng.random(n) < 0.3] = F32(-0.0)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_spec_ap_examples():
    assert average_precision(np.array([1, 0]), np.array([0.5, 0.5], F32)) == pytest.approx(0.5)
    assert average_precision(np.array([0, 1, 1, 0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(2 / 3)


def test_reference_iou_matches_scalar_arithmetic():
    rng = np.random.default_rng(1)
    dets = (rng.random((400, 4)) * 60).astype(F32)
    dets[:, 2:] += dets[:, :2]
    gt = np.array([10, 12, 40, 70], np.int32)
    ours = reference_iou(dets, gt, True, False)
    theirs = [float((lambda a, b: __import__("test_eval_reference").ref_iou(a, b))(d, gt)) for d in dets]
    assert np.array_equal(ours, np.array(theirs))
    ours_det = reference_iou(gt, dets, False, True).astype(F32)
    from test_eval_reference import ref_iou

    theirs_det = np.array([ref_iou(gt, d) for d in dets], dtype=F32)
    assert np.array_equal(ours_det, theirs_det)


# ---------------------------------------------------------------------------------------------------
# worked examples through the public API


def test_spec_4_1_cuhk_example():
    names = ["G1", "G2", "G3", "G4", "G5", "Q"]
    gts = [
        np.array([[100, 50, 140, 150]]),
        np.array([[10, 10, 18, 30]]),
        np.array([[200, 30, 250, 150]]),
        np.array([[0, 0, 10, 10]]),
        np.array([[0, 0, 10, 10]]),
        np.array([[0, 0, 10, 10]]),
    ]
    gallery = [ImageRecord(n, Path(n), g, [UNLABELED]) for n, g in zip(names, gts, strict=True)]
    data = PersonSearchData(
        "cuhk-sysu",
        Path("."),
        [],
        gallery,
        [QueryRecord("Q", Path("Q"), [0, 0, 10, 10], 1), QueryRecord("Q", Path("Q"), [0, 0, 10, 10], 2)],
    )
    boxes = [
        [102, 52, 141, 148],
        [300, 40, 340, 140],
        [5, 5, 20, 32],
        [200, 30, 250, 150],
        [0, 0, 10, 10],
        [20, 20, 30, 30],
        [0, 0, 10, 10],
    ]
    image = [0, 0, 1, 2, 3, 3, 4]
    scores = [0.9, 0.9, 0.9, 0.3, 0.9, 0.9, 0.9]
    sims = [0.62, 0.70, 0.55, 0.1, 0.80, 0.10, 0.40]
    feats = [[s, 0.0] for s in sims]
    results = make_results(names[:5], image, boxes, scores, feats, ["Q", "Q"], [[1.0, 0.0], [1.0, 0.0]])
    entries = np.array([[0, 1, 2, 3, 4]] * 2, np.int32)
    positive = np.array([[True, True, True, False, False]] * 2)
    dense = np.zeros((2, 5, 4), np.int32)
    dense[:, 0] = [100, 50, 40, 100]
    dense[:, 1] = [10, 10, 8, 20]
    dense[:, 2] = [200, 30, 50, 120]
    protocol = GalleryProtocol.from_dense(5, names, ["Q", "Q"], np.zeros((2, 4), np.int32), entries, positive, dense)
    out = evaluate(data, results, gallery_size=5, protocol=protocol, detection=False, per_query=True)
    assert out["search"]["mAP"] == pytest.approx(0.2777777777, abs=1e-9)
    assert [out["search"][k] for k in ("top1", "top5", "top10")] == [0.0, 1.0, 1.0]
    top = out["per_query"][0]["top"]
    assert [r["image"] for r in top] == ["G4", "G1", "G1", "G2", "G5", "G4"]
    assert [r["match"] for r in top] == [False, False, True, True, False, False]


def test_spec_4_2_detection_example():
    gallery = [ImageRecord("A", Path("A"), [[0, 0, 10, 20], [30, 0, 40, 20]], [1, UNLABELED])]
    data = PersonSearchData("cuhk-sysu", Path("."), [], gallery, [QueryRecord("A", Path("A"), [0, 0, 10, 20], 1)])
    boxes = [[1, 0, 11, 20], [0, 1, 10, 19], [29, 0, 41, 22], [100, 100, 110, 120]]
    results = make_results(["A"], [0, 0, 0, 0], boxes, [0.9, 0.8, 0.6, 0.55], np.eye(4, 2), ["A"], [[1.0, 0.0]])
    protocol = GalleryProtocol.from_dense(
        1, ["A"], ["A"], np.zeros((1, 4), np.int32), np.array([[0]]), np.array([[False]]), np.zeros((1, 1, 4))
    )
    out = evaluate(data, results, gallery_size=1, protocol=protocol)
    assert out["detection"]["recall"] == 1.0
    assert out["detection"]["ap"] == pytest.approx(0.58333333, abs=1e-7)


# ---------------------------------------------------------------------------------------------------
# randomised cross-checks


@pytest.mark.parametrize("seed", range(12))
def test_cuhk_matches_reference(seed):
    quantised = seed % 3 != 2
    fractional = seed % 2 == 1
    data, protocol, results, ref = cuhk_world(seed, quantised, fractional)
    names, dets, feats, qfeats, ref_protocol, gts, ctx = ref
    for thresh in (0.5, 0.7):
        ours = evaluate(data, results, gallery_size=8, protocol=protocol, det_thresh=thresh, block_items=50 + 40 * seed)
        _check_search(ours, ref_search_cuhk(names, dets, feats, qfeats, ref_protocol, thresh))
        ap, recall = ref_detection(gts, dets, thresh)
        assert ours["detection"]["recall"] == pytest.approx(float(recall), abs=1e-12)
        assert ours["detection"]["ap"] == pytest.approx(float(ap), abs=1e-12)
    full = evaluate(data, results, gallery_size=-1, protocol=protocol, detection=False)
    _check_search(full, ref_search_cuhk(names, dets, feats, qfeats, ref_protocol, 0.5, full_set=True))
    with_cbgm = evaluate(data, results, gallery_size=8, protocol=protocol, cbgm=True, detection=False)
    _check_search(with_cbgm, ref_search_cuhk(names, dets, feats, qfeats, ref_protocol, 0.5, cbgm=(ctx, 10, 3)))


@pytest.mark.parametrize("seed", range(12))
def test_prw_matches_reference(seed):
    quantised = seed % 3 != 2
    fractional = seed % 2 == 1
    data, results, ref = prw_world(seed, quantised, fractional)
    gallery, dets, feats, queries, qfeats, gts, ctx = ref
    for cross in (False, True):
        ours = evaluate(data, results, cross_camera=cross, block_items=60 + 50 * seed)
        _check_search(ours, ref_search_prw(gallery, dets, feats, queries, qfeats, 0.5, not cross))
    ap, recall = ref_detection(gts, dets, 0.5)
    assert ours["detection"]["recall"] == pytest.approx(float(recall), abs=1e-12)
    assert ours["detection"]["ap"] == pytest.approx(float(ap), abs=1e-12)
    with_cbgm = evaluate(data, results, cbgm=True, detection=False)
    _check_search(with_cbgm, ref_search_prw(gallery, dets, feats, queries, qfeats, 0.5, cbgm=(ctx, 30, 4)))
