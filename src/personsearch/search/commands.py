"""``personsearch search`` (rank and draw one query) and ``personsearch demo-report`` (trained vs random)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from personsearch.argtypes import box_xyxy, gallery_size, non_negative_int, positive_int, probability, seed
from personsearch.commandline import add_checkpoint_option, add_command, add_dataset_options, add_device_option

if TYPE_CHECKING:
    import numpy as np

    from personsearch.search.index import Hit

SEARCH_DESCRIPTION = """Rank the gallery detections of a results file for one query (cosine similarity) and draw
the query and its top hits into a PNG: green = the query person (IoU >= 0.5 with the annotated box), red =
someone else. The query is the dataset's query N, or an arbitrary box (--image/--box) embedded by the model of
--checkpoint."""

DEMO_DESCRIPTION = """Evaluate a results file at every standard setting next to the same detections with random
unit-norm features (fixed seed), print both side by side, and draw one query's top hits."""


def check_box(box: list[float], image: Path, size: tuple[int, int]) -> list[float]:
    """``box`` clipped to the image (``size`` = width, height); a PersonSearchError naming the box and the
    image size when it has a NaN or infinite coordinate, no positive width and height, or nothing left
    inside the image (:func:`personsearch.footage.images.check_box`)."""
    from personsearch.footage.images import check_box as check

    return check(box, image, size, "--box")


def _common(p: argparse.ArgumentParser) -> None:
    """The dataset, the gallery searched, how many hits and the picture: the options of both commands."""
    add_dataset_options(p)
    p.add_argument(
        "--det-thresh", type=probability, default=0.5, help="ignore detections scoring below, in [0, 1] (default 0.5)"
    )
    p.add_argument("--top", type=positive_int, default=10, help="hits to show (default 10)")
    p.add_argument(
        "--gallery-size",
        type=gallery_size,
        default=-1,
        help="CUHK-SYSU: search the query's TestG{N} gallery; -1 (default): the whole gallery",
    )
    p.add_argument("--cross-camera", action="store_true", help="PRW: leave out the query camera's frames")
    p.add_argument("--out", type=Path, required=True, metavar="VIS.png", help="picture to write")


