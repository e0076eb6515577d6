"""``personsearch index build / update / info``: a persistent gallery index over your own images and videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personsearch.argtypes import positive_float, positive_int, probability
from personsearch.commandline import (
    add_backend_option,
    add_checkpoint_option,
    add_command,
    add_device_option,
    add_no_progress_option,
    options_from_args,
)

if TYPE_CHECKING:
    from personsearch.footage.indexing import BuildJob

INDEX_TYPES = ("flat", "hnsw", "ivfpq", "auto")


DESCRIPTION = """A persistent gallery index: every person in folders, globs, list files and videos, detected and
embedded by a trained model (metadata in SQLite, vectors searched with faiss). Sharded builds: torchrun
--nproc_per_node N -m personsearch.cli index build ..."""

BUILD_DESCRIPTION = """Detect and embed every person in SOURCES into the index folder --out. A source is a folder
(recursive: .jpg .jpeg .png .bmp .webp images and videos), a glob, a list file (.txt, one path per line, relative
to it) or a video (sampled at --fps). Re-running adds only new or changed files and removes the ones gone; a
killed build resumes where it stopped."""

UPDATE_DESCRIPTION = """Re-scan the index's recorded sources (or SOURCES, which then replace them; --add appends)
with its recorded checkpoint: new and changed files are indexed, files gone are removed."""


def _build_options(p: argparse.ArgumentParser, update: bool) -> None:
    """The options of build and update: sampling, model, search index, output (an update's sampling and
    search defaults are the ones recorded in the index)."""
    recorded = " (default: the one recorded in the index)" if update else ""
    p.add_argument(
        "--fps",
        type=positive_float,
        default=None if update else 1.0,
        help="video frames sampled per second" + (recorded or " (default 1)"),
    )
    p.add_argument(
        "--det-thresh",
        type=probability,
        default=None if update else 0.5,
        help="keep detections scoring at least this, in [0, 1]" + (recorded or " (default 0.5)"),
    )
    p.add_argument("--batch-size", type=positive_int, default=4, help="images per forward pass (default 4)")
    add_device_option(p, "default auto; torchrun: per rank")
    add_backend_option(p)
    p.add_argument(
        "--index-type",
        choices=INDEX_TYPES,
        default=None,
        help="search index: flat (exact inner product), hnsw, ivfpq (approximate), auto (flat below 200k "
        "detections, hnsw above)" + (recorded or " (default auto)"),
    )
    p.add_argument("--ef-search", type=positive_int, help="HNSW: candidates explored per query (recorded; default 128)")
    p.add_argument(
        "--nprobe", type=positive_int, help="IVF-PQ: inverted lists visited per query (recorded; default 64)"
    )
    add_no_progress_option(p, "no progress bar")
    p.add_argument("--json", type=Path, metavar="SUMMARY.json", help="also write the summary as JSON")


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = "build, update and describe a gallery index of your own images and videos"
    top = subparsers.add_parser("index", help=summary, description=DESCRIPTION)
    top.set_defaults(handler=lambda args: _no_verb(top))
    verbs = top.add_subparsers(dest="index_command", metavar="VERB")
    _add_build(verbs)
    _add_update(verbs)
    info = add_command(
        verbs, "info", run_info, help="what an index holds", description="Counts, sources, model, search options."
    )
    info.add_argument("--index", type=Path, required=True, metavar="INDEX", help="index folder")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_build(verbs: argparse._SubParsersAction) -> None:
    summary = "index sources (or bring an existing index up to date)"
    build = add_command(verbs, "build", run_build, help=summary, description=BUILD_DESCRIPTION)
    build.add_argument("sources", nargs="+", metavar="SOURCE", help="folders, globs, list files (.txt), videos")
    add_checkpoint_option(build, required=True)
    build.add_argument("--out", type=Path, required=True, metavar="INDEX", help="index folder to create or update")
    _build_options(build, update=False)


def _add_update(verbs: argparse._SubParsersAction) -> None:
    summary = "bring an index up to date with its sources"
    update = add_command(verbs, "update", run_update, help=summary, description=UPDATE_DESCRIPTION)
    update.add_argument("sources", nargs="*", metavar="SOURCE", help="replace the recorded sources")
    update.add_argument("--index", type=Path, required=True, metavar="INDEX", help="index folder")
    update.add_argument("--add", nargs="+", default=[], metavar="SOURCE", help="sources to add to the recorded ones")
    add_checkpoint_option(update, "the model (default: the checkpoint recorded in the index)")
    _build_options(update, update=True)


def _no_verb(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _build(args: argparse.Namespace, job: BuildJob) -> int:
    from personsearch.footage.indexing import BuildOptions, run_build_job
    from personsearch.outputs import check_output_file, write_text

    check_output_file(args.json, "--json")
    options = options_from_args(BuildOptions, args, progress=not args.no_progress)
    summary = run_build_job(job, options)
    if summary.get("rank", 0) != 0:
        return 0
    print(format_summary(summary))
    if args.json:
        write_text(args.json, json.dumps(summary, indent=2) + "\n", "JSON file")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from personsearch.footage.indexing import BuildJob

    job = BuildJob(args.out, [str(s) for s in args.sources], args.checkpoint, args.fps, args.det_thresh)
    return _build(args, job)


def run_update(args: argparse.Namespace) -> int:
    from personsearch.footage.indexing import update_job

    job = update_job(args.index, args.sources, args.add, args.checkpoint, args.fps, args.det_thresh)
    return _build(args, job)


def run_info(args: argparse.Namespace) -> int:
    from personsearch.footage.store import read_info

    info = read_info(args.index)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info))
    return 0


# ------------------------------------------------------------------------------------------------ printing
def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _skipped_lines(skipped: list[dict[str, str]], limit: int = 20) -> list[str]:
    lines = [f"  {row['path']}: {row['reason']}" for row in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more (see --json)")
    return lines


def format_info(info: dict[str, Any]) -> str:
    params = info["search_params"]
    kind = info["index_type"]
    effective = info["index_type_effective"]
    search = kind if kind == effective else f"{kind} -> {effective}"
    if effective == "hnsw":
        search += f" (M {params['hnsw_m']}, ef_search {params['ef_search']})"
    elif effective == "ivfpq":
        search += f" (nprobe {params['nprobe']}, refine x{params['refine']})"
    checkpoint = f" (checkpoint {info['checkpoint']})" if info.get("checkpoint") else ""
    rows = [
        ("index", info["path"]),
        ("images", f"{info['images']} still images, {info['videos']} videos ({info['frames']} frames)"),
        ("detections", str(info["detections"])),
        ("sources", f"{len(info['sources'])}: " + ", ".join(info["sources"])),
        ("model", f"{info['model_id'][:12]}{checkpoint}"),
        ("embedding size", str(info["embedding_dim"])),
        ("det. threshold", "-" if info.get("det_thresh") is None else f"{info['det_thresh']:g}"),
        ("video fps", "-" if info.get("fps") is None else f"{info['fps']:g}"),
        ("index type", search),
        ("size on disk", _size(info["size_on_disk"])),
        ("updated", str(info.get("updated"))),
        ("skipped files", str(info["skipped_count"])),
    ]
    if info["incomplete"] or info["pending_shards"]:
        rows.append(
            ("unfinished", f"{len(info['incomplete'])} videos part-way, {info['pending_shards']} shards (run update)")
        )
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines + _skipped_lines(info["skipped"]))


def format_summary(s: dict[str, Any]) -> str:
    info = s["info"]
    added = s["images_added"] + s["frames_added"]
    lines = [
        f"indexed {s['files_new']} new, {s['files_changed']} changed, {s['files_resumed']} resumed files: "
        f"{s['images_added']} images and {s['frames_added']} video frames, {s['detections_added']} detections "
        f"in {s['seconds']:.1f} s ({s['images_per_second']:.2f} images/s)"
        if added or s["files_new"] or s["files_changed"] or s["files_resumed"]
        else "nothing new to index",
        f"removed {s['files_removed']} files gone from the sources; {s['files_unchanged']} unchanged",
    ]
    if s["skipped_count"]:
        lines.append(f"skipped {s['skipped_count']} files:")
        lines += _skipped_lines(s["skipped"])
    lines.append(
        f"index {s['index']}: {info['images']} images, {info['frames']} video frames, {info['detections']} "
        f"detections, {info['index_type_effective']} search, {_size(info['size_on_disk'])}"
    )
    return "\n".join(lines)
