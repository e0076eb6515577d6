"""``personsearch evaluate`` end to end on synthetic datasets in the real formats, against the literal
reference transcription fed by ``scipy.io.loadmat``; and the results-file validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from personsearch.cli import main
from personsearch.data import load_dataset
from personsearch.data.synthetic.generate import generate_dataset
from personsearch.evaluation import load_results, make_results, save_results
from test_eval_reference import ref_detection, ref_search_cuhk, ref_search_prw

F32 = np.float32


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-datasets")
    out = {}
    for fmt in ("cuhk-sysu", "prw"):
        generate_dataset(fmt, root / fmt, preset="tiny", seed=3)
        out[fmt] = load_dataset(fmt, root / fmt)
    return out


def _fake_results(data, seed, dim=8):
    """Detections near the ground truth with quantised features (ties) plus clutter."""
    rng = np.random.default_rng(seed)
    names, image, boxes, scores, feats = [], [], [], [], []
    for rec in data.gallery:
        if rng.random() < 0.1:
            continue
        rows = [b + rng.integers(-3, 4, 4) for b in rec.boxes if rng.random() > 0.15]
        rows += [rec.boxes[0] + np.array([40, 0, 40, 0])] * int(rng.integers(0, 2))
        if not rows:
            continue
        names.append(rec.name)
        image += [len(names) - 1] * len(rows)
        boxes += rows
        scores += list(rng.choice(np.array([0.3, 0.5, 0.8, 0.9], F32), len(rows)))
        feats.append((rng.integers(-2, 3, (len(rows), dim)) / 3).astype(F32))
    qfeats = (rng.integers(-2, 3, (len(data.queries), dim)) / 3).astype(F32)
    return make_results(names, image, boxes, scores, np.concatenate(feats), [q.name for q in data.queries], qfeats)


def _per_image(data, results):
    index = {n: i for i, n in enumerate(results.gallery_names)}
    dets, feats = [], []
    for rec in data.gallery:
        rows = np.flatnonzero(results.det_image == index.get(rec.name, -1))
        dets.append(np.concatenate([results.det_boxes[rows], results.det_scores[rows, None]], 1))
        feats.append(results.det_features[rows])
    return dets, feats


def _run(args, capsys):
    code = main(["evaluate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _run_cuhk(data, results_path, gallery_size, json_path, capsys, *extra):
    """``evaluate`` on the CUHK-SYSU set at one gallery size, figures into ``json_path``."""
    args = ["--dataset", "cuhk-sysu", "--root", data.root, "--results", results_path]
    return _run([*args, "--gallery-size", gallery_size, "--json", json_path, *extra], capsys)


def test_cli_cuhk_matches_reference(datasets, tmp_path, capsys):
    data = datasets["cuhk-sysu"]
    results = _fake_results(data, 0)
    path = save_results(tmp_path / "r.npz", results)
    out_json = tmp_path / "m.json"
    per_query = tmp_path / "q.jsonl"
    code, out, err = _run_cuhk(data, path, "50", out_json, capsys, "--per-query", per_query)
    assert code == 0, err
    assert "mAP" in out
    metrics = json.loads(out_json.read_text())
    protoc = scipy.io.loadmat(data.root / "annotation/test/train_test/TestG50.mat")["TestG50"].squeeze()
    ref_protocol = [
        (str(item["Query"][0, 0]["imname"][0]), [(str(e[0][0]), e[1][0]) for e in item["Gallery"].squeeze()])
        for item in protoc
    ]
    dets, feats = _per_image(data, results)
    names = [r.name for r in data.gallery]
    m_ap, acc, aps = ref_search_cuhk(names, dets, feats, results.query_features, ref_protocol)
    assert metrics["search"]["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert [metrics["search"][k] for k in ("top1", "top5", "top10")] == pytest.approx(acc.tolist())
    ap, recall = ref_detection([r.boxes for r in data.gallery], dets, 0.5)
    assert metrics["detection"] == pytest.approx({"ap": float(ap), "recall": float(recall)}, abs=1e-12)
    assert metrics["gallery_size"] == 50 and metrics["det_thresh"] == 0.5
    rows = [json.loads(line) for line in per_query.read_text().splitlines()]
    assert len(rows) == len(data.queries)
    assert [r["ap"] for r in rows] == pytest.approx(aps, abs=1e-12)
    assert all(len(r["top"]) <= 10 for r in rows)

    full = tmp_path / "full.json"
    assert _run_cuhk(data, path, "-1", full, capsys)[0] == 0
    m_ap, acc, _ = ref_search_cuhk(names, dets, feats, results.query_features, ref_protocol, full_set=True)
    assert json.loads(full.read_text())["search"]["mAP"] == pytest.approx(m_ap, abs=1e-12)

    code, out, _ = _run_cuhk(data, path, "all", tmp_path / "sweep.json", capsys)
    assert code == 0 and "full" in out
    sweep = json.loads((tmp_path / "sweep.json").read_text())["sweep"]
    assert [row["gallery_size"] for row in sweep] == [50, -1]


def test_cli_prw_matches_reference(datasets, tmp_path, capsys):
    data = datasets["prw"]
    results = _fake_results(data, 1)
    path = save_results(tmp_path / "r.npz", results)
    dets, feats = _per_image(data, results)
    gallery = [(r.name, r.boxes, r.pids, r.cam_id) for r in data.gallery]
    queries = [(q.name, q.pid, q.cam_id) for q in data.queries]
    for cross in (False, True):
        out_json = tmp_path / f"m{cross}.json"
        args = ["--dataset", "prw", "--root", data.root, "--results", path, "--json", out_json]
        code, _, err = _run([*args, "--cross-camera"] if cross else args, capsys)
        assert code == 0, err
        metrics = json.loads(out_json.read_text())
        m_ap, acc, _ = ref_search_prw(gallery, dets, feats, queries, results.query_features, 0.5, not cross)
        assert metrics["search"]["mAP"] == pytest.approx(m_ap, abs=1e-12)
        assert [metrics["search"][k] for k in ("top1", "top5", "top10")] == pytest.approx(acc.tolist())
        assert metrics["cross_camera"] is cross


def _bad(results, **changes):
    arrays = results.arrays()
    arrays.update(changes)
    return arrays


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_image", "not in the cuhk-sysu gallery"),
        ("float64_features", "det_features must be float32"),
        ("nan_scores", "NaN or inf"),
        ("inf_features", "NaN or inf"),
        ("query_count", "queries, but"),
        ("query_order", "query order"),
        ("box_shape", "det_boxes must"),
        ("feature_dim", "det_features must have shape"),
        ("index_range", "det_image must index"),
        ("missing", "missing array"),
        ("object", "no object arrays"),
        ("duplicate_name", "more than once"),
        ("float_index", "must hold integers"),
    ],
)
def test_bad_results_files(datasets, tmp_path, capsys, case, message):
    data = datasets["cuhk-sysu"]
    good = _fake_results(data, 2)
    a = good.arrays()
    n = len(a["det_image"])
    if case == "unknown_image":
        a["gallery_names"] = a["gallery_names"].copy()
        a["gallery_names"][0] = "nope.jpg"
    elif case == "float64_features":
        a["det_features"] = a["det_features"].astype(np.float64)
    elif case == "nan_scores":
        a["det_scores"] = a["det_scores"].copy()
        a["det_scores"][1] = np.nan
    elif case == "inf_features":
        a["query_features"] = a["query_features"].copy()
        a["query_features"][0, 0] = np.inf
    elif case == "query_count":
        a["query_names"] = a["query_names"][:-1]
        a["query_features"] = a["query_features"][:-1]
    elif case == "query_order":
        a["query_names"] = a["query_names"][::-1].copy()
        if (a["query_names"] == good.query_names).all():
            a["query_names"][0] = "x.jpg"
    elif case == "box_shape":
        a["det_boxes"] = a["det_boxes"][:, :3]
    elif case == "feature_dim":
        a["det_features"] = a["det_features"][:, :-1]
    elif case == "index_range":
        a["det_image"] = a["det_image"].copy()
        a["det_image"][0] = len(a["gallery_names"])
    elif case == "missing":
        del a["det_scores"]
    elif case == "object":
        a["det_scores"] = np.array([None] * n, dtype=object)
    elif case == "duplicate_name":
        a["gallery_names"] = a["gallery_names"].copy()
        a["gallery_names"][1] = a["gallery_names"][0]
    elif case == "float_index":
        a["det_image"] = a["det_image"].astype(np.float32)
    path = tmp_path / "bad.npz"
    np.savez(path, **a)
    code, _, err = _run(
        ["--dataset", "cuhk-sysu", "--root", data.root, "--results", path, "--gallery-size", "50"], capsys
    )
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_results_round_trip(datasets, tmp_path):
    data = datasets["prw"]
    results = _fake_results(data, 4)
    path = save_results(tmp_path / "x" / "r.npz", results)
    loaded = load_results(path, data)
    for key, value in results.arrays().items():
        assert np.array_equal(getattr(loaded, key), value)
    with np.load(path, allow_pickle=False) as archive:
        assert archive["det_features"].dtype == np.float32
        assert archive["det_image"].dtype == np.int64


def test_missing_results_file(datasets, tmp_path, capsys):
    data = datasets["prw"]
    code, _, err = _run(["--dataset", "prw", "--root", data.root, "--results", tmp_path / "none.npz"], capsys)
    assert code == 2 and "does not exist" in err


def test_cbgm_needs_query_detections(datasets, tmp_path, capsys):
    data = datasets["prw"]
    path = save_results(tmp_path / "r.npz", _fake_results(data, 5))
    code, _, err = _run(["--dataset", "prw", "--root", data.root, "--results", path, "--cbgm"], capsys)
    assert code == 2 and "query_det" in err


def test_helper_paths_exist():
    assert Path(__file__).with_name("test_eval_reference.py").is_file()
