"""Bad dataset input: one readable line naming the file and the problem, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from personsearch.cli import main
from personsearch.data import load_dataset
from personsearch.data.images import load_image, read_image_size
from personsearch.errors import DatasetError

from handmade import write_cuhk, write_prw


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist; expected layout"):
        load_dataset("cuhk-sysu", tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("dataset", "writer", "victim"),
    [
        ("cuhk-sysu", write_cuhk, "annotation/Images.mat"),
        ("cuhk-sysu", write_cuhk, "annotation/test/train_test/TestG50.mat"),
        ("prw", write_prw, "frame_test.mat"),
        ("prw", write_prw, "query_info.txt"),
        ("prw", write_prw, "annotations/c3s1_000020.jpg.mat"),
    ],
)
def test_missing_file_is_named(tmp_path, dataset, writer, victim):
    root = writer(tmp_path / "data")
    (root / victim).unlink()
    with pytest.raises(DatasetError, match="missing file .*" + victim.split("/")[-1]):
        load_dataset(dataset, root)


def test_malformed_mat_file(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    (root / "annotation" / "pool.mat").write_bytes(b"this is not a MATLAB file at all" * 8)
    with pytest.raises(DatasetError, match=r"pool\.mat: not a readable MATLAB file"):
        load_dataset("cuhk-sysu", root)


def test_wrong_variable_name(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    scipy.io.savemat(root / "annotation" / "Images.mat", {"Images": np.zeros((1, 2))})
    with pytest.raises(DatasetError, match=r"Images\.mat: variable 'Img' not found"):
        load_dataset("cuhk-sysu", root)


def test_malformed_struct(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    scipy.io.savemat(root / "annotation" / "pool.mat", {"pool": np.array([[1.0], [2.0]])})
    with pytest.raises(DatasetError, match=r"pool\.mat: malformed pool cell array"):
        load_dataset("cuhk-sysu", root)


def test_prw_annotation_with_wrong_shape(tmp_path):
    root = write_prw(tmp_path / "PRW")
    scipy.io.savemat(root / "annotations" / "c3s1_000020.jpg.mat", {"box_new": np.ones((2, 4))})
    with pytest.raises(DatasetError, match=r"c3s1_000020\.jpg\.mat: expected an N×5"):
        load_dataset("prw", root)


def test_prw_annotation_without_known_key(tmp_path):
    root = write_prw(tmp_path / "PRW")
    scipy.io.savemat(root / "annotations" / "c3s1_000020.jpg.mat", {"boxes": np.ones((2, 5))})
    with pytest.raises(DatasetError, match="'box_new' or 'anno_file' or 'anno_previous' not found"):
        load_dataset("prw", root)


def test_malformed_query_info_line(tmp_path):
    root = write_prw(tmp_path / "PRW")
    (root / "query_info.txt").write_bytes(b"5 1 2 3 4 c2s1_000010\r\n7 x 30 40 90 c1s2_000030\r\n")
    with pytest.raises(DatasetError, match=r"query_info\.txt:2: expected 'pid x y w h frame'"):
        load_dataset("prw", root)


def test_unreadable_image(tmp_path):
    bad = tmp_path / "s1.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match=r"s1\.jpg: cannot read image"):
        load_image(bad)
    with pytest.raises(DatasetError, match=r"missing\.jpg: image file is missing"):
        read_image_size(tmp_path / "missing.jpg")


def test_cli_reports_one_line_and_nonzero_exit(tmp_path, capsys):
    code = main(["dataset-stats", "--dataset", "prw", "--root", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "nowhere" in err and "Traceback" not in err


def test_cli_subprocess_has_no_traceback(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    (root / "annotation" / "Images.mat").write_bytes(b"garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "personsearch.cli", "dataset-stats", "--dataset", "cuhk-sysu", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Images.mat" in proc.stderr
