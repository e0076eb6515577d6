"""Poisoned annotation values and paths never get through the loaders (issue 9).

Gallery/train boxes that are not finite, out of range, of non-positive size or wholly outside the image
are dropped, counted per reason and per file and reported once per load as a DatasetWarning; a bad query
box or an image name that could leave the dataset folder is a one-line DatasetError naming the file; a
broken or stale cache entry is rebuilt; an image that does not match its annotations is an error where
it is read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from personsearch.cli import main
from personsearch.data import load_dataset
from personsearch.data.cache import cache_dir
from personsearch.data.torch_dataset import ImageListSet, PersonSearchTrainSet
from personsearch.data.validation import check_boxes_fit
from personsearch.errors import DatasetError, DatasetWarning

from handmade import (
    CUHK_IMAGES,
    CUHK_POOL,
    CUHK_QUERIES,
    CUHK_TRAIN,
    PRW_QUERY_LINES,
    PRW_TEST,
    PRW_TRAIN,
    write_cuhk,
    write_cuhk_images,
    write_cuhk_pool,
    write_cuhk_protocol,
    write_cuhk_train,
    write_jpeg,
    write_prw,
    write_prw_annotation,
)

NAN, INF = float("nan"), float("inf")


def load(dataset, root):
    """Load and return ``(data, DatasetWarning messages)``; any other warning (numpy's cast) fails."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(dataset, root)
    leaked = [w for w in caught if not issubclass(w.category, DatasetWarning)]
    assert not leaked, [str(w.message) for w in leaked]
    return data, [str(w.message) for w in caught]


def record(data, split, name):
    return next(r for r in data.split(split) if r.name == name)


# ---------------------------------------------------------------- CUHK-SYSU Images.mat


POISONED_S1 = [
    [NAN, 20, 30, 60],  # 4: not finite
    [10, INF, 30, 60],  # 5: not finite
    [1e12, 0, 30, 60],  # 6: beyond the range (int32 cast would give -2147483648)
    [1e6, 10, 30, 60],  # 7: idlocate=[1e6, ...]
    [10, 20, -30, 60],  # 8: negative width
    [-50, -50, -10, -10],  # 9: all negative
    [-80, -80, 30, 30],  # 10: wholly left of and above the image
]


def test_cuhk_images_mat_poisoned_boxes_dropped_and_counted(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    clean, clean_warnings = load("cuhk-sysu", root)
    images = dict(CUHK_IMAGES)
    images["s1.jpg"] = CUHK_IMAGES["s1.jpg"] + POISONED_S1
    path = write_cuhk_images(root, images)
    data, messages = load("cuhk-sysu", root)
    expected = (
        f"{path}: dropped 7 boxes (2 not finite, 2 beyond ±32768 px, 2 negative width or height, "
        "1 outside the image); e.g. image s1.jpg box 4 x,y,w,h = [nan, 20, 30, 60]"
    )
    assert messages == [expected, *clean_warnings]  # the Train.mat "match no box" warning stays
    assert data.warnings == messages
    assert data.invalid_boxes == 7 and data.dropped_boxes == 2  # the w = 0 / h = 0 quirk is unchanged
    s1 = record(data, "train", "s1.jpg")
    assert s1.boxes.tolist() == record(clean, "train", "s1.jpg").boxes.tolist()
    assert s1.boxes.tolist() == [[10, 20, 40, 80], [300, 40, 350, 140], [100, 100, 120, 140]]
    assert s1.pids.tolist() == record(clean, "train", "s1.jpg").pids.tolist()
    # a second load (from the cache) reports the same warning again: every command shows it
    again, messages_again = load("cuhk-sysu", root)
    assert messages_again == messages and again.invalid_boxes == 7


def test_cuhk_train_mat_poisoned_box_is_ignored_with_a_warning(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    train = [[*CUHK_TRAIN[0], ("s1.jpg", [NAN, 20, 30, 60])], CUHK_TRAIN[1]]
    path = write_cuhk_train(root, train)
    data, messages = load("cuhk-sysu", root)
    assert f"{path}: ignored 1 box (1 not finite); e.g. identity 0 image s1.jpg x,y,w,h = [nan, 20, 30, 60]" in messages
    assert record(data, "train", "s1.jpg").pids.tolist() == [1, -1, -1]


@pytest.mark.parametrize(
    ("where", "box", "problem"),
    [
        ("query", [NAN, 30, 40, 90], "query 1 query box x,y,w,h = [nan, 30, 40, 90] is not finite"),
        ("query", [200, 30, INF, 90], "query 1 query box x,y,w,h = [200, 30, inf, 90] is not finite"),
        ("query", [1e12, 30, 40, 90], "query 1 query box x,y,w,h = [1e+12, 30, 40, 90] is beyond ±32768 px"),
        (
            "query",
            [200, 30, -40, 90],
            "query 1 (s11.jpg) box x,y,w,h = [200, 30, -40, 90] (as int32) has negative width or height",
        ),
        (
            "query",
            [-50, -60, 10, 20],
            "query 1 (s11.jpg) box x,y,w,h = [-50, -60, 10, 20] (as int32) lies wholly outside the image",
        ),
        (
            "query",
            [200, 30, 0.5, 90],
            "query 1 (s11.jpg) box x,y,w,h = [200, 30, 0, 90] (as int32) has zero width or height",
        ),
        (
            "gallery",
            [NAN, 40, 40, 90],
            "query 1 gallery entry 0 (s13.jpg) box x,y,w,h = [nan, 40, 40, 90] is not finite",
        ),
        (
            "gallery",
            [240, 40, -40, 90],
            "query 1 gallery entry 0 (s13.jpg) box x,y,w,h = [240, 40, -40, 90] (as int32) has negative width",
        ),
    ],
)
def test_cuhk_bad_protocol_box_is_an_error_naming_the_query(tmp_path, where, box, problem):
    """A query box (or a gallery positive) is never dropped or clipped silently: that would change the
    evaluation. The error names TestG50.mat and the query."""
    root = write_cuhk(tmp_path / "CUHK")
    queries = [list(q) for q in CUHK_QUERIES]
    if where == "query":
        queries[1][1] = box
    else:
        queries[1][2] = [("s13.jpg", box), *queries[1][2][1:]]
    path = write_cuhk_protocol(root, [tuple(q) for q in queries])
    with pytest.raises(DatasetError) as info:
        load_dataset("cuhk-sysu", root)
    assert str(info.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- PRW annotations and query_info.txt


def test_prw_annotation_poisoned_rows_dropped_and_counted_per_file(tmp_path):
    root = write_prw(tmp_path / "PRW")
    clean, _ = load("prw", root)
    key, rows, _ = PRW_TRAIN["c1s1_000001"]
    poisoned = [
        *rows,
        [3, NAN, 20, 30, 60],  # row 2
        [4, 10, 20, -30, 60],  # negative width: 0 after clipping (was kept as a zero-width box)
        [5, 1e12, 0, 30, 60],
        [6, -50, -50, -10, -10],  # all negative: [0, 0, 0, 0] after clipping
        [7, 10, 20, 30, INF],
        [NAN, 10, 20, 30, 60],  # a NaN identity
    ]
    first = write_prw_annotation(root, "c1s1_000001", poisoned, key)
    key2, rows2, _ = PRW_TRAIN["c1s1_000002"]
    second = write_prw_annotation(root, "c1s1_000002", [*rows2, [8, 1e6, 10, 30, 60]], key2)
    key3, rows3, _ = PRW_TEST["c3s1_000020"]
    write_prw_annotation(root, "c3s1_000020", [*rows3, [5, 20, 20, 40, 0]], key3)
    data, messages = load("prw", root)
    annotations = root / "annotations"
    assert messages == [
        f"{annotations} (frame_train.mat frames): dropped 7 boxes (3 not finite, 2 beyond ±32768 px, "
        f"2 zero width or height after clipping at 0) in 2 files: {first.name} (6), {second.name} (1); "
        f"e.g. {first.name} row 2 [pid x y w h] = [3, nan, 20, 30, 60]",
        f"{annotations} (frame_test.mat frames): dropped 1 box (1 zero width or height after clipping at 0) "
        "in 1 file: c3s1_000020.jpg.mat (1); e.g. c3s1_000020.jpg.mat row 2 [pid x y w h] = [5, 20, 20, 40, 0]",
    ]
    assert data.invalid_boxes == 8
    for split in ("train", "gallery"):
        for got, want in zip(data.split(split), clean.split(split), strict=True):
            assert got.boxes.tolist() == want.boxes.tolist() and got.pids.tolist() == want.pids.tolist()


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ("nan 10.2 40.9 90", "box x y w h = [nan, 10.2, 40.9, 90] has a value that is not finite"),
        ("-3.5 10.2 inf 90", "box x y w h = [-3.5, 10.2, inf, 90] has a value that is not finite"),
        ("1e12 10 40 90", "box x y w h = [1e+12, 10, 40, 90] has a value that is beyond ±32768 px"),
        ("-50 -60 10 20", "box x y w h = [-50, -60, 10, 20] has zero width or height after truncating and clipping"),
        (
            "10 20 -30 40",
            "box x y w h = [10, 20, -30, 40] has a negative width or height after truncating and clipping",
        ),
        ("10 20 0.5 40", "box x y w h = [10, 20, 0.5, 40] has zero width or height after truncating and clipping"),
    ],
)
def test_prw_bad_query_box_is_an_error_naming_the_line(tmp_path, values, problem):
    root = write_prw(tmp_path / "PRW")
    (root / "query_info.txt").write_bytes(f"7 30 30 40 90 c1s2_000030\r\n5 {values} c2s1_000010\r\n".encode())
    with pytest.raises(DatasetError) as info:
        load_dataset("prw", root)
    assert str(info.value).startswith(f"{root / 'query_info.txt'}:2: query 1 (frame c2s1_000010.jpg) {problem}")


# ---------------------------------------------------------------- dataset-relative paths


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ("../../../../etc/c1passwd", "it contains a path separator"),
        ("/etc/c1passwd", "it contains a path separator"),
        ("..", "it names a folder"),
        ("c1s1\\..\\..\\c1x", "it contains a path separator"),
    ],
)
def test_prw_query_frame_cannot_leave_the_dataset(tmp_path, frame, problem):
    root = write_prw(tmp_path / "PRW")
    (root / "query_info.txt").write_bytes(f"{PRW_QUERY_LINES[0]}\r\n7 30 30 40 90 {frame}\r\n".encode())
    with pytest.raises(DatasetError) as info:
        load_dataset("prw", root)
    assert str(info.value) == (
        f"{root / 'query_info.txt'}:2: query 1 frame name {frame!r} is not a file name inside the dataset "
        f"folder ({problem})"
    )


