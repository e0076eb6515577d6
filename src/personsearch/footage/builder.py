"""Building and updating a gallery index: every person in folders, globs, list files and videos, detected and
embedded by a model and stored in :mod:`personsearch.footage.store`.

:func:`build_index` is incremental and resumable. Files are compared with the index by size and
modification time: new and changed ones are (re-)indexed, unchanged ones kept, and files no longer in the
sources removed. Work is committed a batch at a time (the images, their detections and embeddings in one
SQLite transaction), so a build killed at any moment leaves a consistent index and the next run continues
where it stopped (a video part-way through resumes after its last committed frame). Unreadable files are
skipped, counted and listed, and the build goes on.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the work is split: rank 0 scans the sources and plans the work, each
rank indexes a deterministic share (every ``world_size``-th file of the plan) into its own shard database
under ``INDEX/shards/``, and rank 0 merges the shards into ``index.sqlite`` at the end (a shard left by a
killed run is merged at the start of the next one).

The detector is any object with ``detect(images) -> list[Detections]`` (``images``: a list of ``H x W x 3``
``uint8`` RGB arrays), ``embedding_dim`` and ``model_id``: a :class:`personsearch.Searcher`, or a stand-in.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personsearch.errors import PersonSearchError
from personsearch.footage.sources import (
    Scan,
    SourceFile,
    VideoDecodeError,
    estimate_samples,
    sample_frames,
    scan_sources,
)
from personsearch.footage.store import (
    DB_NAME,
    DEFAULT_SEARCH,
    INDEX_TYPES,
    SHARD_DIR,
    GalleryIndex,
    IndexDB,
    check_db,
    connect,
    db_error,
    model_mismatch,
    resolve_index,
    shard_dbs,
)

__all__ = ["build_index", "preflight"]


@dataclass
class Job:
    """One file to index; a video resumes after ``after_frame``."""

    file: SourceFile
    after_frame: int = -1
    file_id: int | None = None


@dataclass
class _Unit:
    job: Job
    image: np.ndarray
    frame: tuple[int, float, int | None] | None = None  # (frame index, timestamp, pts) of a video frame


@dataclass
class _Stats:
    images: int = 0  # still images indexed
    frames: int = 0  # video frames indexed
    detections: int = 0
    batches: int = 0
    detector_calls: int = 0
    unreadable: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "images_added": self.images,
            "frames_added": self.frames,
            "detections_added": self.detections,
            "batches": self.batches,
            "detector_calls": self.detector_calls,
            "unreadable": list(self.unreadable),
        }


def _check_params(fps: float, batch_size: int, options: dict[str, Any]) -> None:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise PersonSearchError(f"fps must be a positive number, got {fps}")
    if int(batch_size) < 1:
        raise PersonSearchError(f"batch_size must be a positive integer, got {batch_size}")
    if options.get("index_type") is not None and options["index_type"] not in INDEX_TYPES:
        raise PersonSearchError(f"index_type must be one of {', '.join(INDEX_TYPES)}, got {options['index_type']!r}")
    for key in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "refine"):
        value = options.get(key)
        if value is not None and int(value) < 1:
            raise PersonSearchError(f"{key} must be a positive integer, got {value}")


def read_meta_of(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The meta of the index at ``out`` (checked), or None when there is none yet."""
    folder = Path(out)
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise PersonSearchError(f"index {out} is a file; an index is a folder (give a new folder name)")
    db = folder / DB_NAME
    if not db.exists():
        return None
    _, db = resolve_index(folder)
    conn = connect(db, readonly=True)
    try:
        conn.execute("BEGIN")
        try:
            return check_db(conn, db)
        finally:
            conn.execute("COMMIT")
    except Exception as exc:
        if isinstance(exc, PersonSearchError):
            raise
        raise db_error(db, exc) from None
    finally:
        conn.close()


def _check_compatible(
    out, meta: dict[str, Any], model_id: str | None, dim: int | None, fps: float, det_thresh: float | None, what: str
) -> None:
    other_dim = dim is not None and int(dim) != meta["embedding_dim"]
    if model_id is not None and (model_id != meta["model_id"] or other_dim):
        raise PersonSearchError(model_mismatch(out, meta, model_id, dim, what))
    recorded = meta.get("det_thresh")
    if det_thresh is not None and recorded is not None and abs(float(det_thresh) - float(recorded)) > 1e-9:
        raise PersonSearchError(
            f"index {out} was built with detection threshold {recorded:g}, not {det_thresh:g}: "
            "update it with the same threshold, or build a new index"
        )
    recorded = meta.get("fps")
    if recorded is not None and abs(float(fps) - float(recorded)) > 1e-9:
        raise PersonSearchError(
            f"index {out} samples videos at {recorded:g} frames per second, not {fps:g}: "
            "update it with the same --fps, or build a new index"
        )


