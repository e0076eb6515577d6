"""The CUHK-SYSU and PRW loaders on hand-made files that exercise every quirk of the spec."""

from __future__ import annotations

import numpy as np
import pytest

from personsearch.data import UNLABELED, load_dataset
from personsearch.data.cuhk_sysu import load_gallery_protocol
from personsearch.data.stats import dataset_statistics

from handmade import write_cuhk, write_prw


@pytest.fixture(scope="module")
def cuhk(tmp_path_factory):
    root = write_cuhk(tmp_path_factory.mktemp("cuhk") / "CUHK-SYSU", protocol_sizes=(50, 100))
    return load_dataset("cuhk-sysu", root)


@pytest.fixture(scope="module")
def prw(tmp_path_factory):
    return load_dataset("prw", write_prw(tmp_path_factory.mktemp("prw") / "PRW"))


def by_name(records):
    return {r.name: r for r in records}


def test_cuhk_splits_and_order(cuhk):
    assert [r.name for r in cuhk.train] == ["s1.jpg", "s2.jpg", "s3.jpg"]  # Images - pool, sorted
    assert [r.name for r in cuhk.gallery] == ["s10.jpg", "s11.jpg", "s12.jpg", "s13.jpg"]  # pool order
    assert [q.name for q in cuhk.queries] == ["s10.jpg", "s11.jpg", "s12.jpg"]
    assert cuhk.protocol_sizes == [50, 100]
    assert cuhk.train[0].path == cuhk.root / "Image" / "SSM" / "s1.jpg"


def test_cuhk_boxes_dropped_and_converted_without_wraparound(cuhk):
    assert cuhk.dropped_boxes == 2  # w = 0 in s1, h = 0 in s3
    train = by_name(cuhk.train)
    assert train["s1.jpg"].boxes.tolist() == [[10, 20, 40, 80], [300, 40, 350, 140], [100, 100, 120, 140]]
    assert train["s3.jpg"].boxes.tolist() == [[60, 60, 100, 140]]
    # stored as uint8; x + w = 280 must not wrap around to 24
    assert by_name(cuhk.gallery)["s13.jpg"].boxes.tolist() == [[40, 40, 80, 130], [240, 40, 280, 130]]
    assert all(r.boxes.dtype == np.int32 for r in cuhk.train + cuhk.gallery)


def test_cuhk_train_identities(cuhk):
    train = by_name(cuhk.train)
    assert train["s1.jpg"].pids.tolist() == [1, UNLABELED, UNLABELED]
    assert train["s2.jpg"].pids.tolist() == [1, 2]
    assert train["s3.jpg"].pids.tolist() == [2]
    assert cuhk.num_train_classes == 2
    assert cuhk.train_class_map() == {1: 0, 2: 1}
    assert any("match no box" in w for w in cuhk.warnings)  # Train.mat's (s3, [1,1,1,1])


def test_cuhk_gallery_identities_follow_reference_loaders(cuhk):
    gallery = by_name(cuhk.gallery)
    assert gallery["s10.jpg"].pids.tolist() == [1, UNLABELED]  # query 0; q2's late positive ignored
    assert gallery["s11.jpg"].pids.tolist() == [1, 2]
    assert gallery["s12.jpg"].pids.tolist() == [3]
    assert gallery["s13.jpg"].pids.tolist() == [UNLABELED, 2]


def test_cuhk_queries(cuhk):
    assert [q.box.tolist() for q in cuhk.queries] == [[10, 10, 50, 100], [200, 30, 240, 120], [30, 30, 70, 120]]
    assert [q.pid for q in cuhk.queries] == [1, 2, 3]


def test_cuhk_protocol_arrays(cuhk):
    protocol = load_gallery_protocol(cuhk.root, 100)
    assert protocol.num_queries == 3
    assert protocol.gallery_names == [r.name for r in cuhk.gallery]
    assert protocol.entries.tolist() == [[1, 2, 3], [3, 1, 0], [3, 0, 1]]
    assert protocol.positive.tolist() == [[True, False, False], [True, True, False], [False, True, False]]
    assert protocol.boxes_xywh[1, 1].tolist() == [200, 30, 40, 90]  # query image in its own gallery
    assert protocol.boxes_xywh[0, 1].tolist() == [0, 0, 0, 0]


