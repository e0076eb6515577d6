"""The persistent gallery index: metadata and embeddings in one SQLite database, searched with faiss.

An index is a folder::

    INDEX/index.sqlite      meta, files, images, detections (with their embeddings), skipped
    INDEX/cache/            derived, rebuilt when missing or stale: the embeddings as a float32 .npy
                            (memory-mapped), the detection table as .npz, the approximate faiss index
    INDEX/shards/           per-rank databases of a torchrun build, merged into index.sqlite at its end

Everything that matters lives in ``index.sqlite`` (stdlib ``sqlite3``): each embedding is a ``float32`` BLOB
in its detection's row, so a batch of images, their detections and their embeddings are committed in one
transaction and a kill at any moment leaves the previous commit: metadata and vectors never disagree. The
``meta`` table holds a commit counter (``generation``), raised by every transaction that changes images or
detections; the cache files
are named after it (and after the index's uuid) and written atomically, so a cache is used only when it was
made from exactly the committed state, and is otherwise rebuilt from the database (never trusted).

Retrieval (:meth:`GalleryIndex.search`) is an exact inner product (faiss ``IndexFlatIP``) by default; an
approximate index (``hnsw``: ``IndexHNSWFlat`` with the inner product; ``ivfpq``: ``IndexIVFPQ`` whose
candidates are re-ranked exactly) is chosen with ``index_type`` (``auto``: flat below
:data:`AUTO_THRESHOLD` vectors, hnsw above). Filters (sources, time range, excluded paths) are applied
inside the search (a faiss ``IDSelectorBitmap``), and a filter that keeps few detections, or an approximate
search that returns fewer allowed hits than asked for, falls back to an exact search over the allowed
detections: a filtered search never misses hits because of the approximation.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from personsearch.errors import PersonSearchError
from personsearch.outputs import atomic_file

if TYPE_CHECKING:
    import faiss

DB_NAME = "index.sqlite"
CACHE_DIR = "cache"
SHARD_DIR = "shards"
SCHEMA_VERSION = 1
#: ``index_type=auto`` uses the exact flat index below this many vectors, HNSW from it on.
AUTO_THRESHOLD = 200_000
INDEX_TYPES = ("flat", "hnsw", "ivfpq", "auto")
#: Approximate-search parameters and their defaults (recorded in the index; see benchmarks/index_speed.py).
DEFAULT_SEARCH = {
    "index_type": "auto",
    "hnsw_m": 32,
    "ef_construction": 80,
    "ef_search": 128,
    "nlist": 0,  # 0: about sqrt(number of vectors)
    "pq_m": 0,  # 0: embedding_dim / 8 sub-quantizers
    "nprobe": 64,
    "refine": 16,  # IVF-PQ: re-rank refine * top_k candidates exactly
}
#: A filter keeping at most this many detections (or this fraction of them) is searched exactly.
EXACT_SUBSET = 20_000
EXACT_FRACTION = 0.02

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,             -- image | video
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,           -- ok | unreadable | damaged (video decoded part-way) | indexing (video)
    error TEXT,
    last_frame INTEGER NOT NULL DEFAULT -1   -- video: frame index of the last committed frame
);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    video INTEGER NOT NULL,         -- 1 for a video frame
    timestamp REAL,                 -- video frame: seconds from the start
    frame_index INTEGER,            -- video frame: ordinal of the decoded frame
    pts INTEGER,                    -- video frame: presentation time stamp (stream time base)
    status TEXT NOT NULL DEFAULT 'ok'
);
CREATE INDEX images_file ON images(file_id);
CREATE INDEX images_path ON images(path);
CREATE TABLE detections (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    score REAL NOT NULL,
    vector BLOB NOT NULL            -- embedding_dim float32 values (little-endian), L2-normalised
);
CREATE INDEX detections_image ON detections(image_id);
CREATE TABLE skipped (path TEXT PRIMARY KEY, source TEXT NOT NULL, reason TEXT NOT NULL);
"""
TABLES = ("meta", "files", "images", "detections", "skipped")
F32 = np.dtype("<f4")
_CACHE_KEY = re.compile(r"-(?P<uuid>[0-9a-f]{32})-g(?P<gen>\d+)\.")


# ------------------------------------------------------------------------------------------- the database
def resolve_index(path: str | os.PathLike[str], must_exist: bool = True) -> tuple[Path, Path]:
    """``(folder, database)`` of an index given as its folder (or its ``index.sqlite``)."""
    folder = Path(path)
    if folder.name == DB_NAME and folder.is_file():
        folder = folder.parent
    db = folder / DB_NAME
    if must_exist:
        if not folder.exists():
            raise PersonSearchError(f"gallery index {path} does not exist (build one with personsearch index build)")
        if not folder.is_dir():
            raise PersonSearchError(f"gallery index {path} is not a folder (an index is a folder holding {DB_NAME})")
        if not db.is_file():
            raise PersonSearchError(f"{path} is not a gallery index: it holds no {DB_NAME}")
    return folder, db


def db_error(db: Path, exc: BaseException) -> PersonSearchError:
    """A one-line error for an SQLite failure on ``db``."""
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        return PersonSearchError(f"{db} is damaged or not an SQLite database ({text})")
    if "locked" in text or "busy" in text:
        return PersonSearchError(f"{db} is locked by another process ({text}); try again when it finishes")
    return PersonSearchError(f"{db}: database error ({type(exc).__name__}: {text})")


