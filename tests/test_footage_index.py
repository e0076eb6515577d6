"""The persistent gallery index: ``index build / update / info``, incremental and resumable builds, kills at
random moments, bad input, every search index type with filters, and a two-process sharded build.

Most tests use :class:`FakeDetector` (boxes and embeddings derived from the pixels, so a file always gives
the same detections); one builds an index with a real (tiny, one-iteration) checkpoint through the CLI.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personsearch.cli import main
from personsearch.errors import PersonSearchError
from personsearch.footage.builder import build_index
from personsearch.footage.detections import Detections
from personsearch.footage.store import DB_NAME, GalleryIndex, IndexDB

from handmade import run_ranks

TESTS = Path(__file__).resolve().parent
DIM = 16


class FakeDetector:
    """Detections derived from the image content: 0-3 boxes, random unit embeddings seeded by the pixels."""

    def __init__(self, model_id: str = "fake-model", dim: int = DIM, delay: float = 0.0) -> None:
        self.model_id = model_id
        self.embedding_dim = dim
        self.det_thresh = 0.5
        self.delay = delay
        self.calls = 0
        self.images = 0

    def detect(self, images):
        self.calls += 1
        self.images += len(images)
        if self.delay:
            time.sleep(self.delay)
        out = []
        for image in images:
            h, w = image.shape[:2]
            seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()[:8], "little")
            rng = np.random.default_rng(seed)
            n = int(rng.integers(0, 4))
            x1, y1 = rng.uniform(0, w / 2, n), rng.uniform(0, h / 2, n)
            boxes = np.stack([x1, y1, x1 + w / 4, y1 + h / 3], 1).reshape(-1, 4).astype(np.float32)
            emb = rng.normal(size=(n, self.embedding_dim)).astype(np.float32)
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            out.append(Detections(boxes, rng.uniform(0.5, 1.0, n).astype(np.float32), emb))
        return out


def write_image(path: Path, seed: int, size=(40, 30)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write_video(path: Path, frames: int = 25, rate: int = 10, seed: int = 0, size=(64, 48)) -> Path:
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(frames):
            pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_footage(root: Path, images: int = 8, video_frames: int = 25) -> Path:
    """A folder: JPEGs and PNGs (some in a sub-folder), a short video, a text file and a broken JPEG."""
    for i in range(images):
        sub = "cam2/" if i % 3 == 0 else ""
        write_image(root / f"{sub}img{i:02d}.{'png' if i % 2 else 'jpg'}", seed=i)
    if video_frames:
        write_video(root / "walk.mp4", frames=video_frames)
    (root / "notes.md").write_text("not an image\n")
    (root / "broken.jpg").write_bytes(b"this is not a JPEG")
    return root


def content(index: Path) -> set[tuple]:
    """What an index holds, independent of row ids: (path, frame, box, score, vector digest) per detection,
    plus (path, frame) per image and (path, status) per file."""
    conn = sqlite3.connect(index / DB_NAME)
    try:
        rows = set()
        for path, status in conn.execute("SELECT path, status FROM files"):
            rows.add(("file", path, status))
        for path, frame in conn.execute("SELECT path, frame_index FROM images"):
            rows.add(("image", path, frame))
        for path, frame, x1, y1, x2, y2, score, vector in conn.execute(
            "SELECT i.path, i.frame_index, d.x1, d.y1, d.x2, d.y2, d.score, d.vector "
            "FROM detections d JOIN images i ON i.id = d.image_id"
        ):
            box = tuple(round(v, 3) for v in (x1, y1, x2, y2))
            rows.add(("det", path, frame, box, round(score, 5), hashlib.sha1(vector).hexdigest()))
        return rows
    finally:
        conn.close()


def check_consistent(index: Path) -> dict:
    """The index opens (counts agree, vectors the right size) and every row belongs to its parent."""
    with GalleryIndex.open(index) as opened:
        info = opened.info()
        assert len(opened) == info["detections"]
    conn = sqlite3.connect(index / DB_NAME)
    try:
        orphans = conn.execute(
            "SELECT count(*) FROM detections WHERE image_id NOT IN (SELECT id FROM images)"
        ).fetchone()[0]
        orphans += conn.execute("SELECT count(*) FROM images WHERE file_id NOT IN (SELECT id FROM files)").fetchone()[0]
        assert orphans == 0
        statuses = {r[0] for r in conn.execute("SELECT status FROM files")}
        assert statuses <= {"ok", "unreadable", "damaged", "indexing"}
    finally:
        conn.close()
    return info


# --------------------------------------------------------------------------------------- build and update
def test_build_info_search_and_read_back(tmp_path, capsys):
    data = make_footage(tmp_path / "footage")
    detector = FakeDetector()
    summary = build_index(detector, tmp_path / "idx", [str(data)], fps=2.0, batch_size=3, progress=False)
    assert summary["files_new"] == 10  # 8 images, the video, the broken JPEG
    assert summary["images_added"] == 8 and summary["frames_added"] == 5  # 2.5 s sampled at 2 fps
    reasons = {Path(row["path"]).name: row["reason"] for row in summary["skipped"]}
    assert set(reasons) == {"notes.md", "broken.jpg"} and "cannot" in reasons["broken.jpg"]
    assert detector.images == 13
    info = check_consistent(tmp_path / "idx")
    assert (info["images"], info["frames"], info["videos"]) == (8, 5, 1)
    assert info["detections"] == summary["detections_added"] > 0
    assert info["model_id"] == "fake-model" and info["embedding_dim"] == DIM and info["skipped_count"] == 2
    assert info["index_type"] == "auto" and info["index_type_effective"] == "flat" and info["size_on_disk"] > 0

    assert main(["index", "info", "--index", str(tmp_path / "idx")]) == 0
    printed = capsys.readouterr().out
    assert "8 still images, 1 videos (5 frames)" in printed and "broken.jpg" in printed

    with GalleryIndex.open(tmp_path / "idx") as index:
        vectors = np.asarray(index._vectors)
        hits = index.search(vectors[0], top_k=5)
        assert hits[0].similarity == pytest.approx(1.0, abs=1e-5) and [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert all(a.similarity >= b.similarity for a, b in itertools.pairwise(hits))
        every = index.search(vectors[0], top_k=1000)
        assert len(every) == len(index)
        frames = [h for h in every if h.timestamp is not None]
        stills = [h for h in every if h.timestamp is None]
        assert frames and stills and {h.path for h in frames} == {str(data / "walk.mp4")}
        # filters: a sub-folder, a time range, excluded paths
        cam2 = index.search(vectors[0], top_k=1000, sources=[str(data / "cam2")])
        assert cam2 and all("/cam2/" in h.path for h in cam2)
        assert len(cam2) == sum("/cam2/" in h.path for h in every)
        timed = index.search(vectors[0], top_k=1000, time_range=(0.4, 1.6))
        assert timed and all(0.4 <= h.timestamp <= 1.6 for h in timed)
        dropped = index.search(vectors[0], top_k=1000, exclude_paths=[str(data / "walk.mp4")])
        assert len(dropped) == len(stills)
        assert index.search(vectors[0], top_k=5, sources=[str(tmp_path / "elsewhere")]) == []
        # pixels of a still image and of a video frame
        still, frame = stills[0], frames[0]
        assert np.array_equal(index.read_image(still.image_id), np.asarray(Image.open(still.path).convert("RGB")))
        from personsearch.footage.sources import sample_frames

        decoded = {f.frame_index: f.image for f in sample_frames(frame.path, 2.0)}
        assert np.array_equal(index.read_image(frame.image_id), decoded[frame.frame_index])
        assert index.contains_path(still.path) and index.contains_path(os.path.relpath(still.path))
        assert not index.contains_path(str(data / "notes.md"))
        with pytest.raises(PersonSearchError, match="16-dimensional"):
            index.search(np.ones(DIM + 1, np.float32))


def test_update_indexes_only_new_and_changed_files_and_drops_deleted_ones(tmp_path):
    data = make_footage(tmp_path / "footage", images=6, video_frames=10)
    out = tmp_path / "idx"
    build_index(FakeDetector(), out, [str(data)], fps=2.0, progress=False)
    before = content(out)
    again = FakeDetector()
    summary = build_index(again, out, [str(data)], fps=2.0, progress=False)
    assert again.calls == 0 and summary["files_unchanged"] == 8 and content(out) == before
    generation = check_consistent(out)["generation"]
    assert summary["info"]["generation"] == generation  # nothing changed: the caches stay valid

    write_image(data / "new.png", seed=100)  # added
    time.sleep(0.01)
    write_image(data / "img01.png", seed=101)  # changed (content, size or mtime)
    (data / "img02.jpg").unlink()  # deleted
    (data / "broken.jpg").unlink()
    counting = FakeDetector()
    summary = build_index(counting, out, [str(data)], fps=2.0, progress=False)
    assert (summary["files_new"], summary["files_changed"], summary["files_removed"]) == (1, 1, 2)
    assert counting.images == 2  # only the new and the changed image went through the detector
    fresh = tmp_path / "fresh"
    build_index(FakeDetector(), fresh, [str(data)], fps=2.0, progress=False)
    assert content(out) == content(fresh)
    info = check_consistent(out)
    assert info["images"] == 6 and info["skipped_count"] == 1  # notes.md


def test_build_killed_by_an_exception_after_n_batches_resumes_to_the_same_content(tmp_path):
    data = make_footage(tmp_path / "footage", images=6, video_frames=30)
    reference = tmp_path / "reference"
    build_index(FakeDetector(), reference, [str(data)], fps=4.0, batch_size=2, progress=False)

    class Crash(Exception):
        pass

    for crash_at in (1, 3, 6):
        out = tmp_path / f"crash{crash_at}"

        def crash(batches: int, at: int = crash_at) -> None:
            if batches == at:
                raise Crash

        with pytest.raises(Crash):
            build_index(FakeDetector(), out, [str(data)], fps=4.0, batch_size=2, progress=False, after_batch=crash)
        partial = check_consistent(out)
        assert partial["images"] + partial["frames"] == 2 * crash_at
        resumed = FakeDetector()
        summary = build_index(resumed, out, [str(data)], fps=4.0, batch_size=2, progress=False)
        assert content(out) == content(reference)
        # nothing was detected twice: 6 images + 12 frames (3 s at 4 fps) in all
        assert resumed.images == 6 + 12 - 2 * crash_at
        if crash_at == 6:  # the video was part-way: resumed after its last committed frame
            assert summary["files_resumed"] == 1


KILLED_BUILD = """
import os, sys
sys.path.insert(0, {tests!r})
from test_footage_index import FakeDetector
from personsearch.footage import store
from personsearch.footage.builder import build_index

