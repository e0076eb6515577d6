"""Building MATLAB structs/cells in numpy and saving them byte-reproducibly (docs/datasets.md section 5)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import savemat

# scipy writes the wall-clock time into the 116-byte header text; a fixed text keeps files reproducible.
_HEADER_TEXT = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Sun Nov  1 12:06:30 2015"
EMPTY = np.zeros((1, 0))  # MATLAB [] as loadmat returns it


def save_mat(path: str | Path, variables: dict[str, Any]) -> None:
    """Write a MATLAB 5 file at exactly ``path`` (no ``.mat`` appended) with a fixed header."""
    buf = io.BytesIO()
    savemat(buf, variables, format="5", oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = _HEADER_TEXT.ljust(116, b" ")
    Path(path).write_bytes(bytes(data))


def box_array(values: Sequence[int]) -> np.ndarray:
    """A 1×4 box in MATLAB's smallest storage type: uint8 if every value < 256, else uint16."""
    arr = np.asarray(values, dtype=np.int64).reshape(1, 4)
    if arr.min() < 0:
        raise ValueError(f"negative value in CUHK-SYSU box {values}")
    dtype = np.uint8 if arr.max() < 256 else np.uint16
    return arr.astype(dtype)


def scalar(value: int) -> np.ndarray:
    """A 1×1 non-negative integer in its smallest storage type."""
    dtype = np.uint8 if value < 256 else np.uint16 if value < 65536 else np.uint32
    return np.array([[value]], dtype=dtype)


def struct_array(fields: Sequence[str], rows: Sequence[Sequence[Any]], shape: tuple[int, int]) -> np.ndarray:
    """A MATLAB struct array of ``shape`` filled row-major from ``rows`` (one tuple per element)."""
    arr = np.zeros(shape, dtype=[(f, "O") for f in fields])
    flat = arr.reshape(-1)
    if len(rows) != flat.size:
        raise ValueError(f"{len(rows)} elements for a struct of shape {shape}")
    for i, row in enumerate(rows):
        for field, value in zip(fields, row, strict=True):
            flat[i][field] = value
    return arr


def cell_column(items: Sequence[Any]) -> np.ndarray:
    """An n×1 MATLAB cell array."""
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell
