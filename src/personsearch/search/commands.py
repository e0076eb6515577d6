"""``personsearch search`` (rank and draw one query) and ``personsearch demo-report`` (trained vs random)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from personsearch.argtypes import box_xyxy, gallery_size, non_negative_int, positive_int, probability, seed
from personsearch.argtypes import device as device_name
from personsearch.data import DATASETS


def check_box(box: list[float], image: Path, size: tuple[int, int]) -> list[float]:
    """``box`` clipped to the image (``size`` = width, height); a PersonSearchError naming the box and the
    image size when it has a NaN or infinite coordinate, no positive width and height, or nothing left
    inside the image (:func:`personsearch.footage.images.check_box`)."""
    from personsearch.footage.images import check_box as check

    return check(box, image, size, "--box")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=DATASETS, help="dataset format")
    p.add_argument("--root", required=True, type=Path, help="dataset root folder")
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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="rank one query over the gallery and draw its top hits",
        description="Rank the gallery detections of a results file for one query (cosine similarity) and "
        "draw the query and its top hits into a PNG: green = the query person (IoU >= 0.5 with the "
        "annotated box), red = someone else. The query is the dataset's query N, or an arbitrary box "
        "(--image/--box) embedded by the model of --checkpoint.",
    )
    _common(p)
    p.add_argument("--checkpoint", type=Path, help="trained model (needed for --image/--box, or without --results)")
    p.add_argument(
        "--results",
        type=Path,
        metavar="R.npz",
        help="results file of the model (personsearch infer); without it, inference runs first",
    )
    p.add_argument(
        "--query", type=non_negative_int, default=0, help="query index in the dataset's query order (default 0)"
    )
    p.add_argument("--image", type=Path, help="an arbitrary query image (with --box)")
    p.add_argument(
        "--box", type=box_xyxy, metavar="x1,y1,x2,y2", help="the query box in --image (pixels; clipped to the image)"
    )
    p.add_argument(
        "--device", type=device_name, default="auto", help="auto | cpu | cuda | cuda:N (for the model; default auto)"
    )
    p.add_argument("--json", type=Path, metavar="HITS.json", help="also write the ranked hits as JSON")
    p.set_defaults(handler=run_search)

    d = subparsers.add_parser(
        "demo-report",
        help="a results file's metrics next to random embeddings, and one drawn query",
        description="Evaluate a results file at every standard setting next to the same detections with "
        "random unit-norm features (fixed seed), print both side by side, and draw one query's top hits.",
    )
    _common(d)
    d.add_argument("--results", type=Path, required=True, metavar="R.npz", help="results file (personsearch infer)")
    d.add_argument("--seed", type=seed, default=0, help="seed of the random embeddings (default 0)")
    d.add_argument(
        "--query",
        type=_query_or_auto,
        default=-1,
        help="query to draw; -1 (default): the first query whose top-1 hit is correct, else 0",
    )
    d.add_argument("--json", type=Path, metavar="REPORT.json", help="write both columns as JSON")
    d.set_defaults(handler=run_demo_report)


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


def _draw(render, qpath, qbox, hits, gallery_paths, out: Path, title: str) -> None:
    """``render_ranking``; a failed write of the picture (a full disk) is one line naming it."""
    from personsearch.errors import PersonSearchError

    try:
        render(qpath, qbox, hits, gallery_paths, out, title=title)
    except OSError as exc:
        raise PersonSearchError(f"cannot write picture {out} ({exc.strerror or exc})") from None


def _load(args: argparse.Namespace):
    from personsearch.data import load_dataset

    return load_dataset(args.dataset, args.root)


def _results(args: argparse.Namespace, data):
    from personsearch.errors import PersonSearchError
    from personsearch.evaluation import load_results, make_results

    if args.results:
        return load_results(args.results, data)
    if not args.checkpoint:
        raise PersonSearchError("give --results (a results file) or --checkpoint (to run inference first)")
    from personsearch.engine.inference import run_inference
    from personsearch.engine.loading import load_trained_model

    model, _, device = load_trained_model(args.checkpoint, args.device)
    return make_results(**run_inference(model, data, device, progress=True))


def _embed_box(args: argparse.Namespace, expected_dim: int):
    """The model's query embedding of ``--box`` in ``--image`` (:meth:`personsearch.Searcher.embed`)."""
    from personsearch.errors import PersonSearchError
    from personsearch.footage.searcher import Searcher

    if not args.checkpoint:
        raise PersonSearchError("--image/--box needs --checkpoint (the model that embeds the box)")
    feature = Searcher.from_checkpoint(args.checkpoint, args.device).embed(args.image, [args.box])[0]
    if feature.shape[0] != expected_dim:
        raise PersonSearchError(
            f"the model's embedding has {feature.shape[0]} dimensions but the results' "
            f"{expected_dim}: use the results file of the same model"
        )
    return feature


