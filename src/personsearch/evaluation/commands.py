"""``personsearch evaluate``: metrics of a results file on CUHK-SYSU or PRW (see docs/evaluation.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from personsearch.argtypes import gallery_size, probability


def _gallery_size(text: str) -> int | str:
    if text.lower() in ("all", "sweep"):
        return "all"
    try:
        return gallery_size(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, -1 (full set) or 'all', got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="detection AP/recall and person-search mAP/top-k of a results file",
        description="Evaluate a results file (.npz, see docs/evaluation.md) with the exact CUHK-SYSU or "
        "PRW protocol. Metrics are printed as a table; --json writes them as fractions in [0, 1].",
    )
    p.add_argument("--dataset", required=True, choices=("cuhk-sysu", "prw"))
    p.add_argument("--root", required=True, type=Path, help="dataset folder")
    p.add_argument("--results", required=True, type=Path, help="results file (.npz)")
    p.add_argument(
        "--gallery-size",
        type=_gallery_size,
        default=100,
        help="CUHK-SYSU gallery size: 50, 100, 500, 1000, 2000, 4000, -1 (full set), or 'all' for the "
        "curve over every size present (default 100)",
    )
    p.add_argument("--cross-camera", action="store_true", help="PRW: drop the query camera's frames")
    p.add_argument(
        "--det-thresh",
        type=probability,
        default=0.5,
        help="detections scoring below this are ignored, for search and detection metrics (in [0, 1], default 0.5)",
    )
    p.add_argument("--cbgm", action="store_true", help="re-score with CBGM (needs query_det_* arrays)")
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the metrics as JSON")
    p.add_argument("--per-query", type=Path, metavar="OUT.jsonl", help="write each query's AP and ranked top-10")
    p.set_defaults(handler=run_evaluate)


def _write_json(path: Path, payload: dict) -> None:
    from personsearch.outputs import write_text

    write_text(path, json.dumps(payload, indent=2) + "\n", "JSON file")


def run_evaluate(args: argparse.Namespace) -> int:
    import time

    from personsearch.data import load_dataset
    from personsearch.errors import PersonSearchError
    from personsearch.evaluation.core import evaluate, evaluate_sweep
    from personsearch.evaluation.protocols import protocol_for
    from personsearch.evaluation.report import format_metrics, format_sweep
    from personsearch.evaluation.results import load_results
    from personsearch.outputs import check_output_file, write_text

    check_output_file(args.json, "--json")
    check_output_file(args.per_query, "--per-query")
    start = time.perf_counter()
    data = load_dataset(args.dataset, args.root)
    results = load_results(args.results, data)
    spec = protocol_for(data)
    if args.gallery_size == "all":
        spec.check_sweep()
        if args.per_query:
            raise PersonSearchError("--per-query needs a single gallery size")
        sizes = spec.sweep_sizes(data)
        metrics = evaluate_sweep(data, results, sizes, det_thresh=args.det_thresh, cbgm=args.cbgm)
        metrics["results"] = str(args.results)
        print(format_sweep(metrics))
    else:
        metrics = evaluate(
            data,
            results,
            gallery_size=spec.resolve_gallery_size(args.gallery_size),
            cross_camera=args.cross_camera,
            det_thresh=args.det_thresh,
            cbgm=args.cbgm,
            per_query=args.per_query is not None,
        )
        metrics["results"] = str(args.results)
        details = metrics.pop("per_query", None)
        print(format_metrics(metrics))
        if args.per_query is not None and details is not None:
            lines = "".join(json.dumps(row) + "\n" for row in details)
            write_text(args.per_query, lines, "per-query file")
    metrics["seconds"] = round(time.perf_counter() - start, 3)
    if args.json is not None:
        _write_json(args.json, metrics)
    return 0