def test_cuhk_statistics(cuhk):
    assert dataset_statistics(cuhk) == {
        "train": {"images": 3, "boxes": 6, "labeled_boxes": 4, "identities": 2},
        "gallery": {"images": 4, "boxes": 7, "labeled_boxes": 5, "identities": 3},
        "query": {"count": 3, "images": 3},
    }


def test_prw_splits_cameras_and_keys(prw):
    assert [r.name for r in prw.train] == ["c1s1_000001.jpg", "c1s1_000002.jpg"]
    assert [r.name for r in prw.gallery] == ["c2s1_000010.jpg", "c3s1_000020.jpg", "c1s2_000030.jpg"]
    assert [r.cam_id for r in prw.gallery] == [2, 3, 1]
    assert prw.gallery[0].path == prw.root / "frames" / "c2s1_000010.jpg"


def test_prw_gallery_conversion_clips_then_truncates(prw):
    gallery = by_name(prw.gallery)
    # x = -3.5 is clipped to 0 before x2 = x + w: [0, 10, 40.9, 100] -> [0, 10, 40, 100]
    assert gallery["c2s1_000010.jpg"].boxes.tolist() == [[0, 10, 40, 100], [100, 10, 140, 100], [200, 10, 230, 70]]
    assert gallery["c2s1_000010.jpg"].pids.tolist() == [5, 7, UNLABELED]  # -2 -> unlabelled
    assert gallery["c3s1_000020.jpg"].pids.tolist() == [5, 5]  # same pid twice: both kept
    assert gallery["c1s2_000030.jpg"].boxes.tolist() == [[230, 30, 270, 120]]  # uint8 storage, no wrap
    train = by_name(prw.train)
    assert train["c1s1_000002.jpg"].boxes.tolist() == [[12, 22, 42, 82], [50, 50, 90, 130]]  # 42.7 -> 42


def test_prw_query_conversion_truncates_then_clips(prw):
    # [-3.5, 10.2, 37.4, 100.2] -> truncate [-3, 10, 37, 100] -> clip [0, 10, 37, 100]
    assert prw.queries[0].box.tolist() == [0, 10, 37, 100]
    assert (prw.queries[0].pid, prw.queries[0].cam_id) == (5, 2)
    assert prw.queries[1].box.tolist() == [30, 30, 70, 120]
    assert prw.queries[1].name == "c1s2_000030.jpg"


def test_prw_query_info_without_crlf(tmp_path):
    data = load_dataset("prw", write_prw(tmp_path / "PRW", line_end="\n"))
    assert [q.name for q in data.queries] == ["c2s1_000010.jpg", "c1s2_000030.jpg"]


def test_prw_statistics(prw):
    assert dataset_statistics(prw) == {
        "train": {"images": 2, "boxes": 4, "labeled_boxes": 3, "identities": 2},
        "gallery": {"images": 3, "boxes": 6, "labeled_boxes": 5, "identities": 2},
        "query": {"count": 2, "images": 2},
    }
    assert prw.num_train_classes == 2


def test_image_size_is_read_from_the_file(cuhk, prw):
    assert cuhk.train[0].size() == (400, 300)
    assert prw.gallery[0].size() == (480, 270)


def test_annotations_without_images_still_load(tmp_path):
    import shutil

    cuhk_root = write_cuhk(tmp_path / "CUHK")
    shutil.rmtree(cuhk_root / "Image")
    prw_root = write_prw(tmp_path / "PRW")
    shutil.rmtree(prw_root / "frames")
    for name, root in (("cuhk-sysu", cuhk_root), ("prw", prw_root)):
        data = load_dataset(name, root)
        assert any("is missing (needed for training and inference)" in w for w in data.warnings)
        assert dataset_statistics(data)["query"]["count"] > 0
