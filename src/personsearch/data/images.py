"""Reading scene images with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from personsearch.errors import DatasetError


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file is missing") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from None


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding the pixels."""
    with _open(Path(path)) as img:
        return img.size


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image into an ``(H, W, 3)`` ``uint8`` RGB array."""
    path = Path(path)
    with _open(path) as img:
        try:
            return np.array(img.convert("RGB"))
        except OSError as exc:  # truncated or corrupt pixel data
            raise DatasetError(f"{path}: cannot decode image ({exc})") from None