connect = store.connect


def small_cache(db, readonly=False):  # every transaction spills into the file: a kill leaves a hot journal
    conn = connect(db, readonly)
    conn.execute("PRAGMA cache_size = 1")
    return conn


store.connect = small_cache
exit_at = {exit_at}
commits = [0]
commit = store.IndexDB.commit


def dying_commit(self, **meta):
    commits[0] += 1
    if commits[0] == exit_at:  # killed inside a transaction, its rows written, before COMMIT
        self.conn.execute("UPDATE meta SET value = value WHERE key = 'generation'")
        os._exit(9)
    commit(self, **meta)
    print("commit", flush=True)  # lets the parent kill the build at a chosen point of its progress


store.IndexDB.commit = dying_commit
build_index(FakeDetector(delay={delay}), {out!r}, [{data!r}], fps=4.0, batch_size=1, progress=False)
print("finished")
"""


def _killed_build(out: Path, data: Path, exit_at: int = 0, delay: float = 0.03) -> subprocess.Popen:
    script = KILLED_BUILD.format(tests=str(TESTS), out=str(out), data=str(data), exit_at=exit_at, delay=delay)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_build_killed_inside_a_transaction_rolls_back_and_resumes(tmp_path):
    data = make_footage(tmp_path / "footage", images=5, video_frames=20)
    reference = tmp_path / "reference"
    build_index(FakeDetector(), reference, [str(data)], fps=4.0, batch_size=1, progress=False)
    out = tmp_path / "idx"
    done = 0
    for exit_at in (4, 9):  # the planning commit is the first, then one per image or frame
        proc = _killed_build(out, data, exit_at=exit_at, delay=0.0)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 9, stderr.decode()
        assert (out / "index.sqlite-journal").exists()  # a hot journal: the transaction was under way
        info = check_consistent(out)  # opening rolls the journal back
        assert not (out / "index.sqlite-journal").exists()
        done += exit_at - 2  # the commits before the killed one
        assert info["images"] + info["frames"] == done
    build_index(FakeDetector(), out, [str(data)], fps=4.0, batch_size=1, progress=False)
    assert content(out) == content(reference)


def test_build_killed_at_random_moments_stays_consistent_and_resumes_to_the_same_content(tmp_path):
    data = make_footage(tmp_path / "footage", images=16, video_frames=30)
    reference = tmp_path / "reference"
    build_index(FakeDetector(), reference, [str(data)], fps=4.0, batch_size=1, progress=False)
    out = tmp_path / "killed"
    rng = random.Random(12)
    killed = 0
    for _ in range(5):
        # killed after a random number of commits (plus a random fraction of the next batch's work), so the
        # moment is random in the build's progress however slowly a loaded machine starts the process
        proc = _killed_build(out, data)
        wanted, seen = rng.randint(2, 8), 0
        for line in proc.stdout:
            seen += line.startswith(b"commit")
            if seen >= wanted:
                time.sleep(rng.uniform(0.0, 0.03))
                proc.send_signal(signal.SIGKILL)
                killed += 1
                break
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), stderr.decode()
        if (out / DB_NAME).exists():
            check_consistent(out)
    assert killed >= 4
    resumed = FakeDetector()
    build_index(resumed, out, [str(data)], fps=4.0, batch_size=1, progress=False)
    assert content(out) == content(reference)
    assert resumed.images < 16 + 12  # some work was kept from the killed runs


# ---------------------------------------------------------------------------------------- wrong model
def test_another_model_or_embedding_size_or_setting_is_a_one_line_error(tmp_path):
    data = make_footage(tmp_path / "footage", images=3, video_frames=0)
    out = tmp_path / "idx"
    build_index(FakeDetector(), out, [str(data)], progress=False)
    with pytest.raises(PersonSearchError, match=r"was built with model fake-model.*other-model"):
        build_index(FakeDetector("other-model"), out, [str(data)], progress=False)
    with pytest.raises(PersonSearchError, match="embedding size 16 versus 32"):
        build_index(FakeDetector(dim=32), out, [str(data)], progress=False)
    with pytest.raises(PersonSearchError, match="frames per second"):
        build_index(FakeDetector(), out, [str(data)], fps=5.0, progress=False)
    with pytest.raises(PersonSearchError, match="detection threshold"):
        build_index(FakeDetector(), out, [str(data)], progress=False, det_thresh=0.7)
    from personsearch.footage.builder import _BuildLock

    lock = _BuildLock(out)  # another build or update under way
    with pytest.raises(PersonSearchError, match=f"index {out} is being built or updated by another process"):
        build_index(FakeDetector(), out, [str(data)], progress=False)
    lock.release()
    with GalleryIndex.open(out) as index:
        index.check_model("fake-model", DIM)
        with pytest.raises(PersonSearchError, match="other"):
            index.check_model("other")


# ------------------------------------------------------------------------------------------- bad input
def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_bad_sources_are_one_line_errors_naming_the_file(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("hello")
    with pytest.raises(PersonSearchError, match=f"source {empty}: the folder holds no image"):
        build_index(FakeDetector(), tmp_path / "idx", [str(empty)], progress=False)
    with pytest.raises(PersonSearchError, match="does not exist"):
        build_index(FakeDetector(), tmp_path / "idx", [str(tmp_path / "missing")], progress=False)
    with pytest.raises(PersonSearchError, match="matches no image"):
        build_index(FakeDetector(), tmp_path / "idx", [str(tmp_path / "*.jpg")], progress=False)
    listing = tmp_path / "list.txt"
    listing.write_text("# nothing\n\n")
    with pytest.raises(PersonSearchError, match="list file names no image"):
        build_index(FakeDetector(), tmp_path / "idx", [str(listing)], progress=False)
    fake_video = tmp_path / "clip.mp4"
    fake_video.write_bytes(b"\x00" * 1000)
    with pytest.raises(PersonSearchError, match=f"video {fake_video} cannot be decoded"):
        build_index(FakeDetector(), tmp_path / "idx", [str(fake_video)], progress=False)
    assert not (tmp_path / "idx").exists()  # nothing created for sources that fail the checks

    # a list file (paths relative to it; a missing entry is skipped) and a glob; a broken video in a
    # folder is skipped and listed
    write_image(tmp_path / "pics" / "a.jpg", 1)
    write_image(tmp_path / "pics" / "b.png", 2)
    (tmp_path / "pics" / "bad.mp4").write_bytes(b"\x00" * 1000)
    listing.write_text("pics/a.jpg\npics/gone.jpg\n")
    summary = build_index(
        FakeDetector(), tmp_path / "idx", [str(listing), str(tmp_path / "pics" / "*.png")], progress=False
    )
    assert summary["images_added"] == 2
    assert {Path(r["path"]).name for r in summary["skipped"]} == {"gone.jpg"}
    summary = build_index(FakeDetector(), tmp_path / "idx2", [str(tmp_path / "pics")], progress=False)
    assert {Path(r["path"]).name for r in summary["skipped"]} == {"bad.mp4"}
    assert {Path(r["path"]).name for r in GalleryIndex.open(tmp_path / "idx2").info()["skipped"]} == {"bad.mp4"}


def test_missing_and_corrupt_indexes_are_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "nothing"
    _one_line_error(capsys, ["index", "info", "--index", str(missing)], str(missing), "does not exist")
    _one_line_error(capsys, ["index", "update", "--index", str(missing)], "does not exist")
    (tmp_path / "plain").mkdir()
    _one_line_error(capsys, ["index", "info", "--index", str(tmp_path / "plain")], "not a gallery index")

    data = make_footage(tmp_path / "footage", images=3, video_frames=0)
    good = tmp_path / "good"
    build_index(FakeDetector(), good, [str(data)], progress=False)

    not_sqlite = tmp_path / "not_sqlite"
    not_sqlite.mkdir()
    (not_sqlite / DB_NAME).write_bytes(b"garbage " * 100)
    _one_line_error(capsys, ["index", "info", "--index", str(not_sqlite)], DB_NAME, "not an SQLite database")

    def damaged(name: str, sql: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(good, folder)
        shutil.rmtree(folder / "cache", ignore_errors=True)
        conn = sqlite3.connect(folder / DB_NAME)
        conn.executescript(sql)
        conn.close()
        return folder

    no_table = damaged("no_table", "DROP TABLE detections;")
    _one_line_error(capsys, ["index", "info", "--index", str(no_table)], "table detections missing")
    fewer = damaged("fewer", "DELETE FROM detections WHERE id = (SELECT min(id) FROM detections);")
    _one_line_error(capsys, ["index", "info", "--index", str(fewer)], "detection vectors but holds")
    short = damaged("short", "UPDATE detections SET vector = x'00000000' WHERE id = (SELECT min(id) FROM detections);")
    _one_line_error(capsys, ["index", "info", "--index", str(short)], "do not have 16 float32 values")
    for folder in (not_sqlite, no_table, fewer, short):
        with pytest.raises(PersonSearchError):
            GalleryIndex.open(folder)
        with pytest.raises(PersonSearchError):
            build_index(FakeDetector(), folder, [str(data)], progress=False)
    # a stale or damaged cache is never trusted: rebuilt from the database
    cache = next((good / "cache").glob("vectors-*.npy"))
    cache.write_bytes(b"\x93NUMPY garbage")
    with GalleryIndex.open(good) as index:
        assert len(index) == index.info()["detections"]


# --------------------------------------------------------------------------------------- index types
def _synthetic_index(folder: Path, n_images: int = 500, per_image: int = 8, dim: int = 32, seed: int = 0):
    """An index written directly: clustered unit vectors, half the images frames of /v/a.mp4."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    db = IndexDB(folder / DB_NAME, {"model_id": "synthetic", "embedding_dim": dim, "sources": ["/v/a.mp4", "/v/b"]})
    vectors = []
    db.begin()
    video, _ = db.ensure_file("/v/a.mp4", "/v/a.mp4", "video", 1, 1)
    for i in range(n_images):
        x = centres[rng.integers(0, 60, per_image)] + 0.35 * rng.normal(size=(per_image, dim)) / np.sqrt(dim) * 3
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        vectors.append(x)
        boxes = np.tile([1.0, 2.0, 10.0, 30.0], (per_image, 1))
        if i % 2 == 0:
            db.add_image(video, "/v/a.mp4", "/v/a.mp4", 1, 1, 64, 48, boxes, np.ones(per_image), x, (i, i / 10, i))
        else:
            path = f"/v/b/{i:04d}.jpg"
            fid, _ = db.ensure_file(path, "/v/b", "image", 1, 1)
            db.add_image(fid, path, "/v/b", 1, 1, 64, 48, boxes, np.ones(per_image), x)
            db.finish_file(fid, "ok")
    db.finish_file(video, "ok")
    db.commit()
    db.close()
    return np.concatenate(vectors), rng


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivfpq"])
def test_each_index_type_recall_and_filters(tmp_path, index_type):
    vectors, rng = _synthetic_index(tmp_path / "idx")
    queries = vectors[rng.choice(len(vectors), 40, replace=False)] + 0.05 * rng.normal(size=(40, vectors.shape[1]))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    with GalleryIndex.open(tmp_path / "idx", index_type=index_type, ef_search=64, nprobe=16) as index:
        assert index.index_type == index_type and len(index) == len(vectors)
        frame_rows = np.repeat(np.arange(500) % 2 == 0, 8)
        recall, filtered_recall = [], []
        for q in queries:
            exact = set(np.argsort(-(vectors @ q), kind="stable")[:10].tolist())
            got = {h.detection_id - 1 for h in index.search(q, 10)}  # detection ids count from 1, in order
            recall.append(len(exact & got) / 10)
            # sources filter (half the detections) with the approximate search
            sims = np.where(frame_rows, vectors @ q, -np.inf)
            exact_f = set(np.argsort(-sims, kind="stable")[:10].tolist())
            hits = index.search(q, 10, sources=["/v/a.mp4"])
            assert len(hits) == 10 and all(h.path == "/v/a.mp4" and h.timestamp is not None for h in hits)
            filtered_recall.append(len(exact_f & {h.detection_id - 1 for h in hits}) / 10)
        threshold = 1.0 if index_type == "flat" else 0.9
        assert np.mean(recall) >= threshold and np.mean(filtered_recall) >= threshold, (recall, filtered_recall)
        # a selective filter: exact over the allowed detections, whatever the index type
        q = queries[0]
        hits = index.search(q, 10, time_range=(1.0, 2.0), exclude_paths=["/v/b/0001.jpg"])
        allowed = np.flatnonzero(np.repeat((np.arange(500) % 2 == 0) & (np.arange(500) / 10 >= 1.0), 8))
        allowed = allowed[np.repeat(np.arange(500) / 10, 8)[allowed] <= 2.0]
        best = allowed[np.argsort(-(vectors[allowed] @ q), kind="stable")[:10]]
        assert [h.detection_id - 1 for h in hits] == best.tolist()
        assert all(1.0 <= h.timestamp <= 2.0 for h in hits)
        few = index.search(q, 10, sources=["/v/b/0003.jpg"])
        assert len(few) == 8 and {h.path for h in few} == {"/v/b/0003.jpg"}
        assert index.search(q, 10, exclude_paths=["/v/a.mp4", "/v/b"]) != []  # a folder is not an excluded path
    if index_type != "flat":  # the approximate index was cached, keyed by the commit counter
        assert list((tmp_path / "idx" / "cache").glob(f"{index_type}-*.faiss"))


