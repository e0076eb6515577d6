"""Load-time checks that keep poisoned annotation values and paths out of the loaders' output.

* Box values are checked *before* any integer cast: they must be finite and within
  ``±MAX_COORD`` pixels (no real image is that large; the bound also keeps ``x + w`` far inside
  ``int32``). After the dataset's documented conversion (``docs/datasets.md`` sections 1-3: CUHK-SYSU cast
  then ``x2 = x + w``; PRW gallery clip, add, truncate; PRW query truncate, then clip) a box must have a
  positive width and height and must not lie wholly left of or above the image.
* Whether a box lies inside its image needs the image size, which is only read from the image itself
  (reading every JPEG header at load would cost about 30 µs per image, 0.5–0.7 s for CUHK-SYSU's
  18,184 images on every command, and datasets may be evaluated without their images). So that check is
  done where an image is decoded for training or inference (:func:`check_boxes_fit`).
* Image and frame names found in annotation files must be plain file names: no path separator, no
  ``..``, no NUL, not absolute, so that a dataset-relative path can never leave its folder.

Dropped boxes are counted per reason and per file; :func:`drop_message` words the one-line warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from personsearch.errors import DatasetError, DatasetWarning

MAX_COORD = 32768.0
# A box may reach this far past the right/bottom edge of its image (annotations of people cut by the
# frame edge) before the image is taken not to match its annotations.
FIT_TOLERANCE_PX = 16
FIT_TOLERANCE_FRAC = 0.25

# Reason codes (0 = valid), in the order they are tested and reported.
OK, NOT_FINITE, OUT_OF_RANGE, NEGATIVE_SIZE, ZERO_SIZE, OUTSIDE = range(6)
REASONS = {
    NOT_FINITE: "not finite",
    OUT_OF_RANGE: f"beyond ±{int(MAX_COORD)} px",
    NEGATIVE_SIZE: "negative width or height",
    ZERO_SIZE: "zero width or height",
    OUTSIDE: "outside the image",
}


def raw_value_reasons(values: np.ndarray) -> np.ndarray:
    """Per row of raw numbers (any storage dtype): NOT_FINITE, OUT_OF_RANGE or OK; no cast to int."""
    arr = np.asarray(values)
    if arr.ndim < 2:
        arr = arr.reshape(1, -1)
    reasons = np.zeros(len(arr), dtype=np.int8)
    if arr.size == 0:
        return reasons
    rows = arr.reshape(len(arr), -1)
    if rows.dtype.kind == "f":
        finite = np.isfinite(rows).all(axis=1)
        with np.errstate(invalid="ignore"):
            huge = (np.abs(np.where(np.isfinite(rows), rows, 0)) > MAX_COORD).any(axis=1)
        reasons[huge] = OUT_OF_RANGE
        reasons[~finite] = NOT_FINITE
    elif rows.dtype.kind in "iub":
        reasons[(np.abs(rows.astype(np.float64)) > MAX_COORD).any(axis=1)] = OUT_OF_RANGE
    else:
        reasons[:] = NOT_FINITE
    return reasons


def xyxy_reasons(boxes: np.ndarray) -> np.ndarray:
    """Per converted ``x1 y1 x2 y2`` int box: ZERO_SIZE, NEGATIVE_SIZE, OUTSIDE (wholly left of or
    above the image) or OK."""
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    reasons = np.zeros(len(b), dtype=np.int8)
    reasons[(b[:, 2] <= 0) | (b[:, 3] <= 0)] = OUTSIDE
    reasons[(w == 0) | (h == 0)] = ZERO_SIZE
    reasons[(w < 0) | (h < 0)] = NEGATIVE_SIZE
    return reasons


def reason_counts(reasons: np.ndarray) -> dict[str, int]:
    """``{reason text: count}`` of the non-OK codes, in reporting order."""
    codes = np.asarray(reasons)
    return {text: int((codes == code).sum()) for code, text in REASONS.items() if (codes == code).any()}


def format_box(values: Iterable) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def drop_message(
    source: Path | str,
    counts: dict[str, int],
    files: Sequence[tuple[str, int]] = (),
    example: str = "",
    verb: str = "dropped",
) -> str:
    """``"<source>: dropped 3 boxes (2 not finite, 1 outside the image) in 2 files: a (2), b (1); e.g. ..."``."""
    total = sum(counts.values())
    parts = ", ".join(f"{n} {text}" for text, n in counts.items())
    message = f"{source}: {verb} {total} box{'es' if total != 1 else ''} ({parts})"
    if files:
        shown = ", ".join(f"{name} ({n})" for name, n in files[:5])
        more = f" and {len(files) - 5} more" if len(files) > 5 else ""
        message += f" in {len(files)} file{'s' if len(files) != 1 else ''}: {shown}{more}"
    if example:
        message += f"; e.g. {example}"
    return message


def check_name(name: str, source: Path | str, what: str = "image name") -> str:
    """Return ``name`` if it is a plain file name inside its dataset folder, else raise a one-line error."""
    problem = None
    if not name:
        problem = "it is empty"
    elif "\x00" in name:
        problem = "it contains a NUL character"
    elif "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        problem = "it contains a path separator"
    elif name in (".", ".."):
        problem = "it names a folder"
    elif Path(name).is_absolute() or Path(name).drive:
        problem = "it is an absolute path"
    else:
        base = os.path.join(os.sep, "dataset")
        resolved = Path(os.path.normpath(os.path.join(base, name)))
        if not resolved.is_relative_to(base) or resolved == Path(base):
            problem = "it leaves the dataset folder"
    if problem:
        raise DatasetError(f"{source}: {what} {name!r} is not a file name inside the dataset folder ({problem})")
    return name


def check_names(names: Iterable[str], source: Path | str, what: str = "image name") -> None:
    """:func:`check_name` for every name (fast path: one test over the joined names)."""
    names = list(names)
    joined = "\n".join(names)
    if "/" in joined or "\\" in joined or "\x00" in joined or ".." in joined or "" in names or "." in names:
        for name in names:
            check_name(name, source, what)


def check_boxes_fit(path: Path | str, boxes: np.ndarray, width: int, height: int, what: str = "box") -> None:
    """Raise a one-line error when a box does not overlap the ``width`` x ``height`` image or reaches
    past its right/bottom edge by more than the tolerance (the image does not match its annotations)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.size == 0:
        return
    tol_w = max(FIT_TOLERANCE_PX, FIT_TOLERANCE_FRAC * width)
    tol_h = max(FIT_TOLERANCE_PX, FIT_TOLERANCE_FRAC * height)
    bad = (
        ~np.isfinite(b).all(axis=1)
        | (b[:, 0] >= width)
        | (b[:, 1] >= height)
        | (b[:, 2] <= 0)
        | (b[:, 3] <= 0)
        | (b[:, 2] > width + tol_w)
        | (b[:, 3] > height + tol_h)
    )
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        more = f" ({int(bad.sum())} of {len(b)} boxes)" if bad.sum() > 1 else ""
        raise DatasetError(
            f"{path}: the image is {width}x{height} but its {what} {k} (x1 y1 x2 y2 = {format_box(b[k])}) "
            f"lies outside it{more}; the image does not match its annotations"
        )


def emit(messages: Iterable[str]) -> None:
    """Report each message once as a :class:`DatasetWarning` (every command shows them)."""
    for message in messages:
        warnings.warn(message, DatasetWarning, stacklevel=3)
