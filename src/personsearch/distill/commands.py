"""The ``train-teacher`` sub-command."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-teacher",
        help="train the crop-based Re-ID teacher used for distillation (DKD)",
        description=(
            "Train the teacher on the ground-truth person crops of a dataset's training split (ISA, random "
            "erasing, BN-neck, label-smoothed identity loss + batch-hard triplet loss), evaluate it alone on "
            "the test split's ground-truth crops (mAP, top-1) and write OUTPUT_DIR/teacher.pth. Settings: the "
            "'teacher' section of the config (see docs/dkd.md); use it with distill.teacher=PATH in train."
        ),
    )
    p.add_argument("--config", type=Path, help="YAML config (see configs/teacher_*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. teacher.epochs=5")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train into an output_dir that already holds a teacher (config.yaml + teacher.pth): its "
        "teacher.pth, log.txt and metrics.jsonl are deleted first (without it that is an error)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_train_teacher)


def run_train_teacher(args: argparse.Namespace) -> int:
    from personsearch.config import load_config
    from personsearch.distill.teacher_train import TEACHER_FILE, TeacherTrainer
    from personsearch.outputs import check_run_folder, open_run_folder

    cfg = load_config(args.config, args.overrides)
    check_run_folder(cfg["output_dir"], ("config.yaml", TEACHER_FILE), args.overwrite, resumable=False)
    trainer = TeacherTrainer(cfg, progress=not args.no_progress)
    open_run_folder(trainer.run_dir, (TEACHER_FILE, "log.txt", "metrics.jsonl") if args.overwrite else ())
    path, metrics = trainer.train()
    if metrics is not None:
        print(f"teacher crop Re-ID: mAP={metrics['mAP']:.4f} top1={metrics['top1']:.4f} ({metrics['queries']} queries)")
    print(f"teacher checkpoint: {path}")
    return 0