def _print_hits(hits) -> None:
    for h in hits:
        mark = {True: "correct", False: "wrong", None: "?"}[h.correct]
        box = ",".join(f"{v:.0f}" for v in h.box)
        print(f"  #{h.rank:<3} sim {h.similarity:7.4f}  score {h.score:.3f}  {h.name:<16} [{box}]  {mark}")


def run_search(args: argparse.Namespace) -> int:
    import numpy as np

    from personsearch.errors import PersonSearchError
    from personsearch.search.draw import render_ranking
    from personsearch.search.index import GalleryIndex, identify_box, mark_correct

    if (args.image is None) != (args.box is None):
        raise PersonSearchError("--image and --box go together")
    if args.image is not None:
        from personsearch.data.images import read_image_size

        args.box = check_box(args.box, args.image, read_image_size(args.image))
    _check_outputs(args)
    data = _load(args)
    index = GalleryIndex.from_results(_results(args, data), data, args.det_thresh)
    if args.image is not None:
        feature = _embed_box(args, index.query_features.shape[1])
        pid = identify_box(data, args.image.name, np.asarray(args.box))
        images = np.asarray([i for i, r in enumerate(data.gallery) if r.name != args.image.name], dtype=np.int64)
        hits = mark_correct(index.rank(feature, args.top, images), data, pid)
        qpath, qbox, what = args.image, args.box, f"{args.image.name} box {args.box}"
    else:
        hits = index.search(args.query, args.top, args.gallery_size, args.cross_camera)
        q = data.queries[args.query]
        qpath, qbox, what = q.path, q.box, f"query {args.query} ({q.name}, identity {q.pid})"
    whole = args.image is not None or args.gallery_size in (None, -1)
    where = "whole gallery" if whole else f"TestG{args.gallery_size}"
    title = f"{what}: top {len(hits)} in the {where} ({len(index)} detections >= {args.det_thresh} in all)"
    _draw(render_ranking, qpath, qbox, hits, [r.path for r in data.gallery], args.out, title)
    print(title)
    _print_hits(hits)
    print(f"picture: {args.out}")
    if args.json:
        from personsearch.outputs import write_text

        payload = {"query": what, "hits": [h.as_dict() for h in hits]}
        write_text(args.json, json.dumps(payload, indent=2) + "\n", "JSON file")
    return 0


def _pick_query(index, args: argparse.Namespace) -> int:
    if args.query >= 0:
        return args.query
    for q in range(len(index.data.queries)):
        hits = index.search(q, 1, args.gallery_size, args.cross_camera)
        if hits and hits[0].correct:
            return q
    return 0


def run_demo_report(args: argparse.Namespace) -> int:
    from personsearch.evaluation import load_results
    from personsearch.outputs import write_text
    from personsearch.search.compare import compare_with_random, format_comparison
    from personsearch.search.draw import render_ranking
    from personsearch.search.index import GalleryIndex

    _check_outputs(args)
    data = _load(args)
    results = load_results(args.results, data)
    report = compare_with_random(data, results, args.det_thresh, args.seed)
    print(format_comparison(report))
    if args.json:
        write_text(args.json, json.dumps(report, indent=2) + "\n", "JSON file")
    index = GalleryIndex.from_results(results, data, args.det_thresh)
    query = _pick_query(index, args)
    hits = index.search(query, args.top, args.gallery_size, args.cross_camera)
    q = data.queries[query]
    where = "whole gallery" if args.gallery_size in (None, -1) else f"TestG{args.gallery_size} gallery"
    title = f"query {query} ({q.name}, identity {q.pid}): top {len(hits)} in its {where}"
    _draw(render_ranking, q.path, q.box, hits, [r.path for r in data.gallery], args.out, title)
    print()
    print(title + " (green = the query person, red = someone else)")
    _print_hits(hits)
    print(f"picture: {args.out}")
    return 0
