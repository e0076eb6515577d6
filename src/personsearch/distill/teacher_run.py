"""``personsearch train-teacher`` without the argument parsing: one teacher training run in its folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def train_teacher(
    config: Path | None, overrides: Sequence[str] = (), *, overwrite: bool = False, progress: bool = True
) -> tuple[Path, dict[str, float] | None]:
    """Train the crop Re-ID teacher of ``config`` plus ``overrides`` into its ``output_dir``; returns the
    teacher checkpoint and its crop Re-ID figures (None without a test split). A folder that already holds
    a teacher is an error unless ``overwrite`` (its teacher, log and metrics are then deleted first)."""
    from personsearch.config import load_config
    from personsearch.distill.teacher_train import TEACHER_FILE, TeacherTrainer
    from personsearch.outputs import check_run_folder, open_run_folder

    cfg = load_config(config, overrides)
    check_run_folder(cfg["output_dir"], ("config.yaml", TEACHER_FILE), overwrite, resumable=False)
    trainer = TeacherTrainer(cfg, progress=progress)
    open_run_folder(trainer.run_dir, (TEACHER_FILE, "log.txt", "metrics.jsonl") if overwrite else ())
    return trainer.train()
