"""Dataset statistics (the ``dataset-stats`` command)."""

from __future__ import annotations

import numpy as np

from personsearch.data.annotations import ImageRecord, PersonSearchData


def split_statistics(records: list[ImageRecord]) -> dict[str, int]:
    """Images, boxes, labelled boxes and distinct labelled identities of one split."""
    labeled = [r.pids[r.labeled] for r in records]
    all_labeled = np.concatenate(labeled) if labeled else np.zeros(0, dtype=np.int64)
    return {
        "images": len(records),
        "boxes": int(sum(len(r.boxes) for r in records)),
        "labeled_boxes": int(all_labeled.size),
        "identities": int(np.unique(all_labeled).size),
    }


def dataset_statistics(data: PersonSearchData) -> dict[str, dict[str, int]]:
    """The statistics of ``dataset-stats --json``: train, gallery and query splits."""
    return {
        "train": split_statistics(data.train),
        "gallery": split_statistics(data.gallery),
        "query": {"count": len(data.queries), "images": len({q.name for q in data.queries})},
    }


def format_statistics(data: PersonSearchData, stats: dict[str, dict[str, int]]) -> str:
    """A readable table of :func:`dataset_statistics`."""
    header = f"{'split':<8} {'images':>8} {'boxes':>8} {'labelled':>9} {'identities':>11}"
    lines = [f"{data.name} at {data.root}", header, "-" * len(header)]
    for split in ("train", "gallery"):
        s = stats[split]
        lines.append(f"{split:<8} {s['images']:>8} {s['boxes']:>8} {s['labeled_boxes']:>9} {s['identities']:>11}")
    q = stats["query"]
    lines.append(f"{'query':<8} {q['images']:>8} {q['count']:>8} {'':>9} {'':>11}")
    lines.append("(query row: distinct query images, query boxes)")
    if data.protocol_sizes:
        lines.append(f"gallery sizes present: {', '.join(map(str, data.protocol_sizes))}")
    if data.dropped_boxes:
        lines.append(f"boxes dropped (w <= 0 or h <= 0): {data.dropped_boxes}")
    if data.invalid_boxes:
        lines.append(f"boxes dropped as invalid (see the warnings): {data.invalid_boxes}")
    lines.append(f"training identities (OIM table size): {data.num_train_classes}")
    return "\n".join(lines)
