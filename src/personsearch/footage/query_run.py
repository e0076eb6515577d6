"""``personsearch query`` without the argument parsing: check the query and the outputs, load the model
that built the index, rank (:func:`~personsearch.footage.query.search_index`), print the hits and write the
JSON file, HTML report and contact sheet asked for; or, with ``--pick list``, number the people detected in
the query image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from personsearch.errors import PersonSearchError
from personsearch.footage.images import check_box, format_box, to_rgb
from personsearch.footage.query import (
    QueryResult,
    format_hits,
    format_people,
    hit_dict,
    people,
    resolve_checkpoint,
    search_index,
)

if TYPE_CHECKING:
    from personsearch.footage.detections import Detections
    from personsearch.footage.store import GalleryIndex


def _default_people_picture(image: Path, report: Path | None) -> Path:
    name = f"{image.stem}.people.png"
    return (report.parent if report is not None else Path.cwd()) / name


def _query_image(image: Path | None, box: object, pick: object, crop: Path | None) -> Path:
    """The query image of exactly one of ``box``/``pick`` (with ``image``) or ``crop``."""
    modes = [m for m, v in (("--box", box), ("--pick", pick), ("--crop", crop)) if v is not None]
    if len(modes) != 1:
        raise PersonSearchError(
            "give one query: --image IMG --box x1,y1,x2,y2, --image IMG --pick [N], or --crop PERSON.jpg"
        )
    if crop is not None and image is not None:
        raise PersonSearchError("--crop is the whole query image; do not combine it with --image")
    if crop is None and image is None:
        raise PersonSearchError(f"{modes[0]} needs --image (the query image)")
    return Path(crop if crop is not None else image)  # type: ignore[arg-type]


def _check_outputs(
    query_path: Path, json_out: Path | None, report: Path | None, sheet: Path | None, listing: bool
) -> Path | None:
    """Check every output file can be written; with ``listing``, also the people picture, returned."""
    from personsearch.outputs import check_output_file

    for path, option in ((json_out, "--json"), (report, "--report"), (sheet, "--sheet")):
        check_output_file(path, option)
    if not listing:
        return None
    picture = sheet or _default_people_picture(query_path, report)
    check_output_file(picture, "--sheet")
    return picture


def index_det_thresh(index: GalleryIndex, det_thresh: float | None) -> float:
    """``det_thresh``, else the threshold the index was built with, else 0.5."""
    if det_thresh is not None:
        return det_thresh
    recorded = index.info().get("det_thresh")
    return 0.5 if recorded is None else float(recorded)


def picked_box(found: Detections, number: int, query_path: Path, det_thresh: float) -> list[float]:
    """The box of person ``number`` (from 1, best score first) of the detections ``found`` in the query."""
    if len(found) == 0:
        raise PersonSearchError(
            f"--pick: no person detected in {query_path} (score >= {det_thresh:g}); give --box, or a lower --det-thresh"
        )
    if not 1 <= number <= len(found):
        raise PersonSearchError(
            f"--pick {number}: {query_path} has {len(found)} detected "
            f"{'person' if len(found) == 1 else 'people'}, numbered 1 to {len(found)} (see --pick list)"
        )
    return [float(v) for v in found.boxes[number - 1]]


def run_query(
    index_path: Path,
    *,
    image: Path | None = None,
    box: Sequence[float] | None = None,
    pick: str | int | None = None,
    crop: Path | None = None,
    checkpoint: str | None = None,
    device: str = "auto",
    backend: str = "torch",
    det_thresh: float | None = None,
    top_k: int = 20,
    sources: Sequence[str] | None = None,
    time_range: tuple[float, float] | None = None,
    exclude_query_image: bool | None = None,
    json_out: Path | None = None,
    report: Path | None = None,
    sheet: Path | None = None,
) -> int:
    """``personsearch query``: exactly one of ``box`` (with ``image``), ``pick`` (with ``image``; ``"list"``
    or a number from 1) or ``crop``. Every check that does not need the model runs before it loads."""
    from personsearch.footage.searcher import Searcher
    from personsearch.footage.store import GalleryIndex

    query_path = _query_image(image, box, pick, crop)
    listing = pick == "list"
    people_picture = _check_outputs(query_path, json_out, report, sheet, listing)
    array = to_rgb(query_path)  # an unreadable query image is a one-line error naming it
    height, width = array.shape[:2]
    if box is not None:
        box = check_box(box, query_path, (width, height), "--box")
    with GalleryIndex.open(index_path) as index:
        checkpoint = resolve_checkpoint(index, index_path, checkpoint)
        det_thresh = index_det_thresh(index, det_thresh)
        searcher = Searcher.from_checkpoint(checkpoint, device, det_thresh=det_thresh, backend=backend)
        if pick is not None:
            found = people(searcher, array)
            if listing:
                return _list_people(found, array, query_path, people_picture, json_out)  # type: ignore[arg-type]
            box = picked_box(found, int(pick), query_path, det_thresh)
        result = search_index(
            searcher,
            index,
            query_path,
            box,
            top_k,
            sources=sources,
            time_range=time_range,
            exclude_query_image=exclude_query_image,
            index_name=index_path,
        )
        mode = "crop" if crop is not None else ("pick" if pick is not None else "box")
        _print_result(result, query_path, mode, index_path)
        _write_result(result, index, index_path, query_path, mode, json_out, report, sheet)
    return 0


def _print_result(result: QueryResult, query_path: Path, mode: str, index_path: Path) -> None:
    what = f"{query_path} box {format_box([round(v, 1) for v in result.box])}"
    print(f"query: {what} ({mode}); top {len(result.hits)} of index {index_path}")
    if result.excluded:
        print("(hits from the query image itself left out; --include-query-image keeps them)")
    print(format_hits(result.hits) if result.hits else "no hits")


def _write_result(
    result: QueryResult,
    index: GalleryIndex,
    index_path: Path,
    query_path: Path,
    mode: str,
    json_out: Path | None,
    report: Path | None,
    sheet: Path | None,
) -> None:
    """The JSON file, HTML report and contact sheet asked for (each announced as it is written)."""
    from personsearch.footage.report import write_contact_sheet, write_html_report
    from personsearch.outputs import write_text

    if json_out is not None:
        payload = {
            "index": str(index_path),
            "model_id": index.model_id,
            "query": {"image": str(query_path), "box": result.box, "mode": mode},
            "hits": [hit_dict(h) for h in result.hits],
        }
        write_text(json_out, json.dumps(payload, indent=2) + "\n", "JSON file")
        print(f"JSON: {json_out}")
    title = f"{query_path.name}: top {len(result.hits)}"
    if report is not None:
        write_html_report(report, result.image, result.box, result.hits, index.read_image, title=title,
                          query_name=str(query_path))  # fmt: skip
        print(f"report: {report}")
    if sheet is not None:
        write_contact_sheet(sheet, result.image, result.box, result.hits, index.read_image, title=title)
        print(f"contact sheet: {sheet}")


def _list_people(found: Detections, array: np.ndarray, query_path: Path, picture: Path, json_out: Path | None) -> int:
    from personsearch.footage.report import write_people_picture
    from personsearch.outputs import write_text

    print(f"{query_path}: {format_people(found)}")
    write_people_picture(picture, array, found.boxes, found.scores)
    print(f"picture: {picture}")
    if len(found):
        print(f"query one of them with --pick N (1 to {len(found)})")
    if json_out is not None:
        rows = [
            {"number": n, "box": [float(v) for v in b], "score": float(s)}
            for n, (b, s) in enumerate(zip(found.boxes, found.scores, strict=True), start=1)
        ]
        write_text(json_out, json.dumps({"image": str(query_path), "people": rows}, indent=2) + "\n", "JSON file")
        print(f"JSON: {json_out}")
    return 0