def _add_query_option(p: argparse.ArgumentParser, automatic: bool) -> None:
    """``--query N``: the dataset's query to rank; ``automatic``: -1 (the default) picks one."""
    if automatic:
        text = "query to draw; -1 (default): the first query whose top-1 hit is correct, else 0"
        p.add_argument("--query", type=_query_or_auto, default=-1, help=text)
    else:
        p.add_argument(
            "--query", type=non_negative_int, default=0, help="query index in the dataset's query order (default 0)"
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = "rank one query over the gallery and draw its top hits"
    p = add_command(subparsers, "search", run_search, help=summary, description=SEARCH_DESCRIPTION)
    _common(p)
    add_checkpoint_option(p, "trained model (needed for --image/--box, or without --results)")
    p.add_argument(
        "--results",
        type=Path,
        metavar="R.npz",
        help="results file of the model (personsearch infer); without it, inference runs first",
    )
    _add_query_option(p, automatic=False)
    p.add_argument("--image", type=Path, help="an arbitrary query image (with --box)")
    p.add_argument(
        "--box", type=box_xyxy, metavar="x1,y1,x2,y2", help="the query box in --image (pixels; clipped to the image)"
    )
    add_device_option(p, "for the model; default auto")
    p.add_argument("--json", type=Path, metavar="HITS.json", help="also write the ranked hits as JSON")

    summary = "a results file's metrics next to random embeddings, and one drawn query"
    d = add_command(subparsers, "demo-report", run_demo_report, help=summary, description=DEMO_DESCRIPTION)
    _common(d)
    d.add_argument("--results", type=Path, required=True, metavar="R.npz", help="results file (personsearch infer)")
    d.add_argument("--seed", type=seed, default=0, help="seed of the random embeddings (default 0)")
    _add_query_option(d, automatic=True)
    d.add_argument("--json", type=Path, metavar="REPORT.json", help="write both columns as JSON")


def _query_or_auto(text: str) -> int:
    if text.strip() == "-1":
        return -1
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a query index >= 0 or -1 (automatic), got {text!r}") from None


def _check_outputs(args: argparse.Namespace) -> None:
    from personsearch.outputs import check_output_file

    check_output_file(args.out, "--out")
    check_output_file(args.json, "--json")


def _write_json(path: Path, payload: dict) -> None:
    from personsearch.outputs import write_text

    write_text(path, json.dumps(payload, indent=2) + "\n", "JSON file")


def _embed_box(args: argparse.Namespace, box: list[float]) -> np.ndarray:
    """The model's query embedding of ``box`` in ``--image`` (:meth:`personsearch.Searcher.embed`)."""
    from personsearch.errors import PersonSearchError
    from personsearch.footage.searcher import Searcher

    if not args.checkpoint:
        raise PersonSearchError("--image/--box needs --checkpoint (the model that embeds the box)")
    return Searcher.from_checkpoint(args.checkpoint, args.device).embed(args.image, [box])[0]


def _print_hits(hits: list[Hit]) -> None:
    for h in hits:
        mark = {True: "correct", False: "wrong", None: "?"}[h.correct]
        box = ",".join(f"{v:.0f}" for v in h.box)
        print(f"  #{h.rank:<3} sim {h.similarity:7.4f}  score {h.score:.3f}  {h.name:<16} [{box}]  {mark}")


def run_search(args: argparse.Namespace) -> int:
    from personsearch.data import load_dataset
    from personsearch.errors import PersonSearchError
    from personsearch.search import ranking
    from personsearch.search.index import GalleryIndex

    if (args.image is None) != (args.box is None):
        raise PersonSearchError("--image and --box go together")
    box = None
    if args.image is not None:
        from personsearch.data.images import read_image_size

        box = check_box(args.box, args.image, read_image_size(args.image))
    _check_outputs(args)
    data = load_dataset(args.dataset, args.root)
    results = ranking.dataset_results(data, args.results, args.checkpoint, args.device)
    index = GalleryIndex.from_results(results, data, args.det_thresh)
    if box is not None:
        found = ranking.rank_image_box(index, _embed_box(args, box), args.image, box, args.top)
    else:
        found = ranking.rank_dataset_query(index, args.query, args.top, args.gallery_size, args.cross_camera)
    whole = box is not None or args.gallery_size in (None, -1)
    where = "whole gallery" if whole else f"TestG{args.gallery_size}"
    title = f"{found.what}: top {len(found.hits)} in the {where} ({len(index)} detections >= {args.det_thresh} in all)"
    ranking.draw_ranking(found, data, args.out, title)
    print(title)
    _print_hits(found.hits)
    print(f"picture: {args.out}")
    if args.json:
        _write_json(args.json, {"query": found.what, "hits": [h.as_dict() for h in found.hits]})
    return 0


def run_demo_report(args: argparse.Namespace) -> int:
    from personsearch.data import load_dataset
    from personsearch.evaluation import load_results
    from personsearch.search import ranking
    from personsearch.search.compare import compare_with_random, format_comparison
    from personsearch.search.index import GalleryIndex

    _check_outputs(args)
    data = load_dataset(args.dataset, args.root)
    results = load_results(args.results, data)
    report = compare_with_random(data, results, args.det_thresh, args.seed)
    print(format_comparison(report))
    if args.json:
        _write_json(args.json, report)
    index = GalleryIndex.from_results(results, data, args.det_thresh)
    query = args.query if args.query >= 0 else ranking.first_correct_query(index, args.gallery_size, args.cross_camera)
    found = ranking.rank_dataset_query(index, query, args.top, args.gallery_size, args.cross_camera)
    where = "whole gallery" if args.gallery_size in (None, -1) else f"TestG{args.gallery_size} gallery"
    title = f"{found.what}: top {len(found.hits)} in its {where}"
    ranking.draw_ranking(found, data, args.out, title)
    print()
    print(title + " (green = the query person, red = someone else)")
    _print_hits(found.hits)
    print(f"picture: {args.out}")
    return 0
