"""The dataset protocol objects give the settings the per-dataset branches used to give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from personsearch.data.annotations import ImageRecord, PersonSearchData, QueryRecord
from personsearch.data.cuhk_sysu import GALLERY_SIZES as CUHK_TESTG_SIZES
from personsearch.errors import DatasetError, PersonSearchError
from personsearch.evaluation import GALLERY_SIZES
from personsearch.evaluation.protocols import CUHK_SYSU, FULL_GALLERY, PRW, protocol_for
from personsearch.evaluation.report import format_metrics
from personsearch.search.compare import settings
from personsearch.search.index import GalleryIndex


def _data(name: str, cams: tuple[int, ...] = (-1, -1, -1), protocol_sizes: list[int] | None = None) -> PersonSearchData:
    gallery = [
        ImageRecord(n, Path(n), [[0, 0, 10, 20]], [1], cam_id=c) for n, c in zip(("a", "b", "c"), cams, strict=True)
    ]
    queries = [QueryRecord("a", Path("a"), [0, 0, 10, 20], 1, cam_id=cams[0])]
    return PersonSearchData(name, Path("."), [], gallery, queries, protocol_sizes=protocol_sizes or [])


def _index(data: PersonSearchData) -> GalleryIndex:
    empty = np.zeros(0, np.int64)
    return GalleryIndex(
        data, empty, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 2)), np.eye(1, 2)
    )


def test_cuhk_sysu_settings():
    assert CUHK_TESTG_SIZES == (50, 100, 500, 1000, 2000, 4000)
    assert CUHK_SYSU.gallery_sizes == (50, 100, 500, 1000, 2000, 4000, -1) == GALLERY_SIZES
    assert CUHK_SYSU.name == "cuhk-sysu"
    assert CUHK_SYSU.has_gallery_sizes
    assert CUHK_SYSU.standard_gallery_size == 100
    assert not CUHK_SYSU.cross_camera
    assert CUHK_SYSU.excludes_query_image
    assert CUHK_SYSU.cbgm_k == (10, 3)
    assert CUHK_SYSU.resolve_gallery_size(500) == 500
    assert CUHK_SYSU.resolve_gallery_size(-1) == -1
    assert CUHK_SYSU.reported_gallery_size(500) == 500
    assert CUHK_SYSU.protocol_file_size(-1) == 50
    assert CUHK_SYSU.protocol_file_size(1000) == 1000


def test_prw_settings():
    assert PRW.name == "prw"
    assert PRW.gallery_sizes == (FULL_GALLERY,) == (-1,)
    assert not PRW.has_gallery_sizes
    assert PRW.standard_gallery_size == -1
    assert PRW.cross_camera
    assert PRW.excludes_query_image
    assert PRW.cbgm_k == (30, 4)
    assert PRW.resolve_gallery_size(100) == -1  # the CLI's --gallery-size is ignored on PRW
    assert PRW.reported_gallery_size(-1) is None


def test_lookup_by_name_and_by_data():
    assert protocol_for("cuhk-sysu") is CUHK_SYSU
    assert protocol_for("CUHK_SYSU") is CUHK_SYSU
    assert protocol_for("prw") is PRW
    assert protocol_for(_data("prw")) is PRW
    assert protocol_for(_data("cuhk-sysu")) is CUHK_SYSU


@pytest.mark.parametrize("name", ["market1501", "", "cuhk"])
def test_unknown_dataset_is_a_one_line_error(name):
    with pytest.raises(DatasetError) as err:
        protocol_for(name)
    message = str(err.value)
    assert "\n" not in message
    assert repr(name) in message and "cuhk-sysu, prw" in message
    with pytest.raises(DatasetError):
        protocol_for(_data(name))


def test_setting_checks_match_the_old_branches():
    for size in (None, -1, 100):  # accepted on PRW (100 is the API/CLI default)
        PRW.check_settings(size, True)
    with pytest.raises(
        PersonSearchError, match=r"^PRW has no gallery-size option \(its gallery is every test frame\)$"
    ):
        PRW.check_settings(50, False)
    for size in (None, -1, 50, 100, 4000, 7):
        CUHK_SYSU.check_settings(size, False)
    with pytest.raises(PersonSearchError, match=r"^--cross-camera applies to PRW only$"):
        CUHK_SYSU.check_settings(100, True)
    CUHK_SYSU.check_sweep()
    with pytest.raises(PersonSearchError, match=r"^--gallery-size all applies to CUHK-SYSU only$"):
        PRW.check_sweep()


def test_sweep_sizes_and_standard_settings():
    cuhk = _data("cuhk-sysu", protocol_sizes=[50, 100])
    assert CUHK_SYSU.sweep_sizes(cuhk) == [50, 100, -1]
    assert CUHK_SYSU.sweep_sizes(_data("cuhk-sysu")) == [-1]
    assert PRW.sweep_sizes(_data("prw")) == [-1]
    expected_cuhk = [
        ("gallery 50", {"gallery_size": 50}),
        ("gallery 100", {"gallery_size": 100}),
        ("full", {"gallery_size": -1}),
    ]
    assert CUHK_SYSU.standard_settings(cuhk) == expected_cuhk == settings(cuhk)
    expected_prw = [("all frames", {"gallery_size": -1}), ("cross-camera", {"gallery_size": -1, "cross_camera": True})]
    assert PRW.standard_settings(_data("prw")) == expected_prw == settings(_data("prw"))


def test_report_setting_labels():
    base = {"det_thresh": 0.5, "num_queries": 3}
    assert format_metrics({**base, "dataset": "prw", "cross_camera": True}).startswith(
        "Evaluation: prw, cross-camera, det_thresh 0.5 (3 queries)"
    )
    assert format_metrics({**base, "dataset": "prw", "gallery_size": None}).startswith(
        "Evaluation: prw, same-camera frames included, det_thresh 0.5"
    )
    assert format_metrics({**base, "dataset": "cuhk-sysu", "gallery_size": -1}).startswith(
        "Evaluation: cuhk-sysu, gallery full set, det_thresh 0.5"
    )
    assert format_metrics({**base, "dataset": "cuhk-sysu", "gallery_size": 100}).startswith(
        "Evaluation: cuhk-sysu, gallery 100, det_thresh 0.5"
    )
    assert format_metrics({**base, "dataset": "other", "gallery_size": 50}).startswith(
        "Evaluation: other, gallery 50, det_thresh 0.5"
    )
    assert format_metrics(base).startswith("Evaluation: ?, det_thresh 0.5")


def test_pick_gallery_size_follows_the_protocol():
    from personsearch.engine.inference import pick_gallery_size

    assert pick_gallery_size(_data("prw"), 100) is None
    cuhk = _data("cuhk-sysu", protocol_sizes=[50, 100])
    assert pick_gallery_size(cuhk, 100) == 100
    assert pick_gallery_size(cuhk, 500) == 100
    assert pick_gallery_size(cuhk, 20) == 50
    assert pick_gallery_size(cuhk, -1) == -1


def test_gallery_for_query_leaves_out_the_query_image_and_applies_the_camera_rule():
    prw = _index(_data("prw", cams=(1, 1, 2)))
    assert prw.gallery_for_query(0).tolist() == [1, 2]
    assert prw.gallery_for_query(0, cross_camera=True).tolist() == [2]
    cuhk = _index(_data("cuhk-sysu"))
    assert cuhk.gallery_for_query(0).tolist() == [1, 2]
    assert cuhk.gallery_for_query(0, gallery_size=-1).tolist() == [1, 2]
    with pytest.raises(PersonSearchError, match="--cross-camera applies to PRW only"):
        cuhk.gallery_for_query(0, cross_camera=True)
