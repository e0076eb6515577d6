"""CUHK-SYSU loader (``docs/datasets.md`` section 1).

The splits are built as the community reference loaders build them (docs/datasets.md section 1): training images are
``Images.mat`` names minus ``pool.mat`` names, sorted; the gallery is ``pool.mat`` in file order; queries
are ``TestG50.mat``'s queries in file order. Boxes with ``w <= 0`` or ``h <= 0`` are dropped (and
counted); the rest are cast to ``int32`` *before* any arithmetic (boxes are stored as ``uint8``/``uint16``
and would wrap around) and converted from ``x, y, w, h`` to ``x1, y1, x2, y2`` without ``+1``. Identities
are assigned to the first box of the image that equals the protocol's box exactly: training identities are
``Train.mat`` positions + 1, gallery identities ``TestG50`` query positions + 1 (the query box and the
gallery positives up to the first negative entry, as the reference loaders do).

Poisoned values never pass (``personsearch.data.validation``): before the int cast every ``Images.mat``
box must be finite and within range, and after it it must have a positive size and not lie wholly left
of or above the image; other boxes are dropped, counted per reason and reported as a
:class:`~personsearch.errors.DatasetWarning` on every load (the ``w = 0`` / ``h = 0`` boxes of the real
file stay a silent, counted quirk). A ``Train.mat`` box that is not a valid number is ignored (with a
warning). A query box or a gallery positive of a ``TestG`` file that fails is an error naming the file
and the query: dropping a query would change every evaluation number. Image names must be plain file
names.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from personsearch.data.annotations import (
    UNLABELED,
    GalleryProtocol,
    ImageRecord,
    PersonSearchData,
    QueryRecord,
)
from personsearch.data.cache import Schema, load_or_build
from personsearch.data.matfile import load_mat_variable, mat_string, mat_vector, require_file
from personsearch.data.validation import (
    NEGATIVE_SIZE,
    OK,
    OUTSIDE,
    REASONS,
    check_name,
    check_names,
    drop_message,
    emit,
    format_box,
    raw_value_reasons,
    reason_counts,
    xyxy_reasons,
)
from personsearch.errors import DatasetError

LAYOUT = (
    "CUHK-SYSU/Image/SSM/s<k>.jpg, CUHK-SYSU/annotation/{Images.mat,pool.mat}, "
    "CUHK-SYSU/annotation/test/train_test/{Train.mat,TestG50.mat,TestG<N>.mat}"
)
GALLERY_SIZES = (50, 100, 500, 1000, 2000, 4000)
IMAGE_DIR = Path("Image/SSM")
IMAGES_MAT = Path("annotation/Images.mat")
POOL_MAT = Path("annotation/pool.mat")
PROTOCOL_DIR = Path("annotation/test/train_test")
TRAIN_MAT = PROTOCOL_DIR / "Train.mat"


def protocol_path(root: Path, size: int) -> Path:
    """Path of ``TestG{size}.mat``."""
    return Path(root) / PROTOCOL_DIR / f"TestG{size}.mat"


def available_gallery_sizes(root: str | Path) -> list[int]:
    """Gallery sizes whose ``TestG{N}.mat`` is present, ascending."""
    folder = Path(root) / PROTOCOL_DIR
    sizes = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = re.fullmatch(r"TestG(\d+)\.mat", path.name)
            if match:
                sizes.append(int(match.group(1)))
    return sorted(sizes)


def _struct_error(path: Path, what: str, exc: Exception) -> DatasetError:
    return DatasetError(f"{path}: malformed {what} ({exc.__class__.__name__}: {exc})")


def _box_rows(box_field: np.ndarray) -> np.ndarray:
    """Stack the ``idlocate`` of a 1×K box struct array (or accept a plain K×4 matrix) as raw values."""
    arr = np.asarray(box_field)
    if arr.dtype.names is None and arr.dtype != object:
        return arr.reshape(-1, 4) if arr.size else np.zeros((0, 4))
    rows = [mat_vector(b[0], 4) for b in arr.ravel()]
    return np.stack(rows) if rows else np.zeros((0, 4))


def _validate_image_boxes(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(kept x,y,w,h int32, quirk mask, invalid reason per box)`` of one image's raw boxes.

    The reference filter ``w > 0 and h > 0`` runs on the raw values (the quirk); a negative size, values
    that are not finite or out of range, a size truncated to zero by the cast and a box wholly left of or
    above the image are invalid. Values are cast to int32 only once known to be finite and in range.
    """
    reasons = raw_value_reasons(raw)
    numeric = reasons == OK
    safe = np.where(numeric[:, None], raw, 0).astype(np.float64)
    reasons[numeric & ((safe[:, 2] < 0) | (safe[:, 3] < 0))] = NEGATIVE_SIZE
    quirk = (reasons == OK) & ((safe[:, 2] <= 0) | (safe[:, 3] <= 0))
    boxes = safe.astype(np.int32)  # the reference cast, on raw storage values
    xyxy = boxes.astype(np.int64)
    xyxy[:, 2:] += xyxy[:, :2]
    later = (reasons == OK) & ~quirk
    reasons[later] = xyxy_reasons(xyxy[later])
    return boxes[(reasons == OK) & ~quirk], quirk, reasons


