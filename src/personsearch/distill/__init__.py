"""Diverse knowledge distillation (DKD): the Re-ID teacher, the three KD losses, SIA, the trainer hook.

``build_distiller`` is imported lazily so ``import personsearch.distill`` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_distiller"]


def build_distiller(cfg: dict[str, Any], data: Any, class_map: dict[int, int], device: Any) -> Any:
    """The trainer's distillation hook object (see :mod:`personsearch.distill.distiller`)."""
    from personsearch.distill.distiller import build_distiller as build

    return build(cfg, data, class_map, device)
