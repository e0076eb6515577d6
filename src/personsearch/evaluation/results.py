"""The search results file: what inference writes and ``personsearch evaluate`` reads.

One ``.npz`` archive, loadable with ``np.load(path, allow_pickle=False)``:

=====================  ==============  ===========================================================
array                  dtype, shape    meaning
=====================  ==============  ===========================================================
``gallery_names``      str ``[G]``     gallery image names (a subset of the dataset's gallery, each
                                       once; images without detections may be left out)
``det_image``          int64 ``[N]``   index into ``gallery_names`` of each detection
``det_boxes``          float32 ``[N,4]`` ``x1 y1 x2 y2`` in original-image pixels
``det_scores``         float32 ``[N]`` detection confidence
``det_features``       float32 ``[N,D]`` re-id embedding (similarity = dot product)
``query_names``        str ``[Q]``     query image names, in the dataset's query order
``query_features``     float32 ``[Q,D]`` embedding of each query's ground-truth box
=====================  ==============  ===========================================================

Optional, for CBGM (docs/evaluation.md): the query images run as gallery images, with the ground-truth query box
forced in as each query's first row:

=========================  =================  ===================================================
``query_det_index``        int64 ``[M]``      index into ``query_names`` (rows of one query in score
                                              order, the query box first)
``query_det_boxes``        float32 ``[M,4]``  ``x1 y1 x2 y2``
``query_det_scores``       float32 ``[M]``    scores (1.0 for the forced query box)
``query_det_features``     float32 ``[M,D]``  embeddings
=========================  =================  ===================================================

The detections of one image are used in file order (the order the reference evaluators receive them in;
it decides ties). Other arrays in the archive are ignored.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from personsearch.errors import DatasetError, PersonSearchError

REQUIRED = (
    "gallery_names",
    "det_image",
    "det_boxes",
    "det_scores",
    "det_features",
    "query_names",
    "query_features",
)
CBGM_ARRAYS = ("query_det_index", "query_det_boxes", "query_det_scores", "query_det_features")


class ResultsError(PersonSearchError):
    """A results file is missing, unreadable or inconsistent with the dataset."""


@dataclass
class SearchResults:
    """Detections and embeddings of a model on one dataset's test split (see the module docstring)."""

    gallery_names: np.ndarray
    det_image: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_features: np.ndarray
    query_names: np.ndarray
    query_features: np.ndarray
    query_det_index: np.ndarray | None = None
    query_det_boxes: np.ndarray | None = None
    query_det_scores: np.ndarray | None = None
    query_det_features: np.ndarray | None = None
    source: str = "<memory>"

    @property
    def feature_dim(self) -> int:
        return int(self.query_features.shape[1])

    @property
    def has_query_detections(self) -> bool:
        return self.query_det_index is not None

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as stored in the file."""
        out = {name: getattr(self, name) for name in REQUIRED}
        if self.has_query_detections:
            out.update({name: getattr(self, name) for name in CBGM_ARRAYS})
        return out


def _names(values: Sequence[str] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8")
    return arr.astype(str).reshape(-1) if arr.size else np.zeros(0, dtype="<U1")


def make_results(
    gallery_names: Sequence[str] | np.ndarray,
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_features: np.ndarray,
    query_names: Sequence[str] | np.ndarray,
    query_features: np.ndarray,
    query_det_index: np.ndarray | None = None,
    query_det_boxes: np.ndarray | None = None,
    query_det_scores: np.ndarray | None = None,
    query_det_features: np.ndarray | None = None,
) -> SearchResults:
    """Build :class:`SearchResults` from array-likes, converting to the schema's dtypes."""
    feats = np.asarray(det_features, dtype=np.float32)
    qfeats = np.asarray(query_features, dtype=np.float32)
    dim = qfeats.shape[1] if qfeats.ndim == 2 else (feats.shape[1] if feats.ndim == 2 else 0)
    results = SearchResults(
        gallery_names=_names(gallery_names),
        det_image=np.asarray(det_image, dtype=np.int64).reshape(-1),
        det_boxes=np.asarray(det_boxes, dtype=np.float32).reshape(-1, 4),
        det_scores=np.asarray(det_scores, dtype=np.float32).reshape(-1),
        det_features=feats.reshape(-1, dim) if feats.size == 0 else feats,
        query_names=_names(query_names),
        query_features=qfeats,
    )
    if query_det_index is not None:
        qd = np.asarray(query_det_features, dtype=np.float32)
        results.query_det_index = np.asarray(query_det_index, dtype=np.int64).reshape(-1)
        results.query_det_boxes = np.asarray(query_det_boxes, dtype=np.float32).reshape(-1, 4)
        results.query_det_scores = np.asarray(query_det_scores, dtype=np.float32).reshape(-1)
        results.query_det_features = qd.reshape(-1, dim) if qd.size == 0 else qd
    return results


