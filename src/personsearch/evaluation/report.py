"""Readable tables of evaluation metrics."""

from __future__ import annotations

from personsearch.evaluation.protocols import find_protocol, gallery_label


def _pct(value: float) -> str:
    return f"{100 * value:6.2f}%"


def _settings(m: dict) -> str:
    parts = [m.get("dataset", "?")]
    spec = find_protocol(m.get("dataset"))
    size, cross_camera = m.get("gallery_size"), bool(m.get("cross_camera"))
    label = spec.setting_label(size, cross_camera) if spec is not None else gallery_label(size)
    if label is not None:
        parts.append(label)
    parts.append(f"det_thresh {m.get('det_thresh')}")
    if m.get("cbgm"):
        parts.append("CBGM")
    return ", ".join(parts)


def format_metrics(m: dict) -> str:
    """A small table of one evaluation."""
    lines = [f"Evaluation: {_settings(m)} ({m.get('num_queries', '?')} queries)"]
    s = m.get("search")
    if s:
        lines.append(
            "  search     mAP "
            + _pct(s["mAP"])
            + "   top-1 "
            + _pct(s["top1"])
            + "   top-5 "
            + _pct(s["top5"])
            + "   top-10 "
            + _pct(s["top10"])
        )
    d = m.get("detection")
    if d:
        lines.append("  detection  AP  " + _pct(d["ap"]) + "   recall " + _pct(d["recall"]))
    return "\n".join(lines)


def format_sweep(m: dict) -> str:
    """The gallery-size curve of a CUHK-SYSU sweep."""
    lines = [
        f"Evaluation: {m.get('dataset')}, det_thresh {m.get('det_thresh')}"
        f"{', CBGM' if m.get('cbgm') else ''} ({m.get('num_queries')} queries)",
        "  gallery      mAP    top-1    top-5   top-10",
    ]
    for row in m["sweep"]:
        size = "full" if row["gallery_size"] == -1 else str(row["gallery_size"])
        s = row["search"]
        lines.append(f"  {size:>7} {_pct(s['mAP'])} {_pct(s['top1'])} {_pct(s['top5'])} {_pct(s['top10'])}")
    d = m["detection"]
    lines.append("  detection  AP " + _pct(d["ap"]) + "   recall " + _pct(d["recall"]))
    return "\n".join(lines)