def _parse_images_mat(path: Path) -> dict[str, np.ndarray]:
    """Parse ``Images.mat`` into flat arrays: names, per-image box counts, boxes (x,y,w,h int32), the
    quirk count and the warnings about invalid boxes."""
    records = load_mat_variable(path, "Img").ravel()
    names: list[str] = []
    counts: list[int] = []
    boxes: list[np.ndarray] = []
    invalid: list[np.ndarray] = []
    dropped = 0
    example = ""
    for i, entry in enumerate(records):
        try:
            name = mat_string(entry[0])
            raw = _box_rows(entry[2])
        except (IndexError, KeyError, ValueError, TypeError) as exc:
            raise _struct_error(path, f"Img entry {i}", exc) from None
        check_name(name, path, f"Img entry {i} image name")
        kept, quirk, reasons = _validate_image_boxes(raw)
        dropped += int(quirk.sum())
        bad = np.flatnonzero(reasons != OK)
        if bad.size:
            invalid.append(reasons[bad])
            if not example:
                example = f"image {name} box {int(bad[0])} x,y,w,h = {format_box(raw[bad[0]])}"
        names.append(name)
        counts.append(len(kept))
        boxes.append(kept)
    warnings = []
    if invalid:
        warnings.append(drop_message(path, reason_counts(np.concatenate(invalid)), example=example))
    return {
        "names": np.array(names, dtype=str),
        "counts": np.array(counts, dtype=np.int64),
        "boxes": np.concatenate(boxes).astype(np.int32) if boxes else np.zeros((0, 4), np.int32),
        "dropped": np.array(dropped, dtype=np.int64),
        "invalid": np.array(sum(len(r) for r in invalid), dtype=np.int64),
        "warnings": np.array(warnings, dtype=str),
    }


def _parse_pool_mat(path: Path) -> dict[str, np.ndarray]:
    cells = load_mat_variable(path, "pool").ravel()
    try:
        names = [mat_string(c) for c in cells]
    except (IndexError, ValueError, TypeError) as exc:
        raise _struct_error(path, "pool cell array", exc) from None
    check_names(names, path)
    return {"names": np.array(names, dtype=str)}


def _parse_train_mat(path: Path) -> dict[str, np.ndarray]:
    """Parse ``Train.mat`` into one row per scene entry: image name, box (x,y,w,h int32), identity index."""
    cells = load_mat_variable(path, "Train").ravel()
    names: list[str] = []
    boxes: list[np.ndarray] = []
    identity: list[int] = []
    ignored: list[int] = []
    example = ""
    for index, cell in enumerate(cells):
        try:
            person = np.asarray(cell).ravel()[0]
            for scene in np.asarray(person[2]).ravel():
                name = mat_string(scene[0])
                raw = mat_vector(scene[1], 4)
                reason = int(raw_value_reasons(raw[None])[0])
                if reason != OK:  # cannot be cast, so it cannot equal any box: ignored, not unmatched
                    ignored.append(reason)
                    example = example or f"identity {index} image {name} x,y,w,h = {format_box(raw)}"
                    continue
                names.append(name)
                boxes.append(raw.astype(np.int32))
                identity.append(index)
        except (IndexError, KeyError, ValueError, TypeError) as exc:
            raise _struct_error(path, f"Train identity {index}", exc) from None
    warnings = []
    if ignored:
        counts = reason_counts(np.array(ignored))
        warnings.append(drop_message(path, counts, example=example, verb="ignored"))
    return {
        "names": np.array(names, dtype=str),
        "boxes": np.stack(boxes).astype(np.int32) if boxes else np.zeros((0, 4), np.int32),
        "identity": np.array(identity, dtype=np.int64),
        "num_identities": np.array(len(cells), dtype=np.int64),
        "warnings": np.array(warnings, dtype=str),
    }