def test_prw_query_frame_with_nul(tmp_path):
    root = write_prw(tmp_path / "PRW")
    (root / "query_info.txt").write_bytes(b"7 30 30 40 90 c1s2_000030\x00x\r\n")
    with pytest.raises(DatasetError, match=r"query_info\.txt:1: query 0 frame name .* \(it contains a NUL character\)"):
        load_dataset("prw", root)


def test_prw_frame_list_cannot_leave_the_dataset(tmp_path):
    import scipy.io

    from handmade import _cell

    root = write_prw(tmp_path / "PRW")
    scipy.io.savemat(root / "frame_test.mat", {"img_index_test": _cell(["c2s1_000010", "../../c1s1_000001"])})
    with pytest.raises(DatasetError) as info:
        load_dataset("prw", root)
    assert str(info.value) == (
        f"{root / 'frame_test.mat'}: frame name '../../c1s1_000001' is not a file name inside the dataset "
        "folder (it contains a path separator)"
    )


def test_cuhk_image_names_cannot_leave_the_dataset(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    images = {("../../../etc/s1.jpg" if n == "s1.jpg" else n): b for n, b in CUHK_IMAGES.items()}
    path = write_cuhk_images(root, images)
    with pytest.raises(DatasetError) as info:
        load_dataset("cuhk-sysu", root)
    assert str(info.value) == (
        f"{path}: Img entry 0 image name '../../../etc/s1.jpg' is not a file name inside the dataset folder "
        "(it contains a path separator)"
    )


def test_cuhk_pool_and_query_names_cannot_leave_the_dataset(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    pool = write_cuhk_pool(root, [*CUHK_POOL[:-1], "/abs/s13.jpg"])
    with pytest.raises(DatasetError, match=rf"^{pool}: image name '/abs/s13\.jpg' is not a file name inside"):
        load_dataset("cuhk-sysu", root)
    write_cuhk_pool(root, CUHK_POOL)
    queries = [("..", *CUHK_QUERIES[0][1:]), *CUHK_QUERIES[1:]]
    protocol = write_cuhk_protocol(root, queries)
    with pytest.raises(DatasetError) as info:
        load_dataset("cuhk-sysu", root)
    assert str(info.value) == (
        f"{protocol}: query 0 image name '..' is not a file name inside the dataset folder (it names a folder)"
    )


# ---------------------------------------------------------------- the parse cache


def _entries(kind):
    return sorted(cache_dir().glob(f"{kind}-*.npz"))


def _rewrite(path, arrays, digest=True):
    """Write a cache entry by hand; with ``digest`` it carries a valid self-digest (a foreign entry)."""
    from personsearch.data.cache import DIGEST_KEY, _arrays_digest

    extra = {DIGEST_KEY: np.array(_arrays_digest(arrays))} if digest else {}
    np.savez(path, **arrays, **extra)


def _arrays(path):
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files if not k.startswith("__")}


DAMAGES = ["wrong keys", "wrong keys, valid digest", "wrong dtype", "inconsistent", "edited", "npy", "garbage", "empty"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_broken_cache_entry_is_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("PERSONSEARCH_CACHE", str(tmp_path / "cache"))
    root = write_cuhk(tmp_path / "CUHK")
    first, _ = load("cuhk-sysu", root)
    for kind in ("cuhk-images", "cuhk-pool", "cuhk-train", "cuhk-dataset", "cuhk-testg50-sparse"):
        (path,) = _entries(kind)
        arrays = _arrays(path)
        if damage == "wrong keys":
            np.savez(path, something=np.zeros(3))
        elif damage == "wrong keys, valid digest":
            _rewrite(path, {"something": np.zeros(3)})
        elif damage == "wrong dtype":
            _rewrite(path, {k: np.zeros(v.shape, np.float32) for k, v in arrays.items()})
        elif damage == "inconsistent":  # one array cut to one row: the arrays no longer agree
            if kind != "cuhk-pool":  # (a shorter pool is self-consistent; only its digest can tell)
                cut = next(k for k, v in arrays.items() if v.ndim)
                _rewrite(path, {k: v[:1] if k == cut else v for k, v in arrays.items()})
        elif damage == "edited":  # one value changed, the stored digest kept
            with np.load(path) as archive:
                kept = {k: archive[k] for k in archive.files}
            name = next(k for k, v in kept.items() if v.ndim and v.size and not k.startswith("__"))
            kept[name] = kept[name][::-1].copy()
            np.savez(path, **kept)
        elif damage == "npy":  # an .npy renamed .npz
            with open(path, "wb") as handle:
                np.save(handle, np.arange(5))
        elif damage == "garbage":
            path.write_bytes(b"PK\x03\x04 not a zip at all")
        else:
            path.write_bytes(b"")
    again, _ = load("cuhk-sysu", root)
    for split in ("train", "gallery"):
        assert [(r.name, r.boxes.tolist(), r.pids.tolist()) for r in again.split(split)] == [
            (r.name, r.boxes.tolist(), r.pids.tolist()) for r in first.split(split)
        ]
    assert [q.box.tolist() for q in again.queries] == [q.box.tolist() for q in first.queries]
    assert again.warnings == first.warnings
    assert _arrays(_entries("cuhk-pool")[0]).keys() == {"names"}  # rewritten in place


def test_same_size_same_mtime_change_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONSEARCH_CACHE", str(tmp_path / "cache"))
    root = write_prw(tmp_path / "PRW")
    load("prw", root)
    key, rows, _ = PRW_TRAIN["c1s1_000001"]
    path = root / "annotations" / "c1s1_000001.jpg.mat"
    before = path.stat()
    write_prw_annotation(root, "c1s1_000001", [[1, 11, 20, 30, 60], rows[1]], key)  # same size, float64
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    data, _ = load("prw", root)
    assert record(data, "train", "c1s1_000001.jpg").boxes.tolist()[0] == [11, 20, 41, 80]
    # CUHK: pool.mat reordered in place (same size, same mtime) changes the gallery order
    croot = write_cuhk(tmp_path / "CUHK")
    assert [r.name for r in load("cuhk-sysu", croot)[0].gallery] == CUHK_POOL
    pool = croot / "annotation" / "pool.mat"
    before = pool.stat()
    write_cuhk_pool(croot, CUHK_POOL[::-1])
    os.utime(pool, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert pool.stat().st_size == before.st_size
    assert [r.name for r in load("cuhk-sysu", croot)[0].gallery] == CUHK_POOL[::-1]


def test_leftover_temporary_files_are_removed_and_writes_are_atomic(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv("PERSONSEARCH_CACHE", str(folder))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is now free: a writer killed before its rename
    dead = folder / f".cuhk-pool-{child.pid}-k1ll3d_x.npz.tmp"
    old = folder / ".prw-train-oldstyle.npz.tmp"  # no pid in the name (earlier versions), two hours old
    live = folder / f".cuhk-images-{os.getpid()}-writing.npz.tmp"  # a writer still running
    other = folder / "notes.tmp"
    for path in (dead, old, live, other):
        path.write_bytes(b"partial")
    stamp = time.time() - 7200
    os.utime(old, (stamp, stamp))
    load("prw", write_prw(tmp_path / "PRW"))
    assert not dead.exists() and not old.exists()
    assert live.exists() and other.exists()
    assert sorted(p.name for p in folder.glob("*.tmp")) == sorted([live.name, other.name])
    assert _entries("prw-train") and _entries("prw-test")


# ---------------------------------------------------------------- images that do not match their annotations


def test_image_four_times_smaller_than_its_annotations(tmp_path):
    root = write_cuhk(tmp_path / "CUHK")
    data, _ = load("cuhk-sysu", root)
    index = next(i for i, r in enumerate(data.train) if r.name == "s1.jpg")
    s1 = data.train[index]
    write_jpeg(s1.path, (100, 75))  # the annotations are for 400 x 300
    expected = (
        f"{s1.path}: the image is 100x75 but its annotation box 1 (x1 y1 x2 y2 = [300, 40, 350, 140]) lies "
        "outside it (2 of 3 boxes); the image does not match its annotations"
    )
    dataset = PersonSearchTrainSet(data.train, data.train_class_map(), hflip_prob=0.0)
    with pytest.raises(DatasetError) as info:
        dataset[index]
    assert str(info.value) == expected
    with pytest.raises(DatasetError) as info:
        s1.size()
    assert str(info.value) == expected
    # inference checks gallery annotations and query boxes the same way
    from personsearch.engine.inference import _loader

    q0 = data.queries[0]
    write_jpeg(q0.path, (100, 75))
    loader = _loader([q0.path], 1, 0, [q0.box[None]], "query box")
    with pytest.raises(DatasetError, match=r"100x75 but its query box 0 \(x1 y1 x2 y2 = \[10, 10, 50, 100\]\)"):
        next(iter(loader))
    with pytest.raises(DatasetError, match=r"s10\.jpg: the image is 100x75"):
        ImageListSet([r.path for r in data.gallery], [r.boxes for r in data.gallery])[0]
    # the other images still load; their boxes fit
    other = next(i for i, r in enumerate(data.train) if r.name == "s2.jpg")
    image, target = dataset[other]
    assert tuple(image.shape) == (3, 300, 400) and len(target["boxes"]) == 2


def test_boxes_slightly_past_the_edge_are_accepted():
    check_boxes_fit("x.jpg", np.array([[0, 0, 410, 310], [-5, -5, 20, 20]]), 400, 300)  # within the tolerance
    with pytest.raises(DatasetError, match="box 0"):
        check_boxes_fit("x.jpg", np.array([[400, 10, 450, 60]]), 400, 300)  # starts past the right edge
    with pytest.raises(DatasetError, match="box 0"):
        check_boxes_fit("x.jpg", np.array([[10, 10, 520, 60]]), 400, 300)  # reaches 120 px past it


# ---------------------------------------------------------------- every verb shows the warnings


def _poisoned_prw(tmp_path):
    root = write_prw(tmp_path / "PRW")
    key, rows, _ = PRW_TRAIN["c1s1_000001"]
    write_prw_annotation(root, "c1s1_000001", [*rows, [4, 10, 20, -30, 60], [5, 1e12, 0, 30, 60]], key)
    return root


def test_cli_dataset_stats_and_evaluate_show_the_warning_once(tmp_path, capsys):
    root = _poisoned_prw(tmp_path)
    message = "dropped 2 boxes (1 beyond ±32768 px, 1 zero width or height after clipping at 0)"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["dataset-stats", "--dataset", "prw", "--root", str(root)]) == 0
        out, err = capsys.readouterr()
        assert err.count(message) == 1 and "Traceback" not in err
        assert "boxes dropped as invalid (see the warnings): 2" in out
        code = main(["evaluate", "--dataset", "prw", "--root", str(root), "--results", str(tmp_path / "none.npz")])
        out, err = capsys.readouterr()
    assert code == 2
    assert err.count(message) == 1 and "none.npz" in err and "Traceback" not in err


def test_cli_subprocess_warning_is_one_line(tmp_path):
    root = _poisoned_prw(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "personsearch.cli", "dataset-stats", "--dataset", "prw", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "dropped 2 boxes" in line]
    assert len(lines) == 1 and "c1s1_000001.jpg.mat (2)" in lines[0]
    assert "RuntimeWarning" not in proc.stderr and "Traceback" not in proc.stderr


def test_teacher_crops_of_an_image_smaller_than_its_annotations_are_a_one_line_error(tmp_path):
    from PIL import Image

    from personsearch.distill.teacher_data import Crop, CropAugment, EvalCropSet, TeacherTrainSet

    path = tmp_path / "s1.jpg"
    Image.new("RGB", (100, 75), (120, 120, 120)).save(path)  # annotated as a 400x300 image
    crop = Crop(path=path, image_name="s1.jpg", box=(200.0, 100.0, 260.0, 280.0), label=0)
    with pytest.raises(DatasetError, match=r"s1\.jpg: the image is 100x75 .* does not match its annotations"):
        TeacherTrainSet([crop], CropAugment(input_size=(32, 16)))[(0, 0, 0)]
    with pytest.raises(DatasetError, match=r"s1\.jpg: the image is 100x75"):
        EvalCropSet([crop], (32, 16))[0]
    fits = Crop(path=path, image_name="s1.jpg", box=(10.0, 5.0, 40.0, 70.0), label=0)
    assert EvalCropSet([fits], (32, 16))[0][0].shape == (3, 32, 16)