def _source_list(sources) -> list[str]:
    """``sources`` as a list of strings (one path or pattern alone is a list of one)."""
    if isinstance(sources, (str, os.PathLike)):
        return [os.fspath(sources)]
    return [os.fspath(s) for s in sources]


def preflight(
    out: str | os.PathLike[str],
    sources: list[str],
    model_id: str | None = None,
    embedding_dim: int | None = None,
    fps: float = 1.0,
    det_thresh: float | None = None,
    what: str = "the model",
) -> Scan:
    """The checks of :func:`build_index` that need no model (run before loading one): ``out`` is a new
    folder or an index of this model (and of this ``fps`` and ``det_thresh``), and the sources exist and
    hold something to index. Returns the scan of the sources."""
    sources = _source_list(sources)
    if not sources:
        raise PersonSearchError("no sources given (folders, globs, list files or videos to index)")
    meta = read_meta_of(out)
    if meta is not None:
        _check_compatible(out, meta, model_id, embedding_dim, fps, det_thresh, what)
    return scan_sources(sources, exclude=[os.path.abspath(out)])


class _Indexer:
    """Runs the detector over jobs a batch at a time and commits each batch into ``db``."""

    def __init__(self, db: IndexDB, detector, batch_size: int, fps: float, bar, stats: _Stats, hook=None) -> None:
        self.db = db
        self.detector = detector
        self.batch_size = int(batch_size)
        self.fps = float(fps)
        self.bar = bar
        self.stats = stats
        self.dim = int(detector.embedding_dim)
        self.pending: list[_Unit] = []
        self.finished: list[tuple[Job, str, str | None]] = []
        self.hook = hook

    def run(self, jobs: list[Job]) -> None:
        from personsearch.data.images import load_image

        for job in jobs:
            f = job.file
            if f.kind == "image":
                try:
                    image = load_image(f.path)
                except Exception as exc:  # unreadable: skipped, recorded, listed
                    message = str(exc) if isinstance(exc, PersonSearchError) else f"{type(exc).__name__}: {exc}"
                    message = message.removeprefix(f"{f.path}: ")
                    self._unreadable(job, "unreadable", message)
                    self.bar.update(1)
                    continue
                self._add(_Unit(job, image))
                continue
            status, error = "ok", None
            try:
                for frame in sample_frames(f.path, self.fps, job.after_frame):
                    if frame.image is None:
                        self.bar.update(1)
                        continue
                    self._add(_Unit(job, frame.image, (frame.frame_index, frame.timestamp, frame.pts)))
            except VideoDecodeError as exc:
                status, error = ("damaged" if exc.frames else "unreadable"), str(exc)
            except PersonSearchError as exc:
                status, error = "unreadable", str(exc)
            if status != "ok":
                self.stats.unreadable.append({"path": f.path, "source": f.source, "reason": error or status})
            self.finished.append((job, status, error))
        self.flush()

    def _unreadable(self, job: Job, status: str, message: str) -> None:
        self.stats.unreadable.append({"path": job.file.path, "source": job.file.source, "reason": message})
        self.finished.append((job, status, message))
        if len(self.finished) >= self.batch_size * 8:
            self.flush()

    def _add(self, unit: _Unit) -> None:
        self.pending.append(unit)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def _detect(self, units: list[_Unit]):
        results = list(self.detector.detect([u.image for u in units]))
        self.stats.detector_calls += 1
        if len(results) != len(units):
            raise PersonSearchError(f"the detector returned {len(results)} results for {len(units)} images")
        checked = []
        for unit, det in zip(units, results, strict=True):
            boxes = np.asarray(det.boxes, dtype=np.float32).reshape(-1, 4)
            scores = np.asarray(det.scores, dtype=np.float32).reshape(-1)
            emb = np.asarray(det.embeddings, dtype=np.float32).reshape(len(boxes), -1) if len(boxes) else None
            if emb is None:
                emb = np.zeros((0, self.dim), dtype=np.float32)
            if len(scores) != len(boxes) or emb.shape[1] != self.dim:
                raise PersonSearchError(
                    f"the detector returned {len(boxes)} boxes, {len(scores)} scores and embeddings of shape "
                    f"{emb.shape} for {unit.job.file.path}; expected {self.dim}-dimensional embeddings"
                )
            if not (np.isfinite(boxes).all() and np.isfinite(scores).all() and np.isfinite(emb).all()):
                raise PersonSearchError(f"the detector returned NaN or infinite values for {unit.job.file.path}")
            checked.append((boxes, scores, emb))
        return checked

    def _file_id(self, job: Job) -> int:
        if job.file_id is None:
            f = job.file
            job.file_id, _ = self.db.ensure_file(f.path, f.source, f.kind, f.size, f.mtime_ns)
        return job.file_id

    def flush(self) -> None:
        if not self.pending and not self.finished:
            return
        units, self.pending = self.pending, []
        finished, self.finished = self.finished, []
        results = self._detect(units) if units else []
        db = self.db
        db.begin()
        try:
            for unit, (boxes, scores, emb) in zip(units, results, strict=True):
                f = unit.job.file
                file_id = self._file_id(unit.job)
                height, width = unit.image.shape[:2]
                db.add_image(
                    file_id, f.path, f.source, f.size, f.mtime_ns, width, height, boxes, scores, emb, unit.frame
                )
                if unit.frame is None:
                    db.finish_file(file_id, "ok")
                    self.stats.images += 1
                else:
                    self.stats.frames += 1
                self.stats.detections += len(boxes)
            for job, status, error in finished:
                db.finish_file(self._file_id(job), status, error)
            db.commit()
        except BaseException:
            db.rollback()
            for unit in units:  # the ids of rows this transaction created are void
                unit.job.file_id = None
            for job, _, _ in finished:
                job.file_id = None
            raise
        self.stats.batches += 1
        self.bar.update(len(units))
        if self.hook is not None:
            self.hook(self.stats.batches)


