"""Training and inference sub-commands: ``train``, ``infer`` and ``test``."""

from __future__ import annotations

import argparse
from pathlib import Path

from personsearch.argtypes import device, non_negative_int, positive_int, probability
from personsearch.data import DATASETS


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train the end-to-end person search network",
        description=(
            "Train from a YAML config plus key=value overrides (e.g. train.lr=0.01 "
            "model.backbone.arch=resnet18). The merged config, checkpoints, log.txt, metrics.jsonl and "
            "TensorBoard scalars go to the run folder (output_dir). Multi-GPU: torchrun --nproc_per_node "
            "N -m personsearch.cli train ..."
        ),
    )
    train.add_argument("--config", type=Path, help="YAML config (see configs/)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    train.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue a run from its folder (last.pth) or a checkpoint file"
    )
    train.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="ImageNet backbone weights file (same as model.backbone.pretrained=FILE)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="train into an output_dir that already holds a run (config.yaml + last.pth): its checkpoints, "
        "log.txt and metrics.jsonl are deleted first (without it, or --resume, that is an error)",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(handler=run_train)

    for name, text in (
        ("infer", "run a trained model over a dataset's test split and write a results file"),
        ("test", "infer, then evaluate and print the whole table"),
    ):
        p = subparsers.add_parser(name, help=text, description=text)
        p.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint written by train")
        p.add_argument("--dataset", required=True, choices=DATASETS, help="dataset format")
        p.add_argument("--root", required=True, type=Path, help="dataset root folder")
        p.add_argument(
            "--out",
            type=Path,
            required=name == "infer",
            metavar="RESULTS.npz",
            help="results file to write" + (" (optional)" if name == "test" else ""),
        )
        p.add_argument("--device", type=device, default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
        p.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default: 1)")
        p.add_argument("--workers", type=non_negative_int, default=2, help="image-loading processes (default: 2)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        p.add_argument(
            "--cbgm",
            action="store_true",
            help="also detect in the query images (the context CBGM re-scoring needs)"
            + ("; evaluate with CBGM" if name == "test" else ""),
        )
        p.add_argument(
            "--two-step",
            action="store_true",
            help="two-step pipeline: the model's detections, embedded by the --teacher Re-ID network",
        )
        p.add_argument("--teacher", type=Path, metavar="FILE", help="teacher checkpoint (train-teacher) for --two-step")
        if name == "test":
            p.add_argument("--det-thresh", type=probability, default=0.5, help="detection score threshold in [0, 1]")
            p.add_argument("--json", type=Path, metavar="OUT.json", help="write every figure as JSON")
            p.add_argument(
                "--gt-reid",
                action="store_true",
                help="also Re-ID alone: the embeddings of every ground-truth box, queries against "
                "gallery boxes (no detector; the teacher's crop protocol, docs/dkd.md)",
            )
        p.set_defaults(handler=run_infer if name == "infer" else run_test)


def run_train(args: argparse.Namespace) -> int:
    from personsearch.config import load_config
    from personsearch.engine.trainer import Trainer
    from personsearch.errors import ConfigError

    if args.resume and (args.config or args.overrides or args.weights):
        raise ConfigError(
            "--resume continues a run with its saved config; do not combine it with --config or overrides"
        )
    if args.resume and args.overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it; give one of them")
    overrides = list(args.overrides)
    if args.weights:
        overrides.append(f"model.backbone.pretrained={args.weights}")
    cfg = load_config(args.config, overrides) if not args.resume else {}
    trainer = Trainer(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    run_dir = trainer.train()
    if trainer.info.is_main:
        print(f"run folder: {run_dir}")
    return 0


def _infer(args: argparse.Namespace, gt_reid: bool = False):
    """Load the model and data, run inference; returns the data, the results arrays and, with ``gt_reid``,
    the Re-ID-alone figures on ground-truth boxes by the same embedder (else ``None``)."""
    from personsearch.data import load_dataset
    from personsearch.engine.inference import gt_box_reid, run_inference
    from personsearch.engine.loading import load_trained_model

    model, _, device = load_trained_model(args.checkpoint, args.device)
    data = load_dataset(args.dataset, args.root)
    embedders = {}
    if args.two_step or args.teacher:
        from personsearch.distill.two_step import teacher_embedder_from_args

        teacher = teacher_embedder_from_args(args, device)
        embedders = {"embed": teacher.embed_detections, "embed_boxes": teacher.embed_boxes}
    progress = not args.no_progress
    arrays = run_inference(
        model, data, device, args.batch_size, args.workers, progress, query_detections=args.cbgm, **embedders
    )
    reid = None
    if gt_reid:
        reid = gt_box_reid(model, data, device, arrays["query_features"], args.workers, progress,
                           embed_boxes=embedders.get("embed_boxes"))  # fmt: skip
    return data, arrays, reid


def run_infer(args: argparse.Namespace) -> int:
    from personsearch.evaluation import make_results, save_results
    from personsearch.outputs import check_output_file

    check_output_file(args.out, "--out")
    _, arrays, _ = _infer(args)
    save_results(args.out, make_results(**arrays))
    print(f"results: {args.out}")
    return 0


def run_test(args: argparse.Namespace) -> int:
    import json

    from personsearch.engine.inference import full_report
    from personsearch.evaluation import make_results, save_results
    from personsearch.outputs import check_output_file, write_text

    check_output_file(args.out, "--out")
    check_output_file(args.json, "--json")
    data, arrays, reid = _infer(args, gt_reid=args.gt_reid)
    results = make_results(**arrays)
    if args.out:
        save_results(args.out, results)
        print(f"results: {args.out}")
    report, table = full_report(data, results, det_thresh=args.det_thresh, cbgm=args.cbgm)
    print(table)
    if reid is not None:
        report["gt_box_reid"] = reid
        print(
            f"Re-ID alone on ground-truth boxes (no detector, {reid['queries']} queries): "
            f"mAP {100 * reid['mAP']:.2f}%  top-1 {100 * reid['top1']:.2f}%"
        )
    if args.json:
        write_text(args.json, json.dumps(report, indent=2), "JSON file")
    return 0
