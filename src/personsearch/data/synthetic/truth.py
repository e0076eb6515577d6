"""Ground truth of a generated dataset: what was drawn and written, for round-trip tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 as a spec-following loader reads it back


@dataclass
class ImageTruth:
    """One scene image with its valid boxes in file order (zero-size boxes left out)."""

    name: str  # file name with .jpg
    split: str  # "train" | "gallery"
    size: tuple[int, int]  # width, height
    boxes: list[Box]
    pids: list[int]  # -1 for unlabelled people
    cam: int = -1  # PRW camera 1..6; -1 for CUHK-SYSU


@dataclass
class QueryTruth:
    """One query in protocol order (TestG50 Query order / query_info.txt line order)."""

    image: str
    box: Box
    pid: int
    cam: int = -1


@dataclass
class Quirk:
    """A deliberately injected oddity of the real data."""

    kind: str
    image: str
    query: int | None = None  # 0-based query index where the quirk concerns a query
    detail: str = ""


@dataclass
class SyntheticDataset:
    """Summary returned by :func:`generate_dataset`."""

    fmt: str
    root: Path
    preset: str
    seed: int
    images: list[ImageTruth]  # train split (loader order), then gallery split (loader order)
    queries: list[QueryTruth]
    gallery_sizes: list[int] = field(default_factory=list)  # CUHK TestG sizes written
    num_zero_size_boxes: int = 0  # boxes with w <= 0 or h <= 0 written on purpose
    quirks: list[Quirk] = field(default_factory=list)
    train_ids: list[int] = field(default_factory=list)
    test_ids: list[int] = field(default_factory=list)
    # (split, pid, pid, attribute): identity pairs that differ in one attribute only
    hard_negatives: list[tuple[str, int, int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def split(self, name: str) -> list[ImageTruth]:
        """Images of one split ("train" or "gallery") in loader order."""
        return [im for im in self.images if im.split == name]

    def quirk_kinds(self) -> set[str]:
        """The kinds of quirks present."""
        return {q.kind for q in self.quirks}
