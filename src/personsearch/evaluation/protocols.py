"""Each dataset's person-search evaluation policy as one object (spec section 3).

A loader says what a dataset folder holds (:class:`~personsearch.data.annotations.PersonSearchData`,
including the CUHK-SYSU ``TestG`` sizes present in ``protocol_sizes``); a :class:`SearchProtocol` says how
that dataset is searched and evaluated: its gallery sizes and the standard one, whether the cross-camera
setting exists, the CBGM defaults, the settings of a full report and how a setting is named in a table.
Look one up with :func:`protocol_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personsearch.data.annotations import PersonSearchData
from personsearch.data.cuhk_sysu import GALLERY_SIZES as CUHK_TESTG_SIZES
from personsearch.errors import DatasetError, PersonSearchError

FULL_GALLERY = -1  # the gallery size meaning "every gallery image"
DEFAULT_GALLERY_SIZE = 100  # the API's and the CLI's default; a protocol without gallery sizes tolerates it


@dataclass(frozen=True)
class SearchProtocol:
    """The evaluation policy of one dataset (see the module docstring)."""

    name: str  # ``PersonSearchData.name``
    title: str  # the dataset's name in messages
    gallery_sizes: tuple[int, ...]  # the sizes the protocol defines, FULL_GALLERY last
    standard_gallery_size: int  # the setting figures are usually quoted at
    cross_camera: bool  # the cross-camera setting (leave out the query camera's frames) exists
    excludes_query_image: bool  # a search never returns the query's own image
    cbgm_k: tuple[int, int]  # CBGM's (k1, k2): top-k1 gallery detections, first k2 query-image detections

    @property
    def has_gallery_sizes(self) -> bool:
        """Whether a gallery size selects a smaller per-query gallery (CUHK-SYSU's ``TestG{N}`` files)."""
        return any(size != FULL_GALLERY for size in self.gallery_sizes)

    def check_settings(self, gallery_size: int | None, cross_camera: bool) -> None:
        """Raise :class:`PersonSearchError` for a setting this dataset does not have."""
        if not self.has_gallery_sizes and gallery_size not in (None, FULL_GALLERY, DEFAULT_GALLERY_SIZE):
            raise PersonSearchError(f"{self.title} has no gallery-size option (its gallery is every test frame)")
        if cross_camera and not self.cross_camera:
            raise PersonSearchError(f"--cross-camera applies to {_titles('cross_camera')} only")

    def check_sweep(self) -> None:
        """Raise :class:`PersonSearchError` unless this dataset has a gallery-size curve."""
        if not self.has_gallery_sizes:
            raise PersonSearchError(f"--gallery-size all applies to {_titles('has_gallery_sizes')} only")

    def resolve_gallery_size(self, requested: int) -> int:
        """The gallery size to evaluate for a requested one: itself, or the full gallery when there are no sizes."""
        return requested if self.has_gallery_sizes else FULL_GALLERY

    def reported_gallery_size(self, gallery_size: int) -> int | None:
        """The ``gallery_size`` a metrics dict records (None where the dataset has no such option)."""
        return gallery_size if self.has_gallery_sizes else None

    def protocol_file_size(self, gallery_size: int) -> int:
        """The ``TestG{N}`` file a setting reads: its own, or the smallest one for the full set (which adds
        every other gallery image to that file's galleries)."""
        positive = [size for size in self.gallery_sizes if size != FULL_GALLERY]
        return min(positive) if gallery_size == FULL_GALLERY else gallery_size

    def sweep_sizes(self, data: PersonSearchData) -> list[int]:
        """The gallery sizes of a sweep: each size whose file ``data`` holds, ascending, then the full set."""
        if not self.has_gallery_sizes:
            return [FULL_GALLERY]
        return [size for size in data.protocol_sizes if size > 0] + [FULL_GALLERY]

    def standard_settings(self, data: PersonSearchData) -> list[tuple[str, dict[str, Any]]]:
        """Every standard setting as ``(label, evaluate keyword arguments)``: each gallery size of the sweep,
        or the whole gallery with and without the query camera's frames."""
        if self.has_gallery_sizes:
            return [
                ("full" if s == FULL_GALLERY else f"gallery {s}", {"gallery_size": s}) for s in self.sweep_sizes(data)
            ]
        settings: list[tuple[str, dict[str, Any]]] = [("all frames", {"gallery_size": FULL_GALLERY})]
        if self.cross_camera:
            settings.append(("cross-camera", {"gallery_size": FULL_GALLERY, "cross_camera": True}))
        return settings

    def setting_label(self, gallery_size: int | None, cross_camera: bool) -> str | None:
        """How a metrics table names one setting: the camera rule where it exists, else the gallery size."""
        if self.cross_camera:
            return "cross-camera" if cross_camera else "same-camera frames included"
        return gallery_label(gallery_size)


def gallery_label(gallery_size: int | None) -> str | None:
    """``gallery 100`` / ``gallery full set`` (None without a size)."""
    if gallery_size is None:
        return None
    return "gallery full set" if gallery_size == FULL_GALLERY else f"gallery {gallery_size}"


CUHK_SYSU = SearchProtocol(
    name="cuhk-sysu",
    title="CUHK-SYSU",
    gallery_sizes=(*CUHK_TESTG_SIZES, FULL_GALLERY),
    standard_gallery_size=DEFAULT_GALLERY_SIZE,
    cross_camera=False,
    excludes_query_image=True,
    cbgm_k=(10, 3),
)
PRW = SearchProtocol(
    name="prw",
    title="PRW",
    gallery_sizes=(FULL_GALLERY,),
    standard_gallery_size=FULL_GALLERY,
    cross_camera=True,
    excludes_query_image=True,
    cbgm_k=(30, 4),
)
PROTOCOLS: dict[str, SearchProtocol] = {p.name: p for p in (CUHK_SYSU, PRW)}


def _titles(attribute: str) -> str:
    return " and ".join(p.title for p in PROTOCOLS.values() if getattr(p, attribute))


def find_protocol(name: str | None) -> SearchProtocol | None:
    """The protocol of dataset ``name`` (case and ``_``/``-`` insensitive), or None when there is none."""
    if not isinstance(name, str):
        return None
    return PROTOCOLS.get(name.lower().replace("_", "-"))


def protocol_for(name_or_data: str | PersonSearchData) -> SearchProtocol:
    """The protocol of a dataset given by name or as loaded data; :class:`DatasetError` if unknown."""
    name = name_or_data.name if isinstance(name_or_data, PersonSearchData) else name_or_data
    protocol = find_protocol(name)
    if protocol is None:
        raise DatasetError(f"no evaluation protocol for dataset {name!r}; expected one of {', '.join(PROTOCOLS)}")
    return protocol