def _castable(path: Path, raw: np.ndarray, q: int, what: str) -> np.ndarray:
    """``raw`` as int32 when it is finite and in range, else a one-line error naming the query."""
    reason = int(raw_value_reasons(np.asarray(raw).reshape(1, -1))[0])
    if reason != OK:
        raise DatasetError(f"{path}: query {q} {what} x,y,w,h = {format_box(raw)} is {REASONS[reason]}")
    return np.asarray(raw).astype(np.int32)


def _describe(reason: int) -> str:
    return "lies wholly outside the image" if reason == OUTSIDE else f"has {REASONS[reason]}"


def _check_protocol(path: Path, arrays: dict[str, np.ndarray], pool: list[str]) -> dict[str, np.ndarray]:
    """Every query box and gallery positive must have a positive size and not lie wholly left of or
    above the image after ``x2 = x + w``; else a one-line error (no query is silently dropped)."""

    def xyxy(xywh: np.ndarray) -> np.ndarray:
        out = np.asarray(xywh, dtype=np.int64).reshape(-1, 4).copy()
        out[:, 2:] += out[:, :2]
        return out

    reasons = xyxy_reasons(xyxy(arrays["query_boxes_xywh"]))
    if (reasons != OK).any():
        q = int(np.flatnonzero(reasons != OK)[0])
        raise DatasetError(
            f"{path}: query {q} ({arrays['query_names'][q]}) box x,y,w,h = "
            f"{format_box(arrays['query_boxes_xywh'][q])} (as int32) {_describe(int(reasons[q]))}"
        )
    reasons = xyxy_reasons(xyxy(arrays["positive_boxes_xywh"]))
    if (reasons != OK).any():
        p = int(np.flatnonzero(reasons != OK)[0])
        q, k = (int(v[p]) for v in np.nonzero(arrays["positive"]))
        name = pool[int(arrays["entries"][q, k])]
        raise DatasetError(
            f"{path}: query {q} gallery entry {k} ({name}) box x,y,w,h = "
            f"{format_box(arrays['positive_boxes_xywh'][p])} (as int32) {_describe(int(reasons[p]))}"
        )
    return arrays


def _parse_protocol_mat(path: Path, size: int, pool_names: list[str]) -> dict[str, np.ndarray]:
    """Parse ``TestG{size}.mat`` into the compact arrays of :class:`GalleryProtocol`."""
    key = f"TestG{size}"
    items = load_mat_variable(path, key).ravel()
    pool_index = {name: i for i, name in enumerate(pool_names)}
    width = max((np.asarray(item["Gallery"]).size for item in items), default=0)
    entries = np.full((len(items), width), -1, dtype=np.int32)
    positive = np.zeros((len(items), width), dtype=bool)
    boxes = np.zeros((len(items), width, 4), dtype=np.int32)
    query_names: list[str] = []
    query_boxes = np.zeros((len(items), 4), dtype=np.int32)
    for q, item in enumerate(items):
        try:
            query = np.asarray(item["Query"]).ravel()[0]
            query_names.append(mat_string(query["imname"]))
            query_boxes[q] = _castable(path, mat_vector(query["idlocate"], 4), q, "query box")
            for k, entry in enumerate(np.asarray(item["Gallery"]).ravel()):
                name = mat_string(entry[0])
                if name not in pool_index:
                    raise ValueError(f"gallery image {name} is not in pool.mat")
                entries[q, k] = pool_index[name]
                box = mat_vector(entry[1])
                if box.size == 4:
                    positive[q, k] = True
                    boxes[q, k] = _castable(path, box, q, f"gallery entry {k} ({name}) box")
                elif box.size != 0:
                    raise ValueError(f"gallery box of {name} has {box.size} values, expected 4 or none")
        except (IndexError, KeyError, ValueError, TypeError) as exc:
            raise _struct_error(path, f"query {q}", exc) from None
    return {
        "query_names": np.array(query_names, dtype=str),
        "query_boxes_xywh": query_boxes,
        "entries": entries,
        "positive": positive,
        "boxes_xywh": boxes,
    }


