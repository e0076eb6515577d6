"""Datasets: the common annotation model, real-format loaders and the synthetic generator."""

from __future__ import annotations

from pathlib import Path

from personsearch.data.annotations import (
    NO_CAMERA,
    UNLABELED,
    GalleryProtocol,
    ImageRecord,
    PersonSearchData,
    QueryRecord,
)
from personsearch.errors import DatasetError

DATASETS = ("cuhk-sysu", "prw")

__all__ = [
    "DATASETS",
    "NO_CAMERA",
    "UNLABELED",
    "GalleryProtocol",
    "ImageRecord",
    "PersonSearchData",
    "QueryRecord",
    "load_dataset",
]


def load_dataset(name: str, root: str | Path) -> PersonSearchData:
    """Load ``cuhk-sysu`` or ``prw`` from its root folder (the real dataset or a synthetic one)."""
    key = name.lower().replace("_", "-")
    if key in ("cuhk-sysu", "cuhk"):
        from personsearch.data.cuhk_sysu import load_cuhk_sysu

        return load_cuhk_sysu(root)
    if key == "prw":
        from personsearch.data.prw import load_prw

        return load_prw(root)
    raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