def save_results(path: str | Path, results: SearchResults) -> Path:
    """Write ``results`` to ``path`` (``.npz``, atomically: a kill leaves the previous file; leftovers of
    killed writes are removed; a failed write is a one-line :class:`ResultsError`). Returns the path."""
    from personsearch.outputs import atomic_write

    validate_schema(results)
    arrays = results.arrays()
    try:
        return atomic_write(path, lambda handle: np.savez(handle, allow_pickle=True, **arrays), what="results file")
    except PersonSearchError as exc:
        raise ResultsError(str(exc)) from None


def load_results(path: str | Path, data=None) -> SearchResults:
    """Read a results file; validate its schema, and against ``data`` (a ``PersonSearchData``) if given."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"results file {path} does not exist")
    _check_npz_magic(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = set(archive.files)
            missing = [k for k in REQUIRED if k not in files]
            if missing:
                raise ResultsError(f"{path}: missing array(s) {', '.join(missing)}")
            arrays = {k: archive[k] for k in (*REQUIRED, *CBGM_ARRAYS) if k in files}
    except ResultsError:
        raise
    except ValueError as exc:
        raise ResultsError(f"{path}: unreadable results file (no object arrays allowed: {exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise ResultsError(f"{path}: not a readable .npz results file ({exc})") from None
    present = [k for k in CBGM_ARRAYS if k in arrays]
    if present and len(present) != len(CBGM_ARRAYS):
        absent = [k for k in CBGM_ARRAYS if k not in arrays]
        raise ResultsError(f"{path}: incomplete CBGM arrays, missing {', '.join(absent)}")
    for key in ("gallery_names", "query_names"):
        if arrays[key].dtype.kind not in "US":
            raise ResultsError(f"{path}: {key} must hold strings, got dtype {arrays[key].dtype}")
        arrays[key] = _names(arrays[key])
    results = SearchResults(**arrays, source=str(path))
    validate_schema(results)
    if data is not None:
        validate_against(results, data)
    return results


#: The first bytes of a zip archive (an ``.npz`` is one; ``PK\\x05\\x06``: an empty one).
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _check_npz_magic(path: Path) -> None:
    """A ResultsError unless ``path`` starts like a zip archive (``np.load`` would read a ``.npy`` array or a
    pickle instead of failing)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read results file ({exc.strerror or exc})") from None
    if head[:4] in _ZIP_MAGIC:
        return
    what = "a .npy array" if head == b"\x93NUMPY" else ("empty" if not head else "not a zip archive")
    raise ResultsError(f"{path}: not a .npz results file ({what}; write one with personsearch infer)")


def _fail(results: SearchResults, message: str) -> None:
    raise ResultsError(f"{results.source}: {message}")


def _check(results: SearchResults, key: str, kind: str, ndim: int, dtype=None) -> None:
    arr = getattr(results, key)
    if not isinstance(arr, np.ndarray):
        _fail(results, f"{key} is missing")
    if arr.ndim != ndim:
        _fail(results, f"{key} must be {ndim}-D, got shape {arr.shape}")
    if dtype is not None and arr.dtype != dtype:
        _fail(results, f"{key} must be {np.dtype(dtype).name}, got {arr.dtype}")
    if dtype is None and arr.dtype.kind not in kind:
        _fail(results, f"{key} must hold integers, got {arr.dtype}")
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        _fail(results, f"{key} contains NaN or inf (first at index {bad})")