SCHEMAS: dict[str, Schema] = {
    "cuhk-images": {
        "names": ("U", (-1,)),
        "counts": ("iu", (-1,)),
        "boxes": ("i", (-1, 4)),
        "dropped": ("iu", ()),
        "invalid": ("iu", ()),
        "warnings": ("U", (-1,)),
    },
    "cuhk-pool": {"names": ("U", (-1,))},
    "cuhk-train": {
        "names": ("U", (-1,)),
        "boxes": ("i", (-1, 4)),
        "identity": ("iu", (-1,)),
        "num_identities": ("iu", ()),
        "warnings": ("U", (-1,)),
    },
}
CHECKS = {
    "cuhk-images": lambda a: len(a["names"]) == len(a["counts"]) and int(a["counts"].sum()) == len(a["boxes"]),
    "cuhk-train": lambda a: len(a["names"]) == len(a["boxes"]) == len(a["identity"]),
}


def _cached(kind: str, path: Path, parse, *args) -> dict[str, np.ndarray]:
    require_file(path, LAYOUT)
    return load_or_build(kind, [path], lambda: parse(path, *args), schema=SCHEMAS[kind], check=CHECKS.get(kind))


def load_pool_names(root: str | Path) -> list[str]:
    """Gallery image names in ``pool.mat`` order."""
    return [str(n) for n in _cached("cuhk-pool", Path(root) / POOL_MAT, _parse_pool_mat)["names"]]


def _build_protocol(path: Path, size: int, pool: list[str]) -> dict[str, np.ndarray]:
    """Compact protocol arrays: the fast streaming reader, or scipy when it meets anything unexpected."""
    from personsearch.data.mat5 import Mat5Unsupported, read_protocol

    try:
        return _check_protocol(path, read_protocol(path, f"TestG{size}", pool), pool)
    except Mat5Unsupported:
        pass  # includes box values that are not finite or out of range: scipy names the query
    except KeyError as exc:
        raise DatasetError(f"{path}: gallery image {exc.args[0]} is not in pool.mat") from None
    except (OSError, ValueError, IndexError, struct.error) as exc:
        raise DatasetError(f"{path}: not a readable MATLAB file ({exc.__class__.__name__}: {exc})") from None
    dense = _parse_protocol_mat(path, size, pool)
    arrays = {
        "query_names": dense["query_names"],
        "query_boxes_xywh": dense["query_boxes_xywh"],
        "entries": dense["entries"],
        "positive": dense["positive"],
        "positive_boxes_xywh": dense["boxes_xywh"][dense["positive"]].astype(np.int32).reshape(-1, 4),
    }
    return _check_protocol(path, arrays, pool)


PROTOCOL_SCHEMA = {
    "query_names": ("U", (-1,)),
    "query_boxes_xywh": ("i", (-1, 4)),
    "entries": ("i", (-1, -1)),
    "positive": ("b", (-1, -1)),
    "positive_boxes_xywh": ("i", (-1, 4)),
}


def _protocol_consistent(a: dict[str, np.ndarray], pool_size: int) -> bool:
    q = len(a["query_names"])
    return (
        len(a["query_boxes_xywh"]) == q
        and a["entries"].shape == a["positive"].shape
        and len(a["entries"]) == q
        and int(a["positive"].sum()) == len(a["positive_boxes_xywh"])
        and bool((a["entries"] < pool_size).all())
        and bool((a["entries"] >= -1).all())
    )


def load_gallery_protocol(root: str | Path, size: int) -> GalleryProtocol:
    """The per-query galleries of ``TestG{size}.mat`` (entries index the ``pool.mat`` order).

    Parsed once by a streaming reader (``personsearch.data.mat5``; scipy as the fallback) into compact
    arrays cached outside the dataset folder, keyed by the files' paths, sizes and mtimes.
    """
    root = Path(root)
    pool = load_pool_names(root)
    path = protocol_path(root, size)
    if not path.is_file():
        present = available_gallery_sizes(root)
        raise DatasetError(f"missing file {path}; gallery sizes present: {present or 'none'}")
    arrays = load_or_build(
        f"cuhk-testg{size}-sparse",
        [path, root / POOL_MAT],
        lambda: _build_protocol(path, size, pool),
        schema=PROTOCOL_SCHEMA,
        check=lambda a: _protocol_consistent(a, len(pool)),
    )
    return GalleryProtocol(
        size=size,
        gallery_names=pool,
        query_names=[str(n) for n in arrays["query_names"]],
        query_boxes_xywh=arrays["query_boxes_xywh"],
        entries=arrays["entries"],
        positive=arrays["positive"],
        positive_boxes_xywh=arrays["positive_boxes_xywh"],
    )


