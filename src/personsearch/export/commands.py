"""``personsearch export``: a trained checkpoint as ONNX graphs for onnxruntime (no training code needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from personsearch.argtypes import probability
from personsearch.commandline import add_checkpoint_option, add_command

DEFAULT_OPSET = 17


def _opset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 16:
        raise argparse.ArgumentTypeError(f"expected an ONNX opset >= 16 (RoIAlign needs it), got {text!r}")
    return value


DESCRIPTION = """Write the inference model of --checkpoint into --out: detector.onnx (image -> boxes, scores,
embeddings; resize, RPN, NMS and both heads inside the graph), embedder.onnx (image + boxes -> embeddings) and
model.json (input conventions, thresholds, model_id = SHA-256 of the checkpoint). Use it with --backend
onnxruntime --checkpoint DIR in index build and query."""


def register(subparsers: argparse._SubParsersAction) -> None:
    summary = "export a trained model to ONNX (detector + query-box embedder) for onnxruntime"
    p = add_command(subparsers, "export", run_export, help=summary, description=DESCRIPTION)
    add_checkpoint_option(p, required=True)
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (only onnx)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the model into")
    p.add_argument("--opset", type=_opset, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument(
        "--score-thresh",
        type=probability,
        help="default detection threshold recorded in model.json (default: the model's box_head.score_thresh)",
    )


def run_export(args: argparse.Namespace) -> int:
    from personsearch.export.onnx_export import export_checkpoint

    meta = export_checkpoint(args.checkpoint, args.out, score_thresh=args.score_thresh, opset=args.opset)
    files = [meta["graphs"]["detector"]["file"], meta["graphs"]["embedder"]["file"], "model.json"]
    print(json.dumps({"out": str(args.out), "files": files, "model_id": meta["model_id"], "opset": meta["opset"]}))
    return 0
