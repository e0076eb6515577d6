"""Student training with distillation: the engine's trainer with the DKD loss contributor attached."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from personsearch.engine.hooks import TrainHook
from personsearch.engine.trainer import Trainer

from .distiller import build_distiller


def student_trainer(
    cfg: dict[str, Any],
    resume: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    hooks: Sequence[TrainHook] = (),
) -> Trainer:
    """A :class:`~personsearch.engine.trainer.Trainer` for ``cfg`` (or the run to ``resume``, whose saved
    config wins) with the distillation contributor registered when the config names a ``distill.teacher``."""
    trainer = Trainer(cfg, resume=resume, progress=progress, overwrite=overwrite, hooks=hooks)
    if trainer.config.distill.teacher:
        trainer.register(build_distiller(trainer.config, trainer.data, trainer.class_map, trainer.device))
    return trainer
