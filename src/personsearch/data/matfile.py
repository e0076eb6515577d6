"""Reading MATLAB annotation files with errors that name the file and the problem."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from personsearch.errors import DatasetError


def require_file(path: Path, layout_hint: str) -> Path:
    """Return ``path`` if it is a file, else raise a one-line error with the expected layout."""
    if not path.is_file():
        raise DatasetError(f"missing file {path}; expected layout: {layout_hint}")
    return path


def load_mat_variable(path: Path, key: str | tuple[str, ...]) -> np.ndarray:
    """Load one variable of a MATLAB 5 file; ``key`` may list alternatives tried in order."""
    import scipy.io  # imported on first use: a warm (cached) load never needs it
    from scipy.io.matlab import MatReadError

    keys = (key,) if isinstance(key, str) else key
    try:
        contents = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise DatasetError(f"missing file {path}") from None
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise DatasetError(f"{path}: unsupported MATLAB file version ({exc}); save it with -v7") from None
    except (MatReadError, ValueError, TypeError, OSError, EOFError, zlib.error, IndexError) as exc:
        raise DatasetError(f"{path}: not a readable MATLAB file ({exc.__class__.__name__}: {exc})") from None
    for name in keys:
        if name in contents:
            return contents[name]
    found = sorted(k for k in contents if not k.startswith("__"))
    wanted = " or ".join(repr(k) for k in keys)
    raise DatasetError(f"{path}: variable {wanted} not found (the file holds {found})")


def mat_string(value: Any) -> str:
    """A MATLAB char array as loaded by scipy (``array(['s1.jpg'])``) to a Python string."""
    arr = np.asarray(value)
    if arr.size == 0:
        raise ValueError("empty string where a name was expected")
    item = arr.ravel()[0]
    if isinstance(item, np.ndarray):  # a cell holding a char array
        return mat_string(item)
    if not isinstance(item, str):
        raise ValueError(f"expected a name (char array), got {item!r}")
    return str(item)


def mat_vector(value: Any, length: int | None = None) -> np.ndarray:
    """A numeric MATLAB array flattened to 1-D; checks the length when given."""
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"expected numbers, got an array of {arr.dtype}")
    flat = arr.reshape(-1)
    if length is not None and flat.size != length:
        raise ValueError(f"expected {length} numbers, got {flat.size}")
    return flat
