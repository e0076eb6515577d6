"""``personsearch query``: find one person in a gallery index (:mod:`personsearch.footage.query`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from personsearch.argtypes import box_xyxy, positive_int, probability
from personsearch.commandline import (
    add_backend_option,
    add_checkpoint_option,
    add_command,
    add_device_option,
    add_index_option,
)


def _pick(text: str) -> str | int:
    if text.strip().lower() == "list":
        return "list"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'list' or a person number >= 1, got {text!r}") from None


def _time_range(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or not 0 <= values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected START,END in seconds with 0 <= START <= END, got {text!r}")
    return values[0], values[1]


DESCRIPTION = """Rank every person of a gallery index by similarity to one query person: a box in an image
(--image IMG --box x1,y1,x2,y2), one of the people detected in an image (--image IMG --pick N; --pick alone lists
and numbers them on a picture), or a picture of just the person (--crop PERSON.jpg). Prints rank, image path,
video timestamp, box, detection score and similarity; optionally writes them as JSON, a self-contained HTML
report and a PNG contact sheet."""


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = "find one person in a gallery index (personsearch index build)"
    p = add_command(subparsers, "query", run_query, help=summary, description=DESCRIPTION)
    add_index_option(p)
    _add_query_person(p)
    add_checkpoint_option(
        p,
        "trained model (default: the one the index was built with; it must be the same model)",
        metavar="C",
        as_path=False,
    )
    add_device_option(p)
    add_backend_option(p)
    p.add_argument(
        "--det-thresh",
        type=probability,
        help="--pick: lowest detection score in [0, 1] (default: the index's, else 0.5)",
    )
    _add_filters(p)
    p.add_argument("--json", type=Path, metavar="OUT.json", help="write the hits as JSON")
    p.add_argument("--report", type=Path, metavar="OUT.html", help="write a self-contained HTML report")
    p.add_argument("--sheet", type=Path, metavar="OUT.png", help="write a PNG contact sheet (--pick list: the people)")


def _add_query_person(p: argparse.ArgumentParser) -> None:
    """``--image`` and one of ``--box``, ``--pick`` or ``--crop``: who to look for."""
    p.add_argument("--image", type=Path, metavar="IMG", help="the query image (with --box or --pick)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--box", type=box_xyxy, metavar="x1,y1,x2,y2", help="the query person in --image (pixels)")
    mode.add_argument(
        "--pick",
        type=_pick,
        nargs="?",
        const="list",
        metavar="N",
        help="detect the people in --image; without N (or 'list') print them numbered from 1 and draw them "
        "(--sheet, default IMG.people.png next to --report or here); with N query person N",
    )
    mode.add_argument("--crop", type=Path, metavar="PERSON.jpg", help="the whole image is the query person")


def _add_filters(p: argparse.ArgumentParser) -> None:
    """How many hits, and from where."""
    p.add_argument("--top-k", type=positive_int, default=20, help="hits to return (default 20)")
    p.add_argument(
        "--source",
        action="append",
        metavar="PATH",
        help="only hits from this indexed source (a folder, video or list file); repeatable",
    )
    p.add_argument(
        "--time-range", type=_time_range, metavar="START,END", help="only video frames from START to END seconds"
    )
    own = p.add_mutually_exclusive_group()
    own.add_argument(
        "--exclude-query-image",
        dest="exclude_query_image",
        action="store_const",
        const=True,
        help="no hits from the query image itself (the default when the index holds it)",
    )
    own.add_argument(
        "--include-query-image",
        dest="exclude_query_image",
        action="store_const",
        const=False,
        help="keep hits from the query image",
    )


def run_query(args: argparse.Namespace) -> int:
    from personsearch.footage.query_run import run_query as run

    return run(
        args.index,
        image=args.image,
        box=args.box,
        pick=args.pick,
        crop=args.crop,
        checkpoint=args.checkpoint,
        device=args.device,
        backend=args.backend,
        det_thresh=args.det_thresh,
        top_k=args.top_k,
        sources=args.source,
        time_range=args.time_range,
        exclude_query_image=args.exclude_query_image,
        json_out=args.json,
        report=args.report,
        sheet=args.sheet,
    )