def _assign_identities(
    boxes_xywh: dict[str, np.ndarray],
    assignments: Iterable[tuple[str, np.ndarray, int]],
    source: Path,
) -> tuple[dict[str, np.ndarray], int]:
    """Give ``pid`` to the first box of the image equal to the given box; count boxes that match none."""
    pids: dict[str, np.ndarray] = {}
    unmatched = 0
    for name, box, pid in assignments:
        boxes = boxes_xywh.get(name)
        if boxes is None:
            raise DatasetError(f"{source}: image {name} is not listed in {IMAGES_MAT}")
        hits = np.flatnonzero((boxes == box).all(axis=1))
        if hits.size == 0:
            unmatched += 1
            continue
        if name not in pids:
            pids[name] = np.full(len(boxes), UNLABELED, dtype=np.int64)
        pids[name][hits[0]] = pid
    return pids, unmatched


def _assign_with_warning(
    boxes_xywh: dict[str, np.ndarray],
    assignments: Iterable[tuple[str, np.ndarray, int]],
    source: Path,
    warnings: list[str],
) -> dict[str, np.ndarray]:
    pids, unmatched = _assign_identities(boxes_xywh, assignments, source)
    if unmatched:
        warnings.append(f"{source}: {unmatched} boxes match no box of their image (left unlabelled)")
    return pids


def _gallery_assignments(protocol: GalleryProtocol) -> Iterable[tuple[str, np.ndarray, int]]:
    """Query boxes and gallery positives up to each query's first negative entry (reference loaders)."""
    for q, name in enumerate(protocol.query_names):
        yield name, protocol.query_boxes_xywh[q], q + 1
        for k in range(protocol.entries.shape[1]):
            if protocol.entries[q, k] < 0 or not protocol.positive[q, k]:
                break
            yield protocol.gallery_names[protocol.entries[q, k]], protocol.boxes_xywh[q, k], q + 1


def check_layout(root: Path) -> None:
    """Raise a one-line error when the root or a required file is missing."""
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist; expected layout: {LAYOUT}")
    for rel in (IMAGES_MAT, POOL_MAT, TRAIN_MAT, PROTOCOL_DIR / "TestG50.mat"):
        require_file(root / rel, LAYOUT)


def _assemble(root: Path) -> dict[str, np.ndarray]:
    """Splits, boxes and identities as flat arrays (cached as a whole, see :func:`load_cuhk_sysu`)."""
    images = _cached("cuhk-images", root / IMAGES_MAT, _parse_images_mat)
    all_names = [str(n) for n in images["names"]]
    offsets = np.concatenate([[0], np.cumsum(images["counts"])])
    boxes_xywh = {name: images["boxes"][offsets[i] : offsets[i + 1]] for i, name in enumerate(all_names)}
    warnings: list[str] = images["warnings"].tolist()
    if len(boxes_xywh) != len(all_names):
        warnings.append(f"{root / IMAGES_MAT}: {len(all_names) - len(boxes_xywh)} repeated image names")

    pool = load_pool_names(root)
    missing = [n for n in pool if n not in boxes_xywh]
    if missing:
        raise DatasetError(f"{root / POOL_MAT}: image {missing[0]} is not listed in {IMAGES_MAT}")
    pool_set = set(pool)
    train_names = sorted(set(all_names) - pool_set)

    train = _cached("cuhk-train", root / TRAIN_MAT, _parse_train_mat)
    warnings += train["warnings"].tolist()
    train_rows = zip(train["names"], train["boxes"], train["identity"], strict=True)
    train_pids = _assign_with_warning(
        boxes_xywh, ((str(n), b, int(i) + 1) for n, b, i in train_rows), root / TRAIN_MAT, warnings
    )
    protocol = load_gallery_protocol(root, 50)
    for q, name in enumerate(protocol.query_names):
        check_name(name, protocol_path(root, 50), f"query {q} image name")
    gallery_pids = _assign_with_warning(boxes_xywh, _gallery_assignments(protocol), protocol_path(root, 50), warnings)
    warnings += [
        f"{protocol_path(root, 50)}: query {q} image {name} is not in pool.mat"
        for q, name in enumerate(protocol.query_names)
        if name not in pool_set
    ]
    query_boxes = protocol.query_boxes_xywh.astype(np.int32).copy()
    query_boxes[:, 2:] += query_boxes[:, :2]
    return {
        **_flatten("train", train_names, boxes_xywh, train_pids),
        **_flatten("gallery", pool, boxes_xywh, gallery_pids),
        "query_names": np.array(protocol.query_names, dtype=str),
        "query_boxes": query_boxes,
        "dropped": images["dropped"],
        "invalid": images["invalid"],
        "warnings": np.array(warnings, dtype=str),
    }