# ---------------------------------------------------------------------------------------- two processes
def _sharded_worker(rank: int, out: str, data: str) -> None:
    from personsearch.engine.distributed import init_distributed, shutdown

    info = init_distributed("cpu")
    summary = build_index(FakeDetector(), out, [data], fps=4.0, batch_size=2, progress=False)
    if rank == 0:
        assert summary["world_size"] == 2
    else:
        assert summary["rank"] == 1 and summary["images_added"] + summary["frames_added"] > 0
    shutdown(info)


def test_two_process_sharded_build_equals_a_single_process_build(tmp_path):
    data = make_footage(tmp_path / "footage", images=9, video_frames=20)
    single = tmp_path / "single"
    build_index(FakeDetector(), single, [str(data)], fps=4.0, batch_size=2, progress=False)
    sharded = tmp_path / "sharded"
    run_ranks(_sharded_worker, str(sharded), str(data))
    assert content(sharded) == content(single)
    assert not (sharded / "shards").exists()  # merged and removed
    check_consistent(sharded)
    # a shard left by a killed run is merged by the next one (here: a single-process update)
    shard = sharded / "shards" / "shard-1.sqlite"
    write_image(data / "late.jpg", seed=77)
    db = IndexDB(shard, {"model_id": "fake-model", "embedding_dim": DIM})
    from personsearch.footage.builder import _Indexer, _Stats
    from personsearch.footage.sources import scan_sources

    late = [f for f in scan_sources([str(data)]).files if f.path.endswith("late.jpg")]
    from personsearch.footage.builder import Job

    class Bar:
        def update(self, n):
            pass

    _Indexer(db, FakeDetector(), 2, 4.0, Bar(), _Stats()).run([Job(late[0])])
    db.close()
    counting = FakeDetector()
    summary = build_index(counting, sharded, [str(data)], fps=4.0, progress=False)
    assert counting.images == 0 and summary["files_unchanged"] == summary["info"]["files"]
    build_index(FakeDetector(), single, [str(data)], fps=4.0, progress=False)
    assert content(sharded) == content(single)