def connect(db: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit: ``BEGIN`` ... ``COMMIT``).

    ``readonly``: nothing is written through it (``PRAGMA query_only``); it is still opened read-write when
    the file and its folder are writable, so that SQLite can roll back the journal of a writer killed
    part-way through a transaction (a read-only connection cannot, and fails).
    """
    db = Path(db)
    try:
        if readonly and not (os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)):
            conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            if readonly and not db.exists():
                raise PersonSearchError(f"{db} does not exist")
            conn = sqlite3.connect(str(db), isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        return conn
    except sqlite3.Error as exc:
        raise db_error(db, exc) from None


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    return {key: json.loads(value) for key, value in conn.execute("SELECT key, value FROM meta")}


def set_meta(conn: sqlite3.Connection, **values: Any) -> None:
    conn.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(k, json.dumps(v)) for k, v in values.items()],
    )


def check_db(conn: sqlite3.Connection, db: Path) -> dict[str, Any]:
    """The index's meta after checking the database is a gallery index of this schema and its counts agree;
    a one-line :class:`PersonSearchError` naming ``db`` otherwise. Call inside a read transaction."""
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise db_error(db, exc) from None
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise PersonSearchError(f"{db} is not a gallery index or is damaged: table {', '.join(missing)} missing")
    try:
        meta = read_meta(conn)
    except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
        raise PersonSearchError(f"{db} is damaged: unreadable meta table ({exc})") from None
    for key in ("schema_version", "model_id", "embedding_dim", "generation", "detections", "images", "uuid"):
        if key not in meta:
            raise PersonSearchError(f"{db} is not a gallery index or is damaged: meta has no {key}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise PersonSearchError(
            f"{db} has index format {meta['schema_version']}, this personsearch reads format {SCHEMA_VERSION}; "
            "rebuild the index"
        )
    try:
        detections = conn.execute("SELECT count(*) FROM detections").fetchone()[0]
        images = conn.execute("SELECT count(*) FROM images").fetchone()[0]
        wrong = conn.execute(
            "SELECT count(*) FROM detections WHERE length(vector) != ?", (4 * int(meta["embedding_dim"]),)
        ).fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise db_error(db, exc) from None
    if detections != meta["detections"]:
        raise PersonSearchError(
            f"{db} is damaged: it records {meta['detections']} detection vectors but holds {detections}"
        )
    if images != meta["images"]:
        raise PersonSearchError(f"{db} is damaged: it records {meta['images']} images but holds {images}")
    if wrong:
        raise PersonSearchError(
            f"{db} is damaged: {wrong} detection vectors do not have {meta['embedding_dim']} float32 values"
        )
    return meta


def create_db(db: Path, meta: dict[str, Any]) -> None:
    """Create an empty index database with ``meta`` (written to a temporary file, then renamed: a kill never
    leaves half a schema)."""
    try:
        with atomic_file(db) as tmp:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.executescript(SCHEMA)
                now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                values = {
                    "schema_version": SCHEMA_VERSION,
                    "uuid": uuid.uuid4().hex,
                    "generation": 0,
                    "detections": 0,
                    "images": 0,
                    "created": now,
                    "updated": now,
                    "merged_shards": [],
                    **meta,
                }
                conn.execute("BEGIN")
                set_meta(conn, **values)
                conn.execute("COMMIT")
            finally:
                conn.close()
    except sqlite3.Error as exc:
        raise db_error(db, exc) from None


class IndexDB:
    """Writes to an index database: files, their images and detections, each batch one transaction.

    Used by the builder (on ``index.sqlite``, or on a rank's shard database) and to merge shards.
    """

    def __init__(self, db: Path, meta: dict[str, Any] | None = None) -> None:
        self.db = Path(db)
        if meta is not None and not self.db.exists():
            create_db(self.db, meta)
        self.conn = connect(self.db)
        try:
            self.conn.execute("BEGIN")
            self.meta = check_db(self.conn, self.db)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.close()
            raise
        self.dim = int(self.meta["embedding_dim"])
        self._in_tx = False

    # transactions -------------------------------------------------------------------------------------
    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        self._delta_images = 0
        self._delta_detections = 0
        self._dirty = False

    def commit(self, **meta: Any) -> None:
        m = read_meta(self.conn)
        set_meta(
            self.conn,
            # the commit counter the caches are keyed on: raised when images or detections changed
            generation=int(m["generation"]) + int(self._dirty),
            images=int(m["images"]) + self._delta_images,
            detections=int(m["detections"]) + self._delta_detections,
            updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **meta,
        )
        self.conn.execute("COMMIT")
        self._in_tx = False
        self.meta = {**m, **meta}

    def rollback(self) -> None:
        if self._in_tx:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            self._in_tx = False

    def close(self) -> None:
        self.rollback()
        self.conn.close()

    # reads --------------------------------------------------------------------------------------------
    def files(self) -> dict[str, tuple[int, int, int, str, int, str]]:
        """path -> (id, size, mtime_ns, status, last_frame, source) of every file."""
        rows = self.conn.execute("SELECT path, id, size, mtime_ns, status, last_frame, source FROM files")
        return {r[0]: tuple(r[1:]) for r in rows}

    # writes (inside begin/commit) ---------------------------------------------------------------------
    def remove_file(self, file_id: int) -> None:
        self._dirty = True
        ids = [r[0] for r in self.conn.execute("SELECT id FROM images WHERE file_id = ?", (file_id,))]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cur = self.conn.execute(f"DELETE FROM detections WHERE image_id IN ({marks})", chunk)
            self._delta_detections -= cur.rowcount
        cur = self.conn.execute("DELETE FROM images WHERE file_id = ?", (file_id,))
        self._delta_images -= cur.rowcount
        self.conn.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def ensure_file(self, path: str, source: str, kind: str, size: int, mtime_ns: int) -> tuple[int, int]:
        """``(file id, last committed frame)`` of this version of a file: a row of another size or mtime
        (the file changed) is replaced, with its images and detections."""
        row = self.conn.execute("SELECT id, size, mtime_ns, last_frame FROM files WHERE path = ?", (path,)).fetchone()
        if row is not None:
            if row[1] == size and row[2] == mtime_ns:
                if kind == "image":  # a still image is re-done as a whole
                    self.remove_file(row[0])
                else:
                    return row[0], row[3]
            else:
                self.remove_file(row[0])
        cur = self.conn.execute(
            "INSERT INTO files(path, source, kind, size, mtime_ns, status) VALUES (?, ?, ?, ?, ?, 'indexing')",
            (path, source, kind, size, mtime_ns),
        )
        return int(cur.lastrowid), -1  # type: ignore[arg-type]

    def add_image(
        self,
        file_id: int,
        path: str,
        source: str,
        size: int,
        mtime_ns: int,
        width: int,
        height: int,
        boxes: np.ndarray,
        scores: np.ndarray,
        vectors: np.ndarray | Sequence[bytes],
        frame: tuple[int, float, int | None] | None = None,
    ) -> int:
        """Insert one image (or video frame: ``(frame_index, timestamp, pts)``) and its detections."""
        video = frame is not None
        cur = self.conn.execute(
            "INSERT INTO images(file_id, path, source, size, mtime_ns, width, height, video, timestamp, "
            "frame_index, pts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                file_id,
                path,
                source,
                size,
                mtime_ns,
                int(width),
                int(height),
                int(video),
                None if frame is None else float(frame[1]),
                None if frame is None else int(frame[0]),
                None if frame is None or frame[2] is None else int(frame[2]),
            ),
        )
        image_id = int(cur.lastrowid)  # type: ignore[arg-type]
        self._dirty = True
        if isinstance(vectors, np.ndarray):
            blobs: Sequence[bytes] = [np.ascontiguousarray(v, dtype=F32).tobytes() for v in vectors]
        else:
            blobs = vectors
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        self.conn.executemany(
            "INSERT INTO detections(image_id, x1, y1, x2, y2, score, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(image_id, *map(float, b), float(s), blob) for b, s, blob in zip(boxes, scores, blobs, strict=True)],
        )
        self._delta_images += 1
        self._delta_detections += len(blobs)
        if frame is not None:  # video
            self.conn.execute("UPDATE files SET last_frame = max(last_frame, ?) WHERE id = ?", (int(frame[0]), file_id))
        return image_id

    def finish_file(self, file_id: int, status: str, error: str | None = None) -> None:
        self.conn.execute("UPDATE files SET status = ?, error = ? WHERE id = ?", (status, error, file_id))

    def set_skipped(self, rows: Iterable[tuple[str, str, str]]) -> None:
        self.conn.execute("DELETE FROM skipped")
        self.conn.executemany("INSERT OR REPLACE INTO skipped(path, source, reason) VALUES (?, ?, ?)", list(rows))

    # shards -------------------------------------------------------------------------------------------
    def merge(self, shard_db: Path) -> dict[str, int]:
        """Copy a shard database into this one in one transaction, then delete the shard. Idempotent: a
        shard already merged (its uuid is recorded) is only deleted; a video resumed across runs gets the
        frames it lacks."""
        added = {"files": 0, "images": 0, "detections": 0}
        try:
            shard = connect(shard_db, readonly=True)
        except PersonSearchError:
            _remove_db(shard_db)
            return added
        try:
            try:
                shard.execute("BEGIN")
                smeta = check_db(shard, shard_db)
            except PersonSearchError:
                # a shard killed while it was being created holds nothing committed
                shard.close()
                _remove_db(shard_db)
                return added
            if smeta["model_id"] != self.meta["model_id"]:
                raise PersonSearchError(f"shard {shard_db} was built with another model than {self.db}")
            if smeta["uuid"] in self.meta.get("merged_shards", []):
                shard.close()
                _remove_db(shard_db)
                return added
            self.begin()
            try:
                for frow in shard.execute(
                    "SELECT id, path, source, kind, size, mtime_ns, status, error FROM files ORDER BY id"
                ).fetchall():
                    sid, path, source, kind, size, mtime_ns, status, error = frow
                    file_id, _ = self.ensure_file(path, source, kind, size, mtime_ns)
                    have = {
                        r[0]
                        for r in self.conn.execute(
                            "SELECT coalesce(frame_index, -1) FROM images WHERE file_id = ?", (file_id,)
                        )
                    }
                    for irow in shard.execute(
                        "SELECT id, width, height, video, timestamp, frame_index, pts FROM images "
                        "WHERE file_id = ? ORDER BY id",
                        (sid,),
                    ).fetchall():
                        iid, width, height, video, ts, frame_index, pts = irow
                        if (frame_index if frame_index is not None else -1) in have:
                            continue
                        dets = shard.execute(
                            "SELECT x1, y1, x2, y2, score, vector FROM detections WHERE image_id = ? ORDER BY id",
                            (iid,),
                        ).fetchall()
                        self.add_image(
                            file_id,
                            path,
                            source,
                            size,
                            mtime_ns,
                            width,
                            height,
                            np.array([d[:4] for d in dets], dtype=np.float64).reshape(-1, 4),
                            np.array([d[4] for d in dets], dtype=np.float64),
                            [d[5] for d in dets],
                            None if not video else (frame_index, ts, pts),
                        )
                        added["images"] += 1
                        added["detections"] += len(dets)
                    if status != "indexing":
                        self.finish_file(file_id, status, error)
                    added["files"] += 1
                merged = [*self.meta.get("merged_shards", []), smeta["uuid"]][-1000:]
                self.commit(merged_shards=merged)
            except BaseException:
                self.rollback()
                raise
        except sqlite3.Error as exc:
            raise db_error(shard_db, exc) from None
        finally:
            shard.close()
        _remove_db(shard_db)
        return added


def _remove_db(db: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db}{suffix}")


def shard_dbs(folder: Path) -> list[Path]:
    """The shard databases a torchrun build left in an index folder (merged at the start of the next)."""
    shards = Path(folder) / SHARD_DIR
    return sorted(shards.glob("shard-*.sqlite")) if shards.is_dir() else []


# --------------------------------------------------------------------------------------------- ANN indexes
def search_options(meta: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The index's search options (recorded ones over the defaults), with ``overrides`` that are not None."""
    options = {k: meta.get(k, v) for k, v in DEFAULT_SEARCH.items()}
    options.update({k: v for k, v in overrides.items() if v is not None and k in DEFAULT_SEARCH})
    if options["index_type"] not in INDEX_TYPES:
        raise PersonSearchError(f"index type {options['index_type']!r}: expected one of {', '.join(INDEX_TYPES)}")
    return options


def effective_type(index_type: str, count: int) -> str:
    """``flat`` / ``hnsw`` / ``ivfpq`` that ``index_type`` means for ``count`` vectors (``auto``: flat below
    :data:`AUTO_THRESHOLD`); IVF-PQ needs at least 64 vectors to train, and is flat below that."""
    if index_type == "auto":
        return "hnsw" if count >= AUTO_THRESHOLD else "flat"
    if index_type == "ivfpq" and count < 64:
        return "flat"
    return index_type


def ivfpq_layout(count: int, dim: int, options: dict[str, Any]) -> tuple[int, int, int]:
    """``(nlist, pq_m, nbits)`` of an IVF-PQ index over ``count`` vectors of ``dim`` values."""
    nlist = int(options.get("nlist") or 0) or round(math.sqrt(count))
    nlist = max(1, min(nlist, count // 39 or 1))
    pq_m = int(options.get("pq_m") or 0) or max(1, dim // 8)
    while dim % pq_m:
        pq_m -= 1
    nbits = 8 if count >= 256 * 39 else max(1, min(8, int(math.log2(max(2, count // 8)))))
    return nlist, pq_m, nbits


def ann_key(kind: str, count: int, dim: int, options: dict[str, Any]) -> str:
    if kind == "hnsw":
        return f"hnsw-M{options['hnsw_m']}-efc{options['ef_construction']}"
    if kind == "ivfpq":
        nlist, pq_m, nbits = ivfpq_layout(count, dim, options)
        return f"ivfpq-{nlist}-PQ{pq_m}x{nbits}"
    return "flat"


def build_ann(vectors: np.ndarray, kind: str, options: dict[str, Any], seed: int = 1234) -> faiss.Index:
    """A faiss index (inner product) over ``vectors`` (``float32 [n, d]``); its ids are the row numbers."""
    import faiss

    n, d = vectors.shape
    chunk = 65536
    index: faiss.Index
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, int(options["hnsw_m"]), faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = int(options["ef_construction"])
        index = hnsw
    elif kind == "ivfpq":
        nlist, pq_m, nbits = ivfpq_layout(n, d, options)
        quantizer = faiss.IndexFlatIP(d)
        ivfpq = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = max(nlist * 64, 256 * 64)
        rows = np.sort(rng.choice(n, size=min(n, sample), replace=False))
        ivfpq.cp.seed = seed
        ivfpq.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
        index = ivfpq
    else:
        raise PersonSearchError(f"unknown index type {kind!r}")
    for start in range(0, n, chunk):
        index.add(np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32))
    return index


def ann_search(
    index,
    kind: str,
    queries: np.ndarray,
    k: int,
    options: dict[str, Any],
    vectors: np.ndarray | None = None,
    bitmap: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities, rows)`` ``[nq, k]`` (row -1 where fewer were found), best first. ``bitmap``: the
    allowed rows (``np.packbits(mask, bitorder="little")``). IVF-PQ candidates are re-ranked exactly with
    ``vectors`` when given."""
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, index.d)
    selector = None
    if bitmap is not None:
        selector = faiss.IDSelectorBitmap(index.ntotal, faiss.swig_ptr(bitmap))
    fetch = k
    params: faiss.SearchParameters
    if kind == "hnsw":
        hnsw = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's own stubs
        hnsw.efSearch = max(int(options["ef_search"]), k)
        params = hnsw
    elif kind == "ivfpq":
        ivf = faiss.SearchParametersIVF()
        ivf.nprobe = int(options["nprobe"])
        params = ivf
        if vectors is not None:
            fetch = k * max(1, int(options["refine"]))
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    sims, rows = index.search(queries, min(fetch, index.ntotal), params=params)
    if kind == "ivfpq" and vectors is not None and fetch > k:
        sims, rows = _rerank(queries, rows, vectors, k)
    if rows.shape[1] < k:
        pad = k - rows.shape[1]
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
        sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
    return sims, rows


def _rerank(queries: np.ndarray, rows: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    out_rows = np.full((len(queries), k), -1, dtype=np.int64)
    out_sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for i, (q, cand) in enumerate(zip(queries, rows, strict=True)):
        cand = cand[cand >= 0]
        if not len(cand):
            continue
        order = np.sort(cand)
        sims = np.asarray(vectors[order], dtype=np.float32) @ q
        best = np.argsort(-sims, kind="stable")[:k]
        out_rows[i, : len(best)] = order[best]
        out_sims[i, : len(best)] = sims[best]
    return out_sims, out_rows


def exact_top(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(similarities, rows)`` of the ``k`` best among ``rows`` (sorted row numbers)."""
    sims = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), 65536):
        part = rows[start : start + 65536]
        sims[start : start + len(part)] = np.asarray(vectors[part], dtype=np.float32) @ query
    k = min(k, len(rows))
    top = np.argpartition(-sims, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
    top = top[np.lexsort((rows[top], -sims[top]))]
    return sims[top], rows[top]


# ------------------------------------------------------------------------------------------------- search
@dataclass
class Hit:
    """One ranked detection of a search: rank (from 1), its image (id, path, source, video timestamp in
    seconds or None for a still image), box ``x1 y1 x2 y2`` (pixels), detection score and similarity (the
    inner product of the L2-normalised embeddings)."""

    rank: int
    image_id: int
    path: str
    source: str
    timestamp: float | None
    box: tuple[float, float, float, float]
    score: float
    similarity: float
    frame_index: int | None = None
    detection_id: int = -1


def _atomic_save(path: Path, save: Callable[[Path], object]) -> bool:
    """Write a cache file through ``save(temp_path)`` with :func:`~personsearch.outputs.atomic_file`; False
    (nothing written) on failure."""
    try:
        with atomic_file(path) as tmp:
            save(tmp)
    except (OSError, RuntimeError):
        return False
    return True


def _folder_size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


class GalleryIndex:
    """A gallery index opened for searching (see the module docstring).

    ``model_id``, ``embedding_dim`` and ``checkpoint`` say which model built it. Open one with
    :meth:`open`; it is a context manager. ``index_type``, ``ef_search``, ``nprobe`` given to :meth:`open`
    override the recorded search options for this session.
    """

    def __init__(self, folder: Path, db: Path, conn: sqlite3.Connection, mode: str, overrides: dict[str, Any]):
        self.folder = folder
        self.db = db
        self.mode = mode
        self._conn = conn
        self._ann: faiss.Index | None = None
        self._ann_kind: str | None = None
        try:
            conn.execute("BEGIN")
            try:
                self.meta = check_db(conn, db)
                self._load()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise db_error(db, exc) from None
        self.model_id: str = str(self.meta["model_id"])
        self.embedding_dim: int = int(self.meta["embedding_dim"])
        self.checkpoint: str | None = self.meta.get("checkpoint")
        self.options = search_options(self.meta, **overrides)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: str = "r",
        *,
        index_type: str | None = None,
        ef_search: int | None = None,
        nprobe: int | None = None,
    ) -> GalleryIndex:
        """Open the index folder ``path`` (``mode`` ``"r"``: read-only database; ``"w"``: read-write). A
        missing, foreign or damaged index is a one-line :class:`PersonSearchError` naming the file."""
        if mode not in ("r", "w"):
            raise PersonSearchError(f"mode must be 'r' or 'w', got {mode!r}")
        folder, db = resolve_index(path)
        conn = connect(db, readonly=mode == "r")
        try:
            return cls(folder, db, conn, mode, {"index_type": index_type, "ef_search": ef_search, "nprobe": nprobe})
        except BaseException:
            conn.close()
            raise

    def __enter__(self) -> GalleryIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None  # type: ignore[assignment]
        self._ann = None

    def __len__(self) -> int:
        return len(self._det_ids)

    def __repr__(self) -> str:
        return (
            f"GalleryIndex({str(self.folder)!r}, images={len(self._img_ids)}, detections={len(self)}, "
            f"model_id={self.model_id[:12]!r})"
        )

    # loading ------------------------------------------------------------------------------------------
    @property
    def _key(self) -> str:
        return f"{self.meta['uuid']}-g{self.meta['generation']}"

    def _load(self) -> None:
        conn = self._conn
        rows = conn.execute(
            "SELECT i.id, i.file_id, i.timestamp, coalesce(i.frame_index, -1), i.pts, i.video, i.width, i.height "
            "FROM images i ORDER BY i.id"
        ).fetchall()
        files = conn.execute("SELECT id, path, source FROM files ORDER BY id").fetchall()
        file_pos = {fid: n for n, (fid, _, _) in enumerate(files)}
        self._file_paths = [f[1] for f in files]
        sources = sorted({f[2] for f in files})
        source_code = {s: n for n, s in enumerate(sources)}
        self._sources = sources
        self._source_code = source_code
        order = sorted(range(len(files)), key=lambda i: files[i][1])
        self._sorted_paths = [files[i][1] for i in order]
        self._sorted_order = np.array(order, dtype=np.int64)
        self._file_source = np.array([source_code[f[2]] for f in files], dtype=np.int64)
        n = len(rows)
        self._img_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        self._img_file = np.fromiter((file_pos[r[1]] for r in rows), dtype=np.int64, count=n)
        self._img_time = np.fromiter((math.nan if r[2] is None else r[2] for r in rows), dtype=np.float64, count=n)
        self._img_frame = np.fromiter((r[3] for r in rows), dtype=np.int64, count=n)
        self._img_pts = [r[4] for r in rows]
        self._img_video = np.fromiter((r[5] for r in rows), dtype=bool, count=n)
        self._img_size = [(r[6], r[7]) for r in rows]
        self._path_set = set(self._file_paths)
        if not self._load_cache():
            self._load_detections()

    def _cache_paths(self) -> tuple[Path, Path]:
        cache = self.folder / CACHE_DIR
        return cache / f"detections-{self._key}.npz", cache / f"vectors-{self._key}.npy"

    def _load_cache(self) -> bool:
        dets_path, vec_path = self._cache_paths()
        if not (dets_path.is_file() and vec_path.is_file()):
            return False
        n, d = int(self.meta["detections"]), int(self.meta["embedding_dim"])
        try:
            with np.load(dets_path, allow_pickle=False) as z:
                ids, image_ids, boxes, scores = z["ids"], z["image_ids"], z["boxes"], z["scores"]
            vectors = np.load(vec_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, KeyError):
            return False
        if ids.shape != (n,) or image_ids.shape != (n,) or boxes.shape != (n, 4) or scores.shape != (n,):
            return False
        if vectors.shape != (n, d) or vectors.dtype != F32:
            return False
        self._set_detections(ids, image_ids, boxes, scores, vectors)
        return True

    def _set_detections(self, ids, image_ids, boxes, scores, vectors) -> None:
        pos = np.searchsorted(self._img_ids, image_ids)
        if len(image_ids) and (pos.max() >= len(self._img_ids) or not np.array_equal(self._img_ids[pos], image_ids)):
            raise PersonSearchError(f"{self.db} is damaged: some detections belong to no image")
        self._det_ids = np.asarray(ids, dtype=np.int64)
        self._det_image = pos.astype(np.int64)
        self._det_boxes = np.asarray(boxes, dtype=np.float32)
        self._det_scores = np.asarray(scores, dtype=np.float32)
        self._vectors = vectors

    def _load_detections(self) -> None:
        n, d = int(self.meta["detections"]), int(self.meta["embedding_dim"])
        ids = np.empty(n, dtype=np.int64)
        image_ids = np.empty(n, dtype=np.int64)
        boxes = np.empty((n, 4), dtype=np.float32)
        scores = np.empty(n, dtype=np.float32)
        vectors = np.empty((n, d), dtype=F32)
        cur = self._conn.execute("SELECT id, image_id, x1, y1, x2, y2, score, vector FROM detections ORDER BY id")
        at = 0
        while True:
            chunk = cur.fetchmany(16384)
            if not chunk:
                break
            m = len(chunk)
            if at + m > n:
                raise PersonSearchError(f"{self.db} is damaged: it holds more detection vectors than it records")
            table = np.array([r[:7] for r in chunk], dtype=np.float64)
            ids[at : at + m] = table[:, 0]
            image_ids[at : at + m] = table[:, 1]
            boxes[at : at + m] = table[:, 2:6]
            scores[at : at + m] = table[:, 6]
            vectors[at : at + m] = np.frombuffer(b"".join(r[7] for r in chunk), dtype=F32).reshape(m, d)
            at += m
        if at != n:
            raise PersonSearchError(f"{self.db} is damaged: it records {n} detection vectors but holds {at}")
        if not np.isfinite(vectors).all():
            raise PersonSearchError(f"{self.db} is damaged: some detection vectors are not finite")
        self._set_detections(ids, image_ids, boxes, scores, vectors)
        self._write_cache()

    def _write_cache(self) -> None:
        """Save the detection arrays (and the vectors, then memory-mapped) under the current generation."""
        dets_path, vec_path = self._cache_paths()
        ok = _atomic_save(
            dets_path,
            lambda tmp: _save_npz(
                tmp,
                ids=self._det_ids,
                image_ids=self._img_ids[self._det_image],
                boxes=self._det_boxes,
                scores=self._det_scores,
            ),
        )
        ok = ok and _atomic_save(vec_path, lambda tmp: _save_npy(tmp, np.asarray(self._vectors)))
        if ok:
            with contextlib.suppress(OSError, ValueError):
                self._vectors = np.load(vec_path, mmap_mode="r", allow_pickle=False)
            self._remove_stale_cache()

    def _remove_stale_cache(self) -> None:
        """Delete cache files (and temporary files of killed cache writes) of older generations or of
        another index."""
        cache = self.folder / CACHE_DIR
        uuid_, generation = str(self.meta["uuid"]), int(self.meta["generation"])
        with contextlib.suppress(OSError):
            for entry in cache.iterdir():
                found = _CACHE_KEY.search(entry.name)
                stale = found is None or found["uuid"] != uuid_ or int(found["gen"]) < generation
                if entry.is_file() and stale:
                    with contextlib.suppress(OSError):
                        entry.unlink()

    # the faiss index ----------------------------------------------------------------------------------
    @property
    def index_type(self) -> str:
        """The faiss index searches use: ``flat``, ``hnsw`` or ``ivfpq``."""
        return effective_type(self.options["index_type"], len(self))

    def ann(self):
        """The faiss index (built on first use, or read from the cache)."""
        import faiss

        kind = self.index_type
        if self._ann is not None and self._ann_kind == kind:
            return self._ann
        n, d = len(self), self.embedding_dim
        path = None
        if kind != "flat":
            path = self.folder / CACHE_DIR / f"{ann_key(kind, n, d, self.options)}-{self._key}.faiss"
            if path.is_file():
                try:
                    index = faiss.read_index(str(path))
                    if index.ntotal == n and index.d == d:
                        self._ann, self._ann_kind = index, kind
                        return index
                except RuntimeError:
                    pass
        index = build_ann(self._vectors, kind, self.options)
        if path is not None:
            _atomic_save(path, lambda tmp: faiss.write_index(index, str(tmp)))
        self._ann, self._ann_kind = index, kind
        return index

    # search -------------------------------------------------------------------------------------------
    def _files_named(self, names: Iterable[str], prefixes: bool) -> np.ndarray:
        """File positions whose path is one of ``names`` (or, with ``prefixes``, lies inside one)."""
        found: list[np.ndarray] = []
        paths, order = self._sorted_paths, self._sorted_order
        for name in names:
            lo, hi = bisect.bisect_left(paths, name), bisect.bisect_right(paths, name)
            found.append(order[lo:hi])
            if prefixes:
                prefix = name.rstrip(os.sep) + os.sep
                lo = bisect.bisect_left(paths, prefix)
                hi = bisect.bisect_left(paths, prefix + "\U0010ffff")
                found.append(order[lo:hi])
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def _mask(self, sources, time_range, exclude_paths) -> np.ndarray | None:
        """Allowed detections (None: all)."""
        n_files = len(self._file_paths)
        file_ok = None
        if sources is not None:
            given = [os.fspath(s) for s in sources]
            wanted = set(given) | {os.path.abspath(s) for s in given}
            file_ok = np.zeros(n_files, dtype=bool)
            for name in wanted:
                code = self._source_code.get(name)
                if code is not None:
                    file_ok |= self._file_source == code
            file_ok[self._files_named(wanted, prefixes=True)] = True
        excluded = [os.fspath(p) for p in exclude_paths or ()]
        if excluded:
            keep = np.ones(n_files, dtype=bool)
            keep[self._files_named(set(excluded) | {os.path.abspath(p) for p in excluded}, prefixes=False)] = False
            file_ok = keep if file_ok is None else file_ok & keep
        image_ok = None if file_ok is None else file_ok[self._img_file]
        if time_range is not None:
            start, end = time_range
            start = -math.inf if start is None else float(start)
            end = math.inf if end is None else float(end)
            if math.isnan(start) or math.isnan(end) or start > end:
                raise PersonSearchError(f"time range {start:g}..{end:g}: need start <= end (seconds)")
            with np.errstate(invalid="ignore"):
                in_time = self._img_video & (self._img_time >= start) & (self._img_time <= end)
            image_ok = in_time if image_ok is None else image_ok & in_time
        if image_ok is None:
            return None
        return image_ok[self._det_image]

    def search(
        self,
        query: np.ndarray,
        top_k: int = 20,
        sources: Sequence[str] | None = None,
        time_range: tuple[float | None, float | None] | None = None,
        exclude_paths: Iterable[str] = (),
    ) -> list[Hit]:
        """The ``top_k`` detections most similar to ``query`` (an embedding of this index's model), best
        first, among those from ``sources`` (their recorded names, or folders/files containing the image),
        video frames within ``time_range`` (seconds; still images have no time and are left out) and images
        not in ``exclude_paths``."""
        q = np.asarray(query, dtype=np.float32)
        if q.ndim == 2 and q.shape[0] == 1:
            q = q[0]
        if q.ndim != 1 or q.shape[0] != self.embedding_dim:
            raise PersonSearchError(
                f"the query embedding has shape {tuple(np.shape(query))}, index {self.folder} holds "
                f"{self.embedding_dim}-dimensional embeddings (model {self.model_id[:12]})"
            )
        if not np.isfinite(q).all():
            raise PersonSearchError("the query embedding has NaN or infinite values")
        if int(top_k) < 1:
            raise PersonSearchError(f"top_k must be a positive integer, got {top_k}")
        n = len(self)
        if n == 0:
            return []
        mask = self._mask(sources, time_range, exclude_paths)
        allowed = n if mask is None else int(mask.sum())
        if allowed == 0:
            return []
        k = min(int(top_k), allowed)
        kind = self.index_type
        rows_allowed = None if mask is None else np.flatnonzero(mask)
        if rows_allowed is not None and kind != "flat" and (allowed <= EXACT_SUBSET or allowed <= EXACT_FRACTION * n):
            sims, rows = exact_top(self._vectors, rows_allowed, q, k)
        else:
            bitmap = None if mask is None else np.packbits(mask, bitorder="little")
            sims, rows = ann_search(self.ann(), kind, q[None], k, self.options, self._vectors, bitmap)
            sims, rows = sims[0], rows[0]
            good = rows >= 0
            if mask is not None:
                good &= mask[np.where(good, rows, 0)]
            sims, rows = sims[good], rows[good]
            if len(rows) < k:  # the approximate search came short: search the allowed detections exactly
                sims, rows = exact_top(self._vectors, rows_allowed if rows_allowed is not None else np.arange(n), q, k)
        return [self._hit(rank, int(row), float(sim)) for rank, (row, sim) in enumerate(zip(rows, sims), start=1)]

    def _hit(self, rank: int, row: int, similarity: float) -> Hit:
        img = int(self._det_image[row])
        video = bool(self._img_video[img])
        fpos = int(self._img_file[img])
        box = tuple(float(v) for v in self._det_boxes[row])
        return Hit(
            rank=rank,
            image_id=int(self._img_ids[img]),
            path=self._file_paths[fpos],
            source=self._sources[int(self._file_source[fpos])],
            timestamp=float(self._img_time[img]) if video else None,
            box=box,  # type: ignore[arg-type]
            score=float(self._det_scores[row]),
            similarity=similarity,
            frame_index=int(self._img_frame[img]) if video else None,
            detection_id=int(self._det_ids[row]),
        )

    # images -------------------------------------------------------------------------------------------
    def _image_pos(self, image_id: int) -> int:
        pos = int(np.searchsorted(self._img_ids, image_id))
        if pos >= len(self._img_ids) or self._img_ids[pos] != image_id:
            raise PersonSearchError(f"index {self.folder} has no image with id {image_id}")
        return pos

    def image_path(self, image_id: int) -> str:
        return self._file_paths[int(self._img_file[self._image_pos(image_id)])]

    def read_image(self, image_id: int) -> np.ndarray:
        """The pixels of an indexed image (``H x W x 3`` ``uint8`` RGB); a video frame is decoded."""
        from personsearch.footage.sources import read_video_frame

        pos = self._image_pos(image_id)
        path = self._file_paths[int(self._img_file[pos])]
        if self._img_video[pos]:
            return read_video_frame(path, int(self._img_frame[pos]), self._img_pts[pos])
        from personsearch.data.images import load_image

        if not os.path.exists(path):
            raise PersonSearchError(f"image {path} is missing (it was indexed, then moved or deleted)")
        return load_image(path)

    def contains_path(self, path: str | os.PathLike[str]) -> bool:
        """Whether the index holds this image or video (given as indexed, or as a path to it)."""
        text = os.fspath(path)
        return text in self._path_set or os.path.abspath(text) in self._path_set

    def check_model(self, model_id: str, embedding_dim: int | None = None, what: str = "the model") -> None:
        """A one-line :class:`PersonSearchError` unless ``model_id`` (and ``embedding_dim``) built this index."""
        if model_id != self.model_id or (embedding_dim is not None and int(embedding_dim) != self.embedding_dim):
            raise PersonSearchError(model_mismatch(self.folder, self.meta, model_id, embedding_dim, what))

    # info ---------------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """What the index holds (counts, sources, model, search options, size on disk, skipped files)."""
        return index_info(self.folder, self._conn, self.meta, self.options)


def read_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """:meth:`GalleryIndex.info` without loading the detections and vectors (fast on a large index)."""
    folder, db = resolve_index(path)
    conn = connect(db, readonly=True)
    try:
        try:
            conn.execute("BEGIN")
            try:
                meta = check_db(conn, db)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise db_error(db, exc) from None
        return index_info(folder, conn, meta, search_options(meta))
    finally:
        conn.close()


def model_mismatch(folder, meta: dict[str, Any], model_id: str, dim: int | None, what: str) -> str:
    built = f"model {str(meta['model_id'])[:12]}"
    if meta.get("checkpoint"):
        built += f" (checkpoint {meta['checkpoint']})"
    dims = ""
    if dim is not None and int(dim) != int(meta["embedding_dim"]):
        dims = f"; embedding size {meta['embedding_dim']} versus {dim}"
    return (
        f"index {folder} was built with {built}, {what} is model {model_id[:12]}{dims}: "
        "use the index's checkpoint, or build a new index"
    )


def index_info(folder: Path, conn: sqlite3.Connection, meta: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    def one(sql: str, *args: Any) -> int:
        return int(conn.execute(sql, args).fetchone()[0])

    try:
        conn.execute("BEGIN")
        try:
            meta = read_meta(conn)
            skipped = [
                {"path": p, "source": s, "reason": r}
                for p, s, r in conn.execute(
                    "SELECT path, source, coalesce(error, status) FROM files WHERE status IN ('unreadable', 'damaged') "
                    "UNION ALL SELECT path, source, reason FROM skipped ORDER BY 1"
                )
            ]
            result: dict[str, Any] = {
                "path": str(folder),
                "images": one("SELECT count(*) FROM images WHERE video = 0"),
                "frames": one("SELECT count(*) FROM images WHERE video = 1"),
                "videos": one("SELECT count(*) FROM files WHERE kind = 'video' AND status != 'unreadable'"),
                "detections": one("SELECT count(*) FROM detections"),
                "files": one("SELECT count(*) FROM files"),
                "incomplete": [r[0] for r in conn.execute("SELECT path FROM files WHERE status = 'indexing'")],
            }
        finally:
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise db_error(folder / DB_NAME, exc) from None
    count = result["detections"]
    return {
        **result,
        "skipped": skipped,
        "skipped_count": len(skipped),
        "pending_shards": len(shard_dbs(folder)),
        "sources": meta.get("sources", []),
        "model_id": meta["model_id"],
        "checkpoint": meta.get("checkpoint"),
        "embedding_dim": meta["embedding_dim"],
        "det_thresh": meta.get("det_thresh"),
        "fps": meta.get("fps"),
        "index_type": options["index_type"],
        "index_type_effective": effective_type(options["index_type"], count),
        "search_params": {k: options[k] for k in DEFAULT_SEARCH if k != "index_type"},
        "size_on_disk": _folder_size(folder),
        "created": meta.get("created"),
        "updated": meta.get("updated"),
        "generation": meta.get("generation"),
        "schema_version": meta.get("schema_version"),
    }


def _save_npz(tmp: str | Path, **arrays: np.ndarray) -> None:
    with open(tmp, "wb") as handle:
        np.savez(handle, allow_pickle=True, **arrays)


def _save_npy(tmp: str | Path, array: np.ndarray) -> None:
    with open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array, dtype=F32), allow_pickle=False)
