"""PRW loader (``docs/datasets.md`` section 2).

Splits follow the reference loaders: ``frame_train.mat`` and ``frame_test.mat`` in file order,
queries in ``query_info.txt`` line order. Two box conversions are deliberately different, as in the
references: annotation boxes are clipped at 0 *before* ``x2 = x + w`` and truncated to int32 last; query
boxes are truncated to int32 *first* and clipped last. Arithmetic is done in float64 so integer storage
types (``uint8``/``uint16``) never wrap around. PRW's ``-2`` ("ambiguous person") becomes
:data:`UNLABELED`; a pid boxed twice in one frame keeps both boxes (evaluation uses the first).

Poisoned values never pass (``personsearch.data.validation``): an annotation row whose values are not
finite or out of range, or whose box has no positive width and height after the clip-then-truncate
conversion, is dropped, counted per reason and per file and reported as a
:class:`~personsearch.errors.DatasetWarning` on every load. A ``query_info.txt`` box that fails
(after truncate-then-clip) is an error naming the line: dropping a query would change the evaluation.
Frame names must be plain file names.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from personsearch.data.annotations import UNLABELED, ImageRecord, PersonSearchData, QueryRecord
from personsearch.data.cache import load_or_build
from personsearch.data.matfile import load_mat_variable, mat_string, require_file
from personsearch.data.validation import (
    NEGATIVE_SIZE,
    OK,
    OUTSIDE,
    REASONS,
    ZERO_SIZE,
    check_name,
    check_names,
    drop_message,
    emit,
    format_box,
    raw_value_reasons,
    xyxy_reasons,
)
from personsearch.errors import DatasetError

LAYOUT = (
    "PRW/frames/c<cam>s<seq>_<frame>.jpg, PRW/annotations/<frame>.jpg.mat, "
    "PRW/{frame_train.mat,frame_test.mat,query_info.txt}"
)
ANNOTATION_KEYS = ("box_new", "anno_file", "anno_previous")
PRW_UNLABELED = -2
FRAMES_DIR = Path("frames")
ANNOTATIONS_DIR = Path("annotations")


def camera_id(name: str, source: Path | None = None) -> int:
    """PRW camera: the digit after the first ``c`` followed by a digit (``c3s2_000123.jpg`` -> 3)."""
    match = re.search(r"c(\d)", name)
    if match is None:
        where = f"{source}: " if source else ""
        raise DatasetError(f"{where}frame name {name!r} has no camera id (expected c<cam>s<seq>_<frame>)")
    return int(match.group(1))


def load_frame_list(path: Path, key: str) -> list[str]:
    """Frame names (with ``.jpg``) from ``frame_train.mat`` / ``frame_test.mat``."""
    require_file(path, LAYOUT)
    cells = load_mat_variable(path, key)
    try:
        names = [mat_string(c) for c in cells.ravel()]
    except (IndexError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: malformed frame list ({exc})") from None
    check_names(names, path, "frame name")
    return [name + ".jpg" for name in names]


def annotation_path(root: Path, frame: str) -> Path:
    """The annotation file of a frame: ``annotations/<frame>`` if present (scipy reads it first), else
    ``annotations/<frame>.mat``."""
    exact = root / ANNOTATIONS_DIR / frame
    return exact if exact.is_file() else root / ANNOTATIONS_DIR / f"{frame}.mat"


def read_annotation_matrix(path: Path) -> np.ndarray:
    """The ``N×5 [pid, x, y, w, h]`` matrix of one annotation file, as float64."""
    matrix = np.asarray(load_mat_variable(path, ANNOTATION_KEYS))
    if matrix.size == 0:
        return np.zeros((0, 5))
    if matrix.dtype.kind not in "biuf" or matrix.ndim != 2 or matrix.shape[1] != 5:
        raise DatasetError(f"{path}: expected an N×5 numeric [pid x y w h] matrix, got {matrix.shape}")
    return matrix.astype(np.float64)


def convert_annotation(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gallery/train conversion: clip x,y,w,h at 0, add, truncate; pid -2 -> UNLABELED."""
    rois = np.clip(matrix[:, 1:], 0, None)
    rois[:, 2:] += rois[:, :2]
    pids = matrix[:, 0].astype(np.int64)
    pids[pids == PRW_UNLABELED] = UNLABELED
    return rois.astype(np.int32), pids


