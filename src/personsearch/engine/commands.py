"""Training and inference sub-commands: ``train``, ``infer`` and ``test``."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from personsearch.argtypes import non_negative_int, positive_int, probability
from personsearch.commandline import (
    add_checkpoint_option,
    add_command,
    add_config_options,
    add_dataset_options,
    add_device_option,
    add_no_progress_option,
    add_overwrite_option,
    options_from_args,
)

if TYPE_CHECKING:
    from personsearch.engine.runs import InferenceRun

TRAIN_DESCRIPTION = """Train from a YAML config plus key=value overrides (e.g. train.lr=0.01
model.backbone.arch=resnet18). The merged config, checkpoints, log.txt, metrics.jsonl and TensorBoard scalars go
to the run folder (output_dir). Multi-GPU: torchrun --nproc_per_node N -m personsearch.cli train ..."""


def register(subparsers: argparse._SubParsersAction) -> None:
    _add_train(subparsers)
    for name, text in (
        ("infer", "run a trained model over a dataset's test split and write a results file"),
        ("test", "infer, then evaluate and print the whole table"),
    ):
        _add_inference_command(subparsers, name, text)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    summary = "train the end-to-end person search network"
    train = add_command(subparsers, "train", run_train, help=summary, description=TRAIN_DESCRIPTION)
    add_config_options(train, "YAML config (see configs/)", "config overrides")
    train.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue a run from its folder (last.pth) or a checkpoint file"
    )
    train.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="ImageNet backbone weights file (same as model.backbone.pretrained=FILE)",
    )
    add_overwrite_option(
        train,
        "train into an output_dir that already holds a run (config.yaml + last.pth): its checkpoints, "
        "log.txt and metrics.jsonl are deleted first (without it, or --resume, that is an error)",
    )
    add_no_progress_option(train)


def _add_inference_command(subparsers: argparse._SubParsersAction, name: str, text: str) -> None:
    """``infer`` or ``test`` (which also evaluates: its --out is optional, and it has evaluation options)."""
    test = name == "test"
    p = add_command(subparsers, name, run_test if test else run_infer, help=text, description=text)
    add_checkpoint_option(p, "a checkpoint written by train", required=True)
    add_dataset_options(p)
    p.add_argument(
        "--out",
        type=Path,
        required=not test,
        metavar="RESULTS.npz",
        help="results file to write" + (" (optional)" if test else ""),
    )
    add_device_option(p, "default: auto")
    p.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default: 1)")
    p.add_argument("--workers", type=non_negative_int, default=2, help="image-loading processes (default: 2)")
    add_no_progress_option(p)
    p.add_argument(
        "--cbgm",
        action="store_true",
        help="also detect in the query images (the context CBGM re-scoring needs)"
        + ("; evaluate with CBGM" if test else ""),
    )
    p.add_argument(
        "--two-step",
        action="store_true",
        help="two-step pipeline: the model's detections, embedded by the --teacher Re-ID network",
    )
    p.add_argument("--teacher", type=Path, metavar="FILE", help="teacher checkpoint (train-teacher) for --two-step")
    if test:
        _add_evaluation_options(p)


def _add_evaluation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--det-thresh", type=probability, default=0.5, help="detection score threshold in [0, 1]")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write every figure as JSON")
    p.add_argument(
        "--gt-reid",
        action="store_true",
        help="also Re-ID alone: the embeddings of every ground-truth box, queries against "
        "gallery boxes (no detector; the teacher's crop protocol, docs/dkd.md)",
    )


def run_train(args: argparse.Namespace) -> int:
    from personsearch.distill import student_trainer
    from personsearch.engine.runs import training_config

    cfg = training_config(
        args.config, args.overrides, resume=args.resume, weights=args.weights, overwrite=args.overwrite
    )
    trainer = student_trainer(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    run_dir = trainer.train()
    if trainer.info.is_main:
        print(f"run folder: {run_dir}")
    return 0


def _infer(args: argparse.Namespace, gt_reid: bool = False) -> InferenceRun:
    """:func:`~personsearch.engine.runs.infer_checkpoint` with the options of ``args`` (with ``--two-step``
    or ``--teacher``, the teacher's embeddings: :func:`~personsearch.distill.two_step.two_step_embedder`)."""
    from personsearch.engine.runs import InferenceOptions, infer_checkpoint

    options = options_from_args(InferenceOptions, args, progress=not args.no_progress, gt_reid=gt_reid)
    load_embedder = None
    if args.two_step or args.teacher:
        from personsearch.distill.two_step import two_step_embedder

        load_embedder = partial(two_step_embedder, args.two_step, args.teacher)
    return infer_checkpoint(args.checkpoint, args.dataset, args.root, options, load_embedder)


def run_infer(args: argparse.Namespace) -> int:
    from personsearch.evaluation import make_results, save_results
    from personsearch.outputs import check_output_file

    check_output_file(args.out, "--out")
    run = _infer(args)
    save_results(args.out, make_results(**run.arrays))
    print(f"results: {args.out}")
    return 0


def run_test(args: argparse.Namespace) -> int:
    import json

    from personsearch.engine.inference import full_report
    from personsearch.evaluation import make_results, save_results
    from personsearch.outputs import check_output_file, write_text

    check_output_file(args.out, "--out")
    check_output_file(args.json, "--json")
    run = _infer(args, gt_reid=args.gt_reid)
    results = make_results(**run.arrays)
    if args.out:
        save_results(args.out, results)
        print(f"results: {args.out}")
    report, table = full_report(run.data, results, det_thresh=args.det_thresh, cbgm=args.cbgm)
    print(table)
    if run.reid is not None:
        reid = run.reid
        report["gt_box_reid"] = reid
        print(
            f"Re-ID alone on ground-truth boxes (no detector, {reid['queries']} queries): "
            f"mAP {100 * reid['mAP']:.2f}%  top-1 {100 * reid['top1']:.2f}%"
        )
    if args.json:
        write_text(args.json, json.dumps(report, indent=2), "JSON file")
    return 0