def _flatten(
    split: str, names: list[str], boxes_xywh: dict[str, np.ndarray], pids: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One split as flat arrays: names, per-image counts, x1y1x2y2 boxes, identities."""
    boxes = [boxes_xywh[n] for n in names]
    labels = [pids.get(n, np.full(len(b), UNLABELED, dtype=np.int64)) for n, b in zip(names, boxes)]
    flat = np.concatenate(boxes).astype(np.int32) if boxes else np.zeros((0, 4), np.int32)
    flat[:, 2:] += flat[:, :2]
    return {
        f"{split}_names": np.array(names, dtype=str),
        f"{split}_counts": np.array([len(b) for b in boxes], dtype=np.int64),
        f"{split}_boxes": flat,
        f"{split}_pids": np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64),
    }


def _records(root: Path, arrays: dict[str, np.ndarray], split: str) -> list[ImageRecord]:
    names = arrays[f"{split}_names"].tolist()
    offsets = np.concatenate([[0], np.cumsum(arrays[f"{split}_counts"])]).tolist()
    boxes, pids = arrays[f"{split}_boxes"], arrays[f"{split}_pids"]
    return [
        ImageRecord(
            name, root / IMAGE_DIR / name, boxes[offsets[i] : offsets[i + 1]], pids[offsets[i] : offsets[i + 1]]
        )
        for i, name in enumerate(names)
    ]


def load_cuhk_sysu(root: str | Path) -> PersonSearchData:
    """Load CUHK-SYSU (real or synthetic) from ``root``.

    The assembled splits are cached (keyed by ``Images.mat``, ``pool.mat``, ``Train.mat`` and
    ``TestG50.mat``), so a second load only reads one compact archive.
    """
    root = Path(root)
    check_layout(root)
    sources = [root / p for p in (IMAGES_MAT, POOL_MAT, TRAIN_MAT)] + [protocol_path(root, 50)]
    arrays = load_or_build(
        "cuhk-dataset", sources, lambda: _assemble(root), schema=DATASET_SCHEMA, check=_dataset_consistent
    )
    check_names(arrays["train_names"].tolist() + arrays["gallery_names"].tolist(), root / IMAGES_MAT)
    check_names(arrays["query_names"].tolist(), protocol_path(root, 50))
    warnings = arrays["warnings"].tolist()
    if not (root / IMAGE_DIR).is_dir():  # annotations alone suffice for statistics and evaluation
        warnings.append(f"image folder {root / IMAGE_DIR} is missing (needed for training and inference)")
    queries = [
        QueryRecord(name, root / IMAGE_DIR / name, box, q + 1)
        for q, (name, box) in enumerate(zip(arrays["query_names"].tolist(), arrays["query_boxes"]))
    ]
    data = PersonSearchData(
        name="cuhk-sysu",
        root=root,
        train=_records(root, arrays, "train"),
        gallery=_records(root, arrays, "gallery"),
        queries=queries,
        protocol_sizes=available_gallery_sizes(root),
        dropped_boxes=int(arrays["dropped"]),
        invalid_boxes=int(arrays["invalid"]),
        warnings=warnings,
    )
    emit(data.warnings)
    return data


DATASET_SCHEMA = {
    **{
        f"{split}_{key}": spec
        for split in ("train", "gallery")
        for key, spec in {
            "names": ("U", (-1,)),
            "counts": ("iu", (-1,)),
            "boxes": ("i", (-1, 4)),
            "pids": ("i", (-1,)),
        }.items()
    },
    "query_names": ("U", (-1,)),
    "query_boxes": ("i", (-1, 4)),
    "dropped": ("iu", ()),
    "invalid": ("iu", ()),
    "warnings": ("U", (-1,)),
}


def _dataset_consistent(a: dict[str, np.ndarray]) -> bool:
    splits_ok = all(
        len(a[f"{s}_names"]) == len(a[f"{s}_counts"])
        and int(a[f"{s}_counts"].sum()) == len(a[f"{s}_boxes"]) == len(a[f"{s}_pids"])
        for s in ("train", "gallery")
    )
    return splits_ok and len(a["query_names"]) == len(a["query_boxes"])