def convert_query_box(x: float, y: float, w: float, h: float) -> np.ndarray:
    """Query conversion: truncate ``[x, y, x+w, y+h]`` to int32 first, then clip at 0."""
    return np.clip(np.array([x, y, x + w, y + h]).astype(np.int32), 0, None)


def annotation_reasons(matrix: np.ndarray) -> np.ndarray:
    """Per ``[pid, x, y, w, h]`` row: why it is invalid (see ``personsearch.data.validation``), or OK.

    Values must be finite and in range before any cast; the box must have a positive width and height
    after the gallery conversion (clip at 0, add, truncate): a negative width becomes zero and is invalid.
    """
    reasons = raw_value_reasons(matrix)
    numeric = reasons == OK
    if numeric.any():
        boxes, _ = convert_annotation(matrix[numeric])
        reasons[numeric] = xyxy_reasons(boxes)
    return reasons


def _describe(reason: int) -> str:
    if reason == ZERO_SIZE:
        return "zero width or height after clipping at 0"
    return REASONS[reason]


def _parse_annotations(root: Path, frames: list[str]) -> dict[str, np.ndarray]:
    counts, matrices = [], []
    for frame in frames:
        matrix = read_annotation_matrix(annotation_path(root, frame))
        counts.append(len(matrix))
        matrices.append(matrix)
    return {
        "counts": np.array(counts, dtype=np.int64),
        "matrix": np.concatenate(matrices) if matrices else np.zeros((0, 5)),
    }


ANNOTATION_SCHEMA = {"counts": ("iu", (-1,)), "matrix": ("f", (-1, 5))}


def _load_split(root: Path, frames: list[str], kind: str, warnings: list[str]) -> tuple[list[ImageRecord], int]:
    """The records of one split and the number of invalid annotation rows dropped (with a warning)."""
    paths = []
    for frame in frames:
        path = annotation_path(root, frame)
        if not path.is_file():
            raise DatasetError(f"missing file {path}; expected layout: {LAYOUT}")
        paths.append(path)
    arrays = load_or_build(
        kind,
        paths,
        lambda: _parse_annotations(root, frames),
        schema=ANNOTATION_SCHEMA,
        check=lambda a: len(a["counts"]) == len(frames) and int(a["counts"].sum()) == len(a["matrix"]),
    )
    counts, matrix = arrays["counts"], arrays["matrix"]
    reasons = annotation_reasons(matrix)  # row-wise, so once for the whole split
    bad = reasons != OK
    if bad.any():
        frame_of_row = np.repeat(np.arange(len(frames)), counts)
        per_file = np.bincount(frame_of_row[bad], minlength=len(frames))
        files = [(paths[i].name, int(per_file[i])) for i in np.flatnonzero(per_file)]
        first = int(np.flatnonzero(bad)[0])
        row = first - int(np.sum(counts[: frame_of_row[first]]))
        example = f"{paths[frame_of_row[first]].name} row {row} [pid x y w h] = {format_box(matrix[first])}"
        described = {_describe(code): int((reasons == code).sum()) for code in REASONS if (reasons == code).any()}
        source = f"{root / ANNOTATIONS_DIR} ({'frame_train.mat' if kind == 'prw-train' else 'frame_test.mat'} frames)"
        warnings.append(drop_message(source, described, files, example))
        counts = np.bincount(frame_of_row[~bad], minlength=len(frames))
        matrix = matrix[~bad]
    offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
    boxes, pids = convert_annotation(matrix)
    records = [
        ImageRecord(
            frame,
            root / FRAMES_DIR / frame,
            boxes[offsets[i] : offsets[i + 1]],
            pids[offsets[i] : offsets[i + 1]],
            camera_id(frame),
        )
        for i, frame in enumerate(frames)
    ]
    return records, int(bad.sum())