def validate_schema(results: SearchResults) -> None:
    """Check dtypes, shapes, finiteness and index ranges (everything that needs no dataset)."""
    _check(results, "gallery_names", "U", 1)
    _check(results, "query_names", "U", 1)
    _check(results, "det_image", "iu", 1)
    _check(results, "det_boxes", "f", 2, np.float32)
    _check(results, "det_scores", "f", 1, np.float32)
    _check(results, "det_features", "f", 2, np.float32)
    _check(results, "query_features", "f", 2, np.float32)
    n = len(results.det_image)
    if results.det_boxes.shape != (n, 4):
        _fail(results, f"det_boxes must have shape ({n}, 4), got {results.det_boxes.shape}")
    if results.det_scores.shape != (n,):
        _fail(results, f"det_scores must have shape ({n},), got {results.det_scores.shape}")
    dim = results.query_features.shape[1]
    if results.det_features.shape != (n, dim):
        _fail(
            results,
            f"det_features must have shape ({n}, {dim}) like det_image and query_features, "
            f"got {results.det_features.shape}",
        )
    if len(results.query_features) != len(results.query_names):
        _fail(
            results,
            f"query_features has {len(results.query_features)} rows but there are "
            f"{len(results.query_names)} query_names",
        )
    if n and (results.det_image.min() < 0 or results.det_image.max() >= len(results.gallery_names)):
        _fail(
            results,
            f"det_image must index gallery_names (0..{len(results.gallery_names) - 1}), "
            f"got values in [{results.det_image.min()}, {results.det_image.max()}]",
        )
    names, counts = np.unique(results.gallery_names, return_counts=True)
    if np.any(counts > 1):
        _fail(results, f"gallery image {names[counts > 1][0]} is listed more than once in gallery_names")
    idx = results.query_det_index
    if idx is not None:  # results.has_query_detections
        _check(results, "query_det_index", "iu", 1)
        _check(results, "query_det_boxes", "f", 2, np.float32)
        _check(results, "query_det_scores", "f", 1, np.float32)
        _check(results, "query_det_features", "f", 2, np.float32)
        m = len(idx)
        shapes = {
            "query_det_boxes": (m, 4),
            "query_det_scores": (m,),
            "query_det_features": (m, dim),
        }
        for key, shape in shapes.items():
            if getattr(results, key).shape != shape:
                _fail(results, f"{key} must have shape {shape}, got {getattr(results, key).shape}")
        if m and (idx.min() < 0 or idx.max() >= len(results.query_names)):
            _fail(results, "query_det_index must index query_names")


def validate_against(results: SearchResults, data) -> None:
    """Check the results against a loaded dataset: gallery names known, queries identical."""
    known = {r.name: i for i, r in enumerate(data.gallery)}
    for name in results.gallery_names:
        if name not in known:
            _fail(results, f"gallery image {name} is not in the {data.name} gallery (test split)")
    expected = [q.name for q in data.queries]
    if len(results.query_names) != len(expected):
        _fail(results, f"{len(results.query_names)} queries, but {data.name} at {data.root} has {len(expected)}")
    mismatch = np.flatnonzero(results.query_names != np.asarray(expected, dtype=str))
    if mismatch.size:
        q = int(mismatch[0])
        _fail(
            results,
            f"query {q} is image {results.query_names[q]}, but the dataset's query {q} is "
            f"{expected[q]} (query_names must follow the dataset's query order)",
        )


def gallery_index(results: SearchResults, data) -> np.ndarray:
    """For each entry of ``results.gallery_names``, its index in ``data.gallery``."""
    known = {r.name: i for i, r in enumerate(data.gallery)}
    try:
        return np.array([known[n] for n in results.gallery_names], dtype=np.int64)
    except KeyError as exc:
        raise DatasetError(f"{results.source}: gallery image {exc.args[0]} is not in the gallery") from None
