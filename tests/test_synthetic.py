"""Synthetic CUHK-SYSU / PRW generator: files read back with the spec's reference access patterns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from personsearch.data.synthetic import PRESETS, generate_dataset, write_preview
from personsearch.errors import DatasetError

UNLABELED_SEQNET = 5555


# -- reference readers, following shared/spec/datasets.md literally ---------------------------------


def _set_pid(boxes: np.ndarray, pids: np.ndarray, box: np.ndarray, pid: int) -> bool:
    for i in range(len(boxes)):
        if np.all(boxes[i] == box):
            pids[i] = pid
            return True
    return False


def read_cuhk(root: Path) -> dict:
    """SeqNet-style loading (spec §1.3, §1.5–§1.8); pids 5555 for unlabelled."""
    ann = root / "annotation"
    img = loadmat(ann / "Images.mat")["Img"].squeeze()
    boxes_of, pids_of, order = {}, {}, []
    for img_name, _, boxes in img:
        name = str(img_name[0])
        b = np.asarray([b[0] for b in boxes[0]]).reshape(-1, 4)
        valid = np.where((b[:, 2] > 0) & (b[:, 3] > 0))[0]
        assert valid.size > 0, name
        boxes_of[name] = b[valid].astype(np.int32)
        pids_of[name] = np.full(len(valid), UNLABELED_SEQNET, dtype=np.int32)
        order.append(name)
    pool = [str(a[0]) for a in loadmat(ann / "pool.mat")["pool"].squeeze()]
    unmatched = 0
    train = loadmat(ann / "test" / "train_test" / "Train.mat")["Train"].squeeze()
    for index, item in enumerate(train):
        for img_name, box, _ in item[0, 0][2].squeeze():
            name = str(img_name[0])
            unmatched += not _set_pid(boxes_of[name], pids_of[name], box.squeeze().astype(np.int32), index + 1)
    protoc = loadmat(ann / "test" / "train_test" / "TestG50.mat")["TestG50"].squeeze()
    queries = []
    for index, item in enumerate(protoc):
        qname = str(item["Query"][0, 0][0][0])
        qbox = item["Query"][0, 0][1].squeeze().astype(np.int32)
        unmatched += not _set_pid(boxes_of[qname], pids_of[qname], qbox, index + 1)
        x, y, w, h = qbox
        queries.append((qname, (int(x), int(y), int(x + w), int(y + h)), index + 1))
        for im_name, box, _ in item["Gallery"].squeeze():
            name = str(im_name[0])
            if box.size == 0:
                break
            unmatched += not _set_pid(boxes_of[name], pids_of[name], box.squeeze().astype(np.int32), index + 1)
    for b in boxes_of.values():
        b[:, 2:] += b[:, :2]
    train_names = sorted(set(order) - set(pool))
    return {
        "boxes": boxes_of,
        "pids": pids_of,
        "train": train_names,
        "gallery": pool,
        "queries": queries,
        "unmatched": unmatched,
        "img_order": order,
    }


def read_prw(root: Path) -> dict:
    """SeqNet-style loading (spec §2.3, §2.4, §2.6); pids 5555 for -2."""
    out: dict = {"boxes": {}, "pids": {}}
    for split, mat, key in (
        ("train", "frame_train.mat", "img_index_train"),
        ("gallery", "frame_test.mat", "img_index_test"),
    ):
        imgs = loadmat(root / mat)[key]
        names = [img[0][0] + ".jpg" for img in imgs]
        out[split] = names
        for name in names:
            anno = loadmat(str(root / "annotations" / name))
            key = "box_new" if "box_new" in anno else "anno_file" if "anno_file" in anno else "anno_previous"
            rois, ids = anno[key][:, 1:].copy(), anno[key][:, 0].copy()
            rois = np.clip(rois, 0, None)
            rois[:, 2:] += rois[:, :2]
            ids[ids == -2] = UNLABELED_SEQNET
            out["boxes"][name] = rois.astype(np.int32)
            out["pids"][name] = ids.astype(np.int32)
    queries = []
    with open(root / "query_info.txt", "rb") as f:
        for line in f.readlines():
            linelist = str(line, "utf-8").split(" ")
            pid = int(linelist[0])
            x, y, w, h = (float(v) for v in linelist[1:5])
            roi = np.clip(np.array([x, y, x + w, y + h]).astype(np.int32), 0, None)
            name = linelist[5][:-2] + ".jpg"
            cam = int(re.search(r"c\d", name).group()[1:])
            queries.append((name, tuple(int(v) for v in roi), pid, cam))
    out["queries"] = queries
    return out


def _seqnet_pids(pids: list[int]) -> list[int]:
    return [UNLABELED_SEQNET if p == -1 else p for p in pids]


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuhk(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuhk")
    return generate_dataset("cuhk-sysu", root, preset="tiny", seed=0)


@pytest.fixture(scope="module")
def prw(tmp_path_factory):
    root = tmp_path_factory.mktemp("prw")
    return generate_dataset("prw", root, preset="tiny", seed=0)


@pytest.fixture(scope="module")
def cuhk_ref(cuhk):
    return read_cuhk(cuhk.root)


@pytest.fixture(scope="module")
def prw_ref(prw):
    return read_prw(prw.root)


# -- CUHK-SYSU ---------------------------------------------------------------------------------------


def test_cuhk_files_exist(cuhk):
    ann = cuhk.root / "annotation"
    for rel in (
        "Images.mat",
        "Person.mat",
        "pool.mat",
        "test/train_test/Train.mat",
        "test/train_test/TestG50.mat",
    ):
        assert (ann / rel).is_file(), rel
    assert cuhk.gallery_sizes[0] == 50
    for n in cuhk.gallery_sizes:
        assert (ann / "test" / "train_test" / f"TestG{n}.mat").is_file()
    for im in cuhk.images:
        path = cuhk.root / "Image" / "SSM" / im.name
        assert re.fullmatch(r"s\d+\.jpg", im.name)
        with Image.open(path) as pic:
            assert pic.size == im.size and pic.format == "JPEG"
    numbers = sorted(int(im.name[1:-4]) for im in cuhk.images)
    assert numbers[-1] - numbers[0] + 1 > len(numbers)  # not contiguous


def test_cuhk_roundtrip_boxes_and_pids(cuhk, cuhk_ref):
    assert cuhk_ref["unmatched"] == 0
    assert [im.name for im in cuhk.split("train")] == cuhk_ref["train"]
    assert [im.name for im in cuhk.split("gallery")] == cuhk_ref["gallery"]
    for im in cuhk.images:
        assert cuhk_ref["boxes"][im.name].tolist() == [list(b) for b in im.boxes], im.name
        assert cuhk_ref["pids"][im.name].tolist() == _seqnet_pids(im.pids), im.name
        assert im.cam == -1


def test_cuhk_queries_roundtrip(cuhk, cuhk_ref):
    assert [(q.image, q.box, q.pid) for q in cuhk.queries] == cuhk_ref["queries"]
    assert len(cuhk.queries) >= 8


def test_cuhk_field_order_and_dtypes(cuhk):
    ann = cuhk.root / "annotation"
    img = loadmat(ann / "Images.mat")["Img"]
    assert img.shape[0] == 1 and img.dtype.names == ("imname", "nAppear", "box")
    for entry in img[0]:
        assert entry["box"].dtype.names == ("idlocate", "ishard") and entry["box"].shape[0] == 1
        assert int(entry["nAppear"][0, 0]) == entry["box"].shape[1]
        for b in entry["box"][0]:
            loc = b["idlocate"]
            assert loc.shape == (1, 4)
            assert loc.dtype == (np.uint8 if loc.max() < 256 else np.uint16)
            assert b["ishard"].dtype == np.uint8 and b["ishard"].shape == (1, 1)
    assert {b["idlocate"].dtype for e in img[0] for b in e["box"][0]} >= {np.dtype(np.uint8)}
    protoc = loadmat(ann / "test" / "train_test" / "TestG50.mat")["TestG50"]
    assert protoc.shape == (1, len(cuhk.queries)) and protoc.dtype.names == ("Query", "Gallery")
    for item in protoc[0]:
        assert item["Query"].shape == (1, 1)
        assert item["Query"].dtype.names == ("imname", "idlocate", "ishard", "idname")
        assert item["Gallery"].dtype.names == ("imname", "idlocate", "ishard")
        assert item["Gallery"].shape == (1, 50)
        for g in item["Gallery"][0]:
            if g["idlocate"].size == 0:
                assert g["idlocate"].shape == (1, 0) and g["idlocate"].dtype == np.float64
                assert g["ishard"].shape == (1, 0)
    train = loadmat(ann / "test" / "train_test" / "Train.mat")["Train"]
    assert train.shape == (len(cuhk.train_ids), 1)
    assert train[0, 0].shape == (1, 1) and train[0, 0].dtype.names == ("idname", "nAppear", "scene")
    person = loadmat(ann / "Person.mat")["Person"]
    assert person.shape == (1, len(cuhk.train_ids) + len(cuhk.test_ids))
    assert person.dtype.names == ("idname", "nAppear", "scene")
    pool = loadmat(ann / "pool.mat")["pool"]
    assert pool.shape == (len(cuhk.split("gallery")), 1) and pool.dtype == object


def _protocol(root: Path, n: int) -> np.ndarray:
    return loadmat(root / "annotation" / "test" / "train_test" / f"TestG{n}.mat")[f"TestG{n}"].squeeze()


def test_cuhk_invariants(cuhk, cuhk_ref):
    names, pool = cuhk_ref["img_order"], cuhk_ref["gallery"]
    assert len(names) >= 2 and len(pool) >= 50 and set(pool) <= set(names)
    train = loadmat(cuhk.root / "annotation/test/train_test/Train.mat")["Train"].squeeze()
    assert len(train) >= 2
    train_names = set(cuhk_ref["train"])
    train_idnames = set()
    for item in train:
        scene = item[0, 0][2]
        assert scene.shape[0] == 1 and scene.shape[1] >= 2
        assert all(str(s[0][0]) in train_names for s in scene[0])
        train_idnames.add(str(item[0, 0][0][0]))
    raw = {  # x,y,w,h per image as stored, to check exact matches
        str(n[0]): {tuple(b[0].reshape(-1).astype(np.int32)) for b in boxes[0]}
        for n, _, boxes in loadmat(cuhk.root / "annotation/Images.mat")["Img"].squeeze()
    }
    query_seq = None
    for n in cuhk.gallery_sizes:
        protoc = _protocol(cuhk.root, n)
        seq = [(str(it["Query"][0, 0][0][0]), tuple(it["Query"][0, 0][1][0])) for it in protoc]
        assert query_seq is None or seq == query_seq
        query_seq = seq
        for it in protoc:
            q = it["Query"][0, 0]
            assert str(q[3][0]) not in train_idnames  # train and test identities are disjoint
            assert str(q[0][0]) in pool
            assert tuple(q[1][0].astype(np.int32)) in raw[str(q[0][0])]
            gallery = it["Gallery"].squeeze()
            sizes = [g[1].size for g in gallery]
            n_pos = sum(s > 0 for s in sizes)
            assert n_pos >= 1 and sizes[:n_pos] == [4] * n_pos and all(s == 0 for s in sizes[n_pos:])
            n_boxes = 0
            for g in gallery:
                name = str(g[0][0])
                assert name in pool
                n_boxes += len(cuhk_ref["boxes"][name])
                if g[1].size:
                    assert tuple(g[1][0].astype(np.int32)) in raw[name]
            assert n_boxes >= 10


def test_cuhk_quirks(cuhk):
    kinds = cuhk.quirk_kinds()
    assert {
        "zero_size_box",
        "query_image_in_gallery_different_box",
        "query_image_in_gallery_same_box",
        "single_positive_repeated",
        "gallery_image_twice_two_boxes",
    } <= kinds
    img = loadmat(cuhk.root / "annotation/Images.mat")["Img"].squeeze()
    zero = [
        (str(n[0]), tuple(b[0][0].astype(int)))
        for n, _, boxes in img
        for b in boxes[0]
        if b[0][0][2] == 0 or b[0][0][3] == 0
    ]
    assert len(zero) == cuhk.num_zero_size_boxes >= 1
    protoc = _protocol(cuhk.root, 50)
    referenced = set()
    for it in protoc:
        referenced.add((str(it["Query"][0, 0][0][0]), tuple(it["Query"][0, 0][1][0].astype(int))))
        referenced |= {(str(g[0][0]), tuple(g[1][0].astype(int))) for g in it["Gallery"][0] if g[1].size}
    assert not set(zero) & referenced

    def positives(i: int) -> list[tuple[str, tuple]]:
        return [(str(g[0][0]), tuple(g[1][0].astype(int))) for g in protoc[i]["Gallery"][0] if g[1].size]

    def query(i: int) -> tuple[str, tuple]:
        q = protoc[i]["Query"][0, 0]
        return str(q[0][0]), tuple(q[1][0].astype(int))

    for qk in cuhk.quirks:
        if qk.query is None:
            continue
        pos, (qname, qbox) = positives(qk.query), query(qk.query)
        if qk.kind == "query_image_in_gallery_different_box":
            assert any(n == qname and b != qbox for n, b in pos)
        elif qk.kind == "query_image_in_gallery_same_box":
            assert (qname, qbox) in pos
        elif qk.kind == "single_positive_repeated":
            assert len(pos) == 2 and pos[0] == pos[1]
        elif qk.kind == "gallery_image_twice_two_boxes":
            same = [b for n, b in pos if n == qk.image]
            assert len(same) == 2 and same[0] != same[1]


# -- PRW ------------------------------------------------------------------------------------------------


def test_prw_files_exist(prw):
    for rel in ("frame_train.mat", "frame_test.mat", "ID_train.mat", "ID_test.mat", "query_info.txt"):
        assert (prw.root / rel).is_file(), rel
    scale = PRESETS["tiny"].prw_scale
    for im in prw.images:
        assert re.fullmatch(r"c\ds\d_\d{6}\.jpg", im.name)
        assert (prw.root / "annotations" / f"{im.name}.mat").is_file()
        assert not (prw.root / "annotations" / im.name).exists()
        with Image.open(prw.root / "frames" / im.name) as pic:
            assert pic.size == im.size
        expected = (720, 576) if im.cam == 6 else (1920, 1080)
        assert im.size == (round(expected[0] * scale), round(expected[1] * scale))
    for q in prw.queries:
        assert (prw.root / "query_box" / f"{q.pid:03d}_{q.image[:-4]}.jpg").is_file()


def test_prw_roundtrip(prw, prw_ref):
    assert [im.name for im in prw.split("train")] == prw_ref["train"]
    assert [im.name for im in prw.split("gallery")] == prw_ref["gallery"]
    for im in prw.images:
        assert prw_ref["boxes"][im.name].tolist() == [list(b) for b in im.boxes], im.name
        assert prw_ref["pids"][im.name].tolist() == _seqnet_pids(im.pids)
        assert im.cam == int(im.name[1])
    assert [(q.image, q.box, q.pid, q.cam) for q in prw.queries] == prw_ref["queries"]


def test_prw_file_details(prw):
    data = (prw.root / "query_info.txt").read_bytes()
    lines = data.split(b"\r\n")
    assert data.endswith(b"\r\n") and lines[-1] == b"" and b"\n" not in b"".join(lines)
    assert any(b"." in b" ".join(line.split(b" ")[1:5]) for line in lines[:-1])  # fractional values
    cells = loadmat(prw.root / "frame_train.mat")["img_index_train"]
    assert cells.shape == (len(prw.split("train")), 1) and cells.dtype == object
    ids_train = loadmat(prw.root / "ID_train.mat")["ID_train"].ravel().astype(int).tolist()
    ids_test = loadmat(prw.root / "ID_test.mat")["ID_test2"].ravel().astype(int).tolist()
    assert ids_train == prw.train_ids and ids_test == prw.test_ids
    for im in prw.images[:5]:
        anno = loadmat(prw.root / "annotations" / f"{im.name}.mat")
        key = next(k for k in ("box_new", "anno_file", "anno_previous") if k in anno)
        assert anno[key].ndim == 2 and anno[key].shape[1] == 5 and anno[key].shape[0] >= 1


def test_prw_quirks_and_invariants(prw, prw_ref):
    kinds = prw.quirk_kinds()
    assert {
        "negative_xy_box",
        "unlabelled_pid_-2",
        "pid_twice_in_frame",
        "key_anno_file",
        "key_anno_previous",
        "fractional_query_box",
    } <= kinds
    negative = twice = 0
    keys = set()
    for im in prw.images:
        anno = loadmat(prw.root / "annotations" / f"{im.name}.mat")
        key = next(k for k in ("box_new", "anno_file", "anno_previous") if k in anno)
        keys.add(key)
        rows = anno[key]
        assert rows.dtype == np.float64 and len(rows) >= 1
        negative += int(((rows[:, 1] < 0) | (rows[:, 2] < 0)).sum())
        labelled = rows[rows[:, 0] > 0, 0]
        twice += len(labelled) != len(set(labelled.tolist()))
    assert negative >= 2 and twice >= 2 and keys == {"box_new", "anno_file", "anno_previous"}
    gallery = set(prw_ref["gallery"])
    assert not set(prw.train_ids) & set(prw.test_ids)
    train_pids = {p for n in prw_ref["train"] for p in prw_ref["pids"][n].tolist()} - {UNLABELED_SEQNET}
    test_pids = {p for n in prw_ref["gallery"] for p in prw_ref["pids"][n].tolist()} - {UNLABELED_SEQNET}
    assert not train_pids & test_pids
    for name, _, pid, cam in prw_ref["queries"]:
        assert name in gallery
        others = [n for n in prw_ref["gallery"] if n != name and pid in prw_ref["pids"][n]]
        assert others, (name, pid)
        assert any(int(n[1]) != cam for n in others), (name, pid)


# -- both -------------------------------------------------------------------------------------------------


def test_scene_variety(cuhk):
    heights = [b[3] - b[1] for im in cuhk.images for b in im.boxes]
    assert max(heights) >= 4 * min(heights)
    assert any(p == -1 for im in cuhk.images for p in im.pids)
    assert cuhk.hard_negatives


def test_deterministic(cuhk, prw, tmp_path):
    again = generate_dataset("cuhk-sysu", tmp_path / "same", preset="tiny", seed=0)
    for rel in (
        "annotation/Images.mat",
        "annotation/test/train_test/TestG50.mat",
        f"Image/SSM/{cuhk.images[0].name}",
    ):
        assert (again.root / rel).read_bytes() == (cuhk.root / rel).read_bytes(), rel
    other = generate_dataset("prw", tmp_path / "other", preset="tiny", seed=1)
    assert generate_dataset("prw", tmp_path / "other", preset="tiny", seed=1).images == other.images  # rerun
    assert (other.root / "query_info.txt").read_bytes() != (prw.root / "query_info.txt").read_bytes()
    assert (other.root / "frame_test.mat").read_bytes() != (prw.root / "frame_test.mat").read_bytes()


@pytest.mark.parametrize("fixture,fmt", [("cuhk", "cuhk-sysu"), ("prw", "prw")])
def test_preview(request, fixture, fmt, tmp_path):
    summary = request.getfixturevalue(fixture)
    out = write_preview(summary.root, fmt, tmp_path / "sheet.png", num_scenes=6)
    with Image.open(out) as sheet:
        assert sheet.format == "PNG" and 300 <= sheet.width <= 4000 and 200 <= sheet.height <= 4000
        assert np.asarray(sheet).std() > 10


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="preset"):
        generate_dataset("cuhk-sysu", tmp_path / "a", preset="huge")
    with pytest.raises(DatasetError, match="format"):
        generate_dataset("market", tmp_path / "a")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        generate_dataset("prw", blocker)
    with pytest.raises(DatasetError):
        generate_dataset("prw", blocker / "sub")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(DatasetError, match="not empty"):
        generate_dataset("prw", tmp_path / "full")
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep"
    with pytest.raises(DatasetError):
        write_preview(tmp_path / "missing", "prw", tmp_path / "x.png")
