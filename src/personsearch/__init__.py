"""personsearch: end-to-end person search with diverse knowledge distillation (DKD).

The Python API (:class:`Searcher`, :class:`Detections`) is imported on first use, so ``import personsearch``
stays light (no torch)::

    from personsearch import Searcher
    searcher = Searcher.from_checkpoint("run/last.pth")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Detections", "Searcher", "__version__"]

_LAZY = {
    "Searcher": "personsearch.footage.searcher",
    "Detections": "personsearch.footage.detections",
}

if TYPE_CHECKING:
    from personsearch.footage.detections import Detections
    from personsearch.footage.searcher import Searcher


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'personsearch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
