"""The ``train-teacher`` sub-command."""

from __future__ import annotations

import argparse

from personsearch.commandline import add_command, add_config_options, add_no_progress_option, add_overwrite_option

DESCRIPTION = """Train the teacher on the ground-truth person crops of a dataset's training split (ISA, random
erasing, BN-neck, label-smoothed identity loss + batch-hard triplet loss), evaluate it alone on the test split's
ground-truth crops (mAP, top-1) and write OUTPUT_DIR/teacher.pth. Settings: the 'teacher' section of the config
(see docs/dkd.md); use it with distill.teacher=PATH in train."""


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = "train the crop-based Re-ID teacher used for distillation (DKD)"
    p = add_command(subparsers, "train-teacher", run_train_teacher, help=summary, description=DESCRIPTION)
    add_config_options(p, "YAML config (see configs/teacher_*.yaml)", "config overrides, e.g. teacher.epochs=5")
    add_overwrite_option(
        p,
        "train into an output_dir that already holds a teacher (config.yaml + teacher.pth): its "
        "teacher.pth, log.txt and metrics.jsonl are deleted first (without it that is an error)",
    )
    add_no_progress_option(p)


def run_train_teacher(args: argparse.Namespace) -> int:
    from personsearch.distill.teacher_run import train_teacher

    path, metrics = train_teacher(args.config, args.overrides, overwrite=args.overwrite, progress=not args.no_progress)
    if metrics is not None:
        print(f"teacher crop Re-ID: mAP={metrics['mAP']:.4f} top1={metrics['top1']:.4f} ({metrics['queries']} queries)")
    print(f"teacher checkpoint: {path}")
    return 0
