"""Synthetic person-search datasets written in the exact on-disk formats of CUHK-SYSU and PRW.

``generate_dataset`` draws articulated people with identity-specific appearance into cluttered scenes and
writes the real file layouts (see ``docs/datasets.md`` section 5); ``write_preview`` reads a written
dataset back from disk and draws a contact sheet.
"""

from __future__ import annotations

from .generate import FORMATS, generate_dataset
from .presets import PRESETS, Preset
from .preview import write_preview
from .truth import ImageTruth, QueryTruth, Quirk, SyntheticDataset

__all__ = [
    "FORMATS",
    "PRESETS",
    "ImageTruth",
    "Preset",
    "QueryTruth",
    "Quirk",
    "SyntheticDataset",
    "generate_dataset",
    "write_preview",
]