# ------------------------------------------------------------------------------------- a real checkpoint
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from personsearch.data.synthetic import generate_dataset

    from handmade import TINY_MODEL

    work = tmp_path_factory.mktemp("index-ckpt")
    root = generate_dataset("cuhk-sysu", work / "CUHK-SYSU", "tiny", seed=3).root
    overrides = ["train.epochs=1", "train.max_iters_per_epoch=1", "train.batch_size=1", "train.workers=0"]
    overrides += ["train.eval_period=-1", "train.tensorboard=false", "model.box_head.detections_per_img=8"]
    argv = ["train", "--no-progress", f"dataset.root={root}", f"output_dir={work / 'run'}", *overrides, *TINY_MODEL]
    assert main(argv) == 0
    return work / "run" / "last.pth", sorted((root / "Image" / "SSM").glob("*.jpg"))[:3]


def test_cli_build_update_info_with_a_real_checkpoint(checkpoint, tmp_path, capsys):
    ckpt, scenes = checkpoint
    footage = tmp_path / "footage"
    footage.mkdir()
    for scene in scenes[:2]:
        shutil.copy(scene, footage / scene.name)
    write_video(footage / "clip.mp4", frames=10, rate=10, size=(96, 64))
    out = tmp_path / "idx"
    argv = ["index", "build", "--checkpoint", str(ckpt), "--out", str(out), str(footage), "--no-progress"]
    argv += ["--det-thresh", "0.0", "--device", "cpu", "--json", str(tmp_path / "summary.json")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 images and 1 video frames" in printed and (tmp_path / "summary.json").is_file()
    with GalleryIndex.open(out) as index:
        assert index.checkpoint == os.path.abspath(ckpt) and index.embedding_dim == 256 and len(index) > 0
        assert index.model_id == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        vector = np.asarray(index._vectors[0])
        np.testing.assert_allclose(np.linalg.norm(index._vectors, axis=1), 1.0, atol=1e-4)
        assert index.search(vector, 3)[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert main(["index", "update", "--index", str(out), "--no-progress"]) == 0
    assert "nothing new to index" in capsys.readouterr().out
    assert main(["index", "info", "--index", str(out), "--json"]) == 0
    assert '"frames": 1' in capsys.readouterr().out
    other = tmp_path / "other.pth"
    other.write_bytes(ckpt.read_bytes() + b"\0")
    _one_line_error(
        capsys, ["index", "update", "--index", str(out), "--checkpoint", str(other)], "was built with model"
    )
    (tmp_path / "empty").mkdir()
    build = [*argv[:2], "--checkpoint", str(ckpt), "--out", str(tmp_path / "x"), str(tmp_path / "empty")]
    _one_line_error(capsys, build, "no image")