def load_queries(path: Path, root: Path) -> list[QueryRecord]:
    """Parse ``query_info.txt`` (``pid x y w h frame`` per line; CRLF or LF line ends)."""
    require_file(path, LAYOUT)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    queries: list[QueryRecord] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        fields = line.strip().split()
        if not fields:
            continue
        try:
            if len(fields) != 6:
                raise ValueError(f"{len(fields)} fields")
            pid = int(fields[0])
            x, y, w, h = (float(v) for v in fields[1:5])
        except ValueError as exc:
            raise DatasetError(f"{path}:{lineno}: expected 'pid x y w h frame', got {line.strip()!r} ({exc})") from None
        where = f"{path}:{lineno}"
        check_name(fields[5], where, f"query {len(queries)} frame name")
        frame = fields[5] + ".jpg"
        box = _query_box(where, len(queries), frame, x, y, w, h)
        queries.append(QueryRecord(frame, root / FRAMES_DIR / frame, box, pid, camera_id(frame, path)))
    if not queries:
        raise DatasetError(f"{path}: no queries found")
    return queries


def _query_box(where: str, index: int, frame: str, x: float, y: float, w: float, h: float) -> np.ndarray:
    """The converted query box, or a one-line error: its values must be finite and in range, and after
    truncate-then-clip it must have a positive width and height."""
    raw = np.array([[x, y, w, h]])
    reason = int(raw_value_reasons(raw)[0])
    box = convert_query_box(x, y, w, h) if reason == OK else None
    if box is not None:
        reason = int(xyxy_reasons(box)[0])
    if box is None or reason != OK:  # box is None only when reason != OK
        what = {
            ZERO_SIZE: "has zero width or height after truncating and clipping at 0",
            NEGATIVE_SIZE: "has a negative width or height after truncating and clipping at 0",
            OUTSIDE: "lies wholly outside the image",
        }.get(reason, f"has a value that is {REASONS[reason]}")
        raise DatasetError(f"{where}: query {index} (frame {frame}) box x y w h = {format_box(raw[0])} {what}")
    return box


def check_layout(root: Path) -> None:
    """Raise a one-line error when the root or a required file or folder is missing."""
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist; expected layout: {LAYOUT}")
    for rel in ("frame_train.mat", "frame_test.mat", "query_info.txt"):
        require_file(root / rel, LAYOUT)
    if not (root / ANNOTATIONS_DIR).is_dir():
        raise DatasetError(f"missing folder {root / ANNOTATIONS_DIR}; expected layout: {LAYOUT}")


def load_prw(root: str | Path) -> PersonSearchData:
    """Load PRW (real or synthetic) from ``root``."""
    root = Path(root)
    check_layout(root)
    train_frames = load_frame_list(root / "frame_train.mat", "img_index_train")
    test_frames = load_frame_list(root / "frame_test.mat", "img_index_test")
    queries = load_queries(root / "query_info.txt", root)
    test_set = set(test_frames)
    warnings = [
        f"{root / 'query_info.txt'}: query {i} frame {q.name} is not in frame_test.mat"
        for i, q in enumerate(queries)
        if q.name not in test_set
    ]
    if not (root / FRAMES_DIR).is_dir():  # annotations alone suffice for statistics and evaluation
        warnings.append(f"frame folder {root / FRAMES_DIR} is missing (needed for training and inference)")
    train, train_invalid = _load_split(root, train_frames, "prw-train", warnings)
    gallery, gallery_invalid = _load_split(root, test_frames, "prw-test", warnings)
    data = PersonSearchData(
        name="prw",
        root=root,
        train=train,
        gallery=gallery,
        queries=queries,
        invalid_boxes=train_invalid + gallery_invalid,
        warnings=warnings,
    )
    emit(data.warnings)
    return data