def _plan(db: IndexDB, scan: Scan) -> tuple[list[Job], list[int], dict[str, int], list[tuple[int, str]]]:
    """Jobs (new, changed, unfinished files), ids of files to remove, counts, and files whose source moved."""
    existing = db.files()
    scanned = {f.path for f in scan.files}
    removed = [row[0] for path, row in existing.items() if path not in scanned]
    counts = {"new": 0, "changed": 0, "resumed": 0, "unchanged": 0, "removed": len(removed)}
    jobs: list[Job] = []
    moved: list[tuple[int, str]] = []
    for f in scan.files:
        row = existing.get(f.path)
        if row is None:
            counts["new"] += 1
            jobs.append(Job(f))
        elif row[1] != f.size or row[2] != f.mtime_ns:
            counts["changed"] += 1
            jobs.append(Job(f))
        elif row[3] == "indexing":
            counts["resumed"] += 1
            jobs.append(Job(f, after_frame=int(row[4]) if f.kind == "video" else -1))
        else:
            counts["unchanged"] += 1
            if row[5] != f.source:
                moved.append((row[0], f.source))
    return jobs, removed, counts, moved


def _distributed(options: dict[str, Any]):
    """``(rank, world_size, torch.distributed)`` under torchrun (None for a single process)."""
    wanted = options.get("distributed")
    if wanted is False or (wanted is None and int(os.environ.get("WORLD_SIZE", "1")) <= 1):
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        from personsearch.engine.distributed import init_distributed

        info = init_distributed("cpu")
        if not info.enabled:
            return None
    if dist.get_world_size() <= 1:
        return None
    return dist.get_rank(), dist.get_world_size(), dist


def _progress_bar(jobs: list[Job], fps: float, progress: bool, desc: str):
    from tqdm import tqdm

    total = sum(1 if j.file.kind == "image" else estimate_samples(j.file.path, fps) for j in jobs) if progress else 0
    return tqdm(total=total, unit="img", desc=desc, disable=not progress, dynamic_ncols=True, smoothing=0.1)


