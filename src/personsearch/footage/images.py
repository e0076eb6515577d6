"""Image-like inputs of the footage API: file paths, PIL images or ``H x W x 3`` ``uint8`` RGB arrays.

:func:`to_rgb` turns any of them into an array, :func:`as_image_list` tells one image from a sequence of
them, and :func:`check_box` validates a query box against an image's size. Every problem is a one-line
:class:`~personsearch.errors.PersonSearchError` naming the image (and the box).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from personsearch.errors import PersonSearchError

#: What the API accepts as an image.
ImageLike = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]


def describe(image: ImageLike) -> str:
    """How an image reads in an error message: its path, or its kind and size."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, Image.Image):
        return f"PIL image {image.width}x{image.height}"
    if isinstance(image, np.ndarray):
        return f"array of shape {tuple(image.shape)}"
    return type(image).__name__


def is_single_image(value: object) -> bool:
    """True for one image-like value (a path, a PIL image, an ``H x W x C`` array), False for a sequence."""
    if isinstance(value, (str, os.PathLike, Image.Image)):
        return True
    return isinstance(value, np.ndarray) and value.ndim != 4


def as_image_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """``images`` as a list: one image becomes ``[image]``; an ``N x H x W x 3`` array its N images."""
    if is_single_image(images):
        return [images]  # type: ignore[list-item]
    if isinstance(images, np.ndarray):
        return list(images)
    if isinstance(images, (Sequence, tuple)):
        return list(images)
    try:
        return list(images)  # type: ignore[call-overload]
    except TypeError:
        raise PersonSearchError(
            f"expected an image (a path, a PIL image or an HxWx3 uint8 array) or a sequence of them, "
            f"got {type(images).__name__}"
        ) from None


def to_rgb(image: ImageLike) -> np.ndarray:
    """``image`` as a C-contiguous, writable ``H x W x 3`` ``uint8`` RGB array (a path is decoded, a PIL
    image converted; a grayscale ``H x W`` array is replicated into three channels; an array that is
    already one is returned as it is, not copied)."""
    if isinstance(image, (str, os.PathLike)):
        from personsearch.data.images import load_image

        return load_image(Path(image))
    if isinstance(image, Image.Image):
        try:
            return np.array(image.convert("RGB"))
        except OSError as exc:
            raise PersonSearchError(f"{describe(image)}: cannot decode image ({exc})") from None
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise PersonSearchError(f"image {describe(image)} has dtype {image.dtype}; expected uint8 RGB")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise PersonSearchError(f"image {describe(image)}: expected an H x W x 3 RGB array")
        if not image.flags.writeable:  # torch.from_numpy warns about read-only arrays
            return image.copy(order="C")
        return np.ascontiguousarray(image)
    raise PersonSearchError(
        f"expected an image (a path, a PIL image or an HxWx3 uint8 array), got {type(image).__name__}"
    )


def format_box(box: Sequence[float]) -> str:
    """``x1,y1,x2,y2`` with short numbers."""
    return ",".join(f"{float(v):g}" for v in box)


def check_box(box: Sequence[float], image: object, size: tuple[int, int], what: str = "box") -> list[float]:
    """``box`` (``x1 y1 x2 y2``) clipped to the image (``size`` = width, height).

    A :class:`PersonSearchError` naming ``what``, the box, the image and its size when the box does not have
    four coordinates, has a NaN or infinite one, has no positive width and height, or nothing of it lies
    inside the image.
    """
    width, height = size
    values = [float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)]
    where = f"{what} {format_box(values)} in {image} ({width}x{height} pixels)"
    if len(values) != 4:
        raise PersonSearchError(f"{where}: expected four numbers x1,y1,x2,y2")
    if not all(math.isfinite(v) for v in values):
        raise PersonSearchError(f"{where}: every coordinate must be a finite number")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise PersonSearchError(f"{where}: need x2 > x1 and y2 > y1 (a box of positive width and height)")
    clipped = [min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width)]
    clipped.append(min(max(y2, 0.0), height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise PersonSearchError(f"{where}: the box lies outside the image")
    return clipped
