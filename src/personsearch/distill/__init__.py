"""Diverse knowledge distillation (DKD): the Re-ID teacher, the three KD losses, SIA, the trainer's loss
contributor (:class:`~personsearch.distill.distiller.Distiller`) and ``student_trainer``.

The names below are imported lazily so ``import personsearch.distill`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from personsearch.distill.distiller import Distiller
    from personsearch.engine.trainer import Trainer

__all__ = ["build_distiller", "student_trainer"]


def build_distiller(cfg: dict[str, Any], data: Any, class_map: dict[int, int], device: Any) -> Distiller:
    """The distillation loss contributor of ``cfg`` (see :mod:`personsearch.distill.distiller`)."""
    from personsearch.distill.distiller import build_distiller as build

    return build(cfg, data, class_map, device)


def student_trainer(cfg: dict[str, Any], **kwargs: Any) -> Trainer:
    """A trainer with distillation attached when ``cfg`` names a teacher (:mod:`personsearch.distill.training`)."""
    from personsearch.distill.training import student_trainer as build

    return build(cfg, **kwargs)
