"""Dataset sub-commands: ``synth`` (write a synthetic dataset) and ``dataset-stats``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from personsearch.argtypes import seed
from personsearch.commandline import add_command, add_dataset_options
from personsearch.data import DATASETS

SYNTH_DESCRIPTION = """Generate a synthetic person-search dataset in exactly the on-disk format of CUHK-SYSU or
PRW, so the real-data loaders, training and evaluation run on it unchanged. Deterministic for a seed."""


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = "write a synthetic person-search dataset in the real CUHK-SYSU or PRW on-disk format"
    synth = add_command(subparsers, "synth", run_synth, help=summary, description=SYNTH_DESCRIPTION)
    synth.add_argument("--format", required=True, choices=DATASETS, help="on-disk format to write")
    synth.add_argument("--out", required=True, type=Path, help="output folder (the dataset root)")
    synth.add_argument(
        "--preset",
        default="tiny",
        choices=("tiny", "small", "medium"),
        help="size: tiny (tests, seconds), small (CPU demo, < 1 min), medium (default: %(default)s)",
    )
    synth.add_argument("--seed", type=seed, default=0, help="random seed (default: %(default)s)")
    synth.add_argument("--preview", type=Path, metavar="FILE.png", help="also draw a contact sheet")

    summary = "print the statistics of a CUHK-SYSU or PRW dataset folder"
    description = "Load a dataset as training and evaluation will, and print its split statistics."
    stats = add_command(subparsers, "dataset-stats", run_dataset_stats, help=summary, description=description)
    add_dataset_options(stats)
    stats.add_argument(
        "--json",
        action="store_true",
        help='print JSON: {"train": {images, boxes, labeled_boxes, identities}, "gallery": {...}, '
        '"query": {count, images}}',
    )


def _print_statistics(dataset: str, root: Path, as_json: bool) -> None:
    from personsearch.data import load_dataset
    from personsearch.data.stats import dataset_statistics, format_statistics

    data = load_dataset(dataset, root)  # its warnings (data.warnings) are shown as DatasetWarnings
    stats = dataset_statistics(data)
    print(json.dumps(stats, indent=2) if as_json else format_statistics(data, stats))


def run_synth(args: argparse.Namespace) -> int:
    from personsearch.data.synthetic import generate_dataset, write_preview

    start = time.perf_counter()
    generate_dataset(args.format, args.out, preset=args.preset, seed=args.seed)
    print(
        f"wrote {args.format} dataset ({args.preset}, seed {args.seed}) to {args.out} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    _print_statistics(args.format, args.out, as_json=False)
    if args.preview:
        path = write_preview(args.out, args.format, args.preview, seed=args.seed)
        print(f"preview: {path}")
    return 0


def run_dataset_stats(args: argparse.Namespace) -> int:
    _print_statistics(args.dataset, args.root, args.json)
    return 0