def _open_main(folder: Path, detector, checkpoint, fps: float, options: dict[str, Any], sources: list[str]) -> IndexDB:
    meta = {
        "model_id": str(detector.model_id),
        "embedding_dim": int(detector.embedding_dim),
        "checkpoint": None if checkpoint is None else os.path.abspath(os.fspath(checkpoint)),
        "det_thresh": options.get("det_thresh"),
        "fps": float(fps),
        "sources": sources,
        **{k: v for k, v in DEFAULT_SEARCH.items()},
        **{k: options[k] for k in DEFAULT_SEARCH if options.get(k) is not None},
    }
    return IndexDB(folder / DB_NAME, meta)


def build_index(
    detector,
    out: str | os.PathLike[str],
    sources: list[str],
    fps: float = 1.0,
    batch_size: int = 4,
    progress: bool = True,
    checkpoint: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Index every person in ``sources`` into the gallery index folder ``out`` (created, or brought up to
    date: the sources given replace the recorded ones). Returns a summary (files new / changed / resumed /
    unchanged / removed, images, frames and detections added, skipped files with the reason, seconds,
    images per second, and the index's :meth:`~personsearch.footage.store.GalleryIndex.info`).

    ``options``: ``det_thresh`` (recorded; default the detector's ``det_thresh``), the search options
    ``index_type`` (flat | hnsw | ivfpq | auto), ``ef_search``, ``nprobe``, ``hnsw_m``, ``ef_construction``,
    ``nlist``, ``pq_m``, ``refine`` (recorded), ``build_search_index`` (default True: build and cache the
    faiss index at the end), ``distributed`` (default: under torchrun), ``scan`` (a
    :func:`preflight` result to reuse), ``after_batch`` (called with the number of batches committed).
    """
    start = time.perf_counter()
    sources = _source_list(sources)
    _check_params(fps, batch_size, options)
    options.setdefault("det_thresh", getattr(detector, "det_thresh", None))
    folder = Path(out)
    dist_ctx = _distributed(options)
    rank, world = (0, 1) if dist_ctx is None else dist_ctx[:2]
    plan: dict[str, Any] = {}
    db: IndexDB | None = None
    lock: _BuildLock | None = None
    if rank == 0:
        try:
            db, plan, lock = _prepare(detector, folder, sources, fps, checkpoint, options)
        except PersonSearchError as exc:
            if dist_ctx is None:
                raise
            plan = {"error": str(exc)}
    if dist_ctx is not None:
        box = [plan]
        dist_ctx[2].broadcast_object_list(box, src=0)
        plan = box[0]
    try:
        if "error" in plan:
            raise PersonSearchError(plan["error"])
        try:
            local = _index_jobs(detector, folder, plan, db, dist_ctx, fps, batch_size, progress, options)
        finally:
            if db is not None:
                db.close()
        if local.get("rank", 0) != 0:
            return local
        summary = _summary(folder, plan, local, start, options.get("build_search_index", True))
    finally:
        if lock is not None:
            lock.release()
    if dist_ctx is not None:
        summary["world_size"] = world
    return summary


class _BuildLock:
    """An exclusive lock on ``INDEX/build.lock`` (``flock``) while a build or update runs: a second one on
    the same index is a one-line error instead of racing the first."""

    def __init__(self, folder: Path) -> None:
        self.handle = None
        try:
            import fcntl
        except ImportError:  # no flock on this platform: no lock
            return
        path = folder / "build.lock"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 (held until release)
        except OSError as exc:
            raise PersonSearchError(f"index {folder}: cannot create {path.name} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise PersonSearchError(
                f"index {folder} is being built or updated by another process (pid {holder}); wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file releases the lock
            self.handle = None


def _index_jobs(detector, folder: Path, plan, db: IndexDB | None, dist_ctx, fps, batch_size, progress, options):
    """Index this process's jobs (into ``index.sqlite``, or its shard under torchrun); rank 0 then merges
    the shards. The summed statistics (``{"rank": r, ...}`` on the other ranks)."""
    rank, world = (0, 1) if dist_ctx is None else dist_ctx[:2]
    jobs: list[Job] = plan["jobs"]
    stats = _Stats()
    failure: str | None = None
    if dist_ctx is None:
        assert db is not None
        target = db
    else:
        jobs = jobs[rank::world]
        shard_path = folder / SHARD_DIR / f"shard-{rank}.sqlite"
        shard_path.parent.mkdir(parents=True, exist_ok=True)
        if shard_path.exists():  # rank 0 merged every shard before planning: a merged leftover
            shard_path.unlink()
        target = IndexDB(shard_path, {**plan["meta"], "shard": rank})
    desc = "index" if world == 1 else f"index rank {rank}/{world}"
    bar = _progress_bar(jobs, fps, progress and rank == 0, desc)
    try:
        _Indexer(target, detector, batch_size, fps, bar, stats, options.get("after_batch")).run(jobs)
    except PersonSearchError as exc:
        if dist_ctx is None:
            raise
        failure = str(exc)
    finally:
        bar.close()
        if target is not db:
            target.close()
    local = stats.as_dict()
    if dist_ctx is not None:
        gathered: list[Any] = [None] * world
        dist_ctx[2].all_gather_object(gathered, {"stats": local, "error": failure})
        errors = [g["error"] for g in gathered if g["error"]]
        if errors:
            raise PersonSearchError(errors[0])
        if rank != 0:
            return {"rank": rank, **local}
        local = _sum_stats([g["stats"] for g in gathered])
    assert db is not None
    for shard in shard_dbs(folder):
        db.merge(shard)
    _remove_empty_folder(folder / SHARD_DIR)
    return local


def _remove_empty_folder(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def _sum_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, list):
                total.setdefault(key, []).extend(value)
            else:
                total[key] = total.get(key, 0) + value
    return total


def _prepare(detector, folder: Path, sources, fps, checkpoint, options) -> tuple[IndexDB, dict[str, Any], _BuildLock]:
    """Rank 0's part before indexing: checks, scan, merge of leftover shards, removals; the plan."""
    model_id, dim = str(detector.model_id), int(detector.embedding_dim)
    scan: Scan = options.get("scan") or preflight(
        folder, list(sources), model_id, dim, fps, options.get("det_thresh"), "the detector's model"
    )
    if options.get("scan") is not None:  # the checks of preflight, against the index as it is now
        meta = read_meta_of(folder)
        if meta is not None:
            _check_compatible(folder, meta, model_id, dim, fps, options.get("det_thresh"), "the detector's model")
    lock = _BuildLock(folder)
    try:
        db = _open_main(folder, detector, checkpoint, fps, options, scan.sources)
    except BaseException:
        lock.release()
        raise
    try:
        for shard in shard_dbs(folder):
            db.merge(shard)
        jobs, removed, counts, moved = _plan(db, scan)
        db.begin()
        try:
            for file_id in removed:
                db.remove_file(file_id)
            for file_id, source in moved:
                db.conn.execute("UPDATE files SET source = ? WHERE id = ? AND source != ?", (source, file_id, source))
                db.conn.execute(
                    "UPDATE images SET source = ? WHERE file_id = ? AND source != ?", (source, file_id, source)
                )
            db.set_skipped(scan.skipped)
            update = {
                "sources": scan.sources,
                "fps": float(fps),
                "det_thresh": options.get("det_thresh"),
                **{k: options[k] for k in DEFAULT_SEARCH if options.get(k) is not None},
            }
            if checkpoint is not None:
                update["checkpoint"] = os.path.abspath(os.fspath(checkpoint))
            db.commit(**update)
        except BaseException:
            db.rollback()
            raise
    except BaseException:
        db.close()
        lock.release()
        raise
    shard_meta = {
        key: db.meta[key] for key in ("model_id", "embedding_dim", "checkpoint", "det_thresh", "fps", "sources")
    }
    plan = {
        "jobs": jobs,
        "counts": counts,
        "skipped": [{"path": p, "source": s, "reason": r} for p, s, r in scan.skipped],
        "sources": scan.sources,
        "meta": shard_meta,
    }
    return db, plan, lock


def _summary(folder: Path, plan: dict[str, Any], stats: dict[str, Any], start: float, build_search: bool) -> dict:
    seconds_indexing = time.perf_counter() - start
    done = stats["images_added"] + stats["frames_added"]
    info: dict[str, Any]
    with GalleryIndex.open(folder, "w") as index:
        if build_search and index.index_type != "flat" and len(index):
            index.ann()
        info = index.info()
    skipped = plan["skipped"] + stats["unreadable"]
    return {
        "index": str(folder),
        "sources": plan["sources"],
        **{f"files_{k}": v for k, v in plan["counts"].items()},
        **{k: v for k, v in stats.items() if k != "unreadable"},
        "skipped": skipped,
        "skipped_count": len(skipped),
        "seconds": round(time.perf_counter() - start, 3),
        "images_per_second": round(done / seconds_indexing, 3) if seconds_indexing > 0 and done else 0.0,
        "info": info,
    }
