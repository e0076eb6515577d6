"""Small hand-written datasets in the real CUHK-SYSU and PRW formats, built literally from the spec (§5).

They are independent of the project's synthetic generator on purpose: each value below is chosen to
exercise one quirk, and the expected loader output is spelled out in the tests.

Also the tests' small shared scaffolding: a tiny model's config (:func:`tiny_config`, :func:`tiny_overrides`)
and two local processes started as torchrun would start them (:func:`run_ranks`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image

from personsearch.config import load_config

EMPTY = np.zeros((1, 0))


def _box(xywh: list[float]) -> np.ndarray:
    """A 1×4 box stored like MATLAB does: uint8 when every value < 256, else uint16."""
    arr = np.array([xywh])
    return arr.astype(np.uint8 if arr.max() < 256 else np.uint16)


def _struct(fields: list[str], rows: list[tuple]) -> np.ndarray:
    out = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, row in enumerate(rows):
        for f, value in zip(fields, row, strict=True):
            out[0, i][f] = value
    return out


def _cell(values: list) -> np.ndarray:
    out = np.empty((len(values), 1), dtype=object)
    for i, v in enumerate(values):
        out[i, 0] = v
    return out


def _jpeg(path: Path, size: tuple[int, int] = (400, 300)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)


# CUHK-SYSU: image -> boxes (x, y, w, h); the w = 0 and h = 0 boxes must be dropped.
CUHK_IMAGES = {
    "s1.jpg": [[10, 20, 30, 60], [300, 40, 50, 100], [100, 100, 20, 40], [5, 5, 0, 10]],
    "s2.jpg": [[12, 22, 30, 60], [50, 50, 40, 80]],
    "s3.jpg": [[60, 60, 40, 80], [0, 0, 10, 0]],
    "s10.jpg": [[10, 10, 40, 90], [100, 10, 40, 90]],
    "s11.jpg": [[20, 20, 40, 90], [200, 30, 40, 90]],
    "s12.jpg": [[30, 30, 40, 90]],
    "s13.jpg": [[40, 40, 40, 90], [240, 40, 40, 90]],  # uint8 storage, x + w = 280 > 255
}
CUHK_POOL = ["s10.jpg", "s11.jpg", "s12.jpg", "s13.jpg"]
CUHK_TRAIN = [  # identity -> scenes
    [("s1.jpg", [10, 20, 30, 60]), ("s2.jpg", [12, 22, 30, 60])],
    [("s2.jpg", [50, 50, 40, 80]), ("s3.jpg", [60, 60, 40, 80]), ("s3.jpg", [1, 1, 1, 1])],  # unmatched
]
CUHK_QUERIES = [  # (query image, query box, gallery entries [(image, box or None)])
    ("s10.jpg", [10, 10, 40, 90], [("s11.jpg", [20, 20, 40, 90]), ("s12.jpg", None), ("s13.jpg", None)]),
    # the query image is in its own gallery with the identical box
    ("s11.jpg", [200, 30, 40, 90], [("s13.jpg", [240, 40, 40, 90]), ("s11.jpg", [200, 30, 40, 90]), ("s10.jpg", None)]),
    # a positive after a negative: the reference loaders stop labelling at the first negative
    ("s12.jpg", [30, 30, 40, 90], [("s13.jpg", None), ("s10.jpg", [100, 10, 40, 90]), ("s11.jpg", None)]),
]


def write_cuhk(root: Path, protocol_sizes: tuple[int, ...] = (50,)) -> Path:
    """Write the hand-made CUHK-SYSU dataset; each ``TestG{N}`` file holds the same 3-entry galleries."""
    (root / "annotation" / "test" / "train_test").mkdir(parents=True, exist_ok=True)
    for name in CUHK_IMAGES:
        _jpeg(root / "Image" / "SSM" / name)
    write_cuhk_images(root, CUHK_IMAGES)
    write_cuhk_pool(root, CUHK_POOL)
    write_cuhk_train(root, CUHK_TRAIN)
    for size in protocol_sizes:
        write_cuhk_protocol(root, CUHK_QUERIES, size)
    return root


# PRW: frame -> (variable name, rows [pid, x, y, w, h], storage dtype)
PRW_TRAIN = {
    "c1s1_000001": ("box_new", [[1, 10, 20, 30, 60], [-2, 100, 50, 20, 40]], np.float64),
    "c1s1_000002": ("anno_file", [[1, 12.7, 22, 30, 60], [2, 50, 50, 40, 80]], np.float64),
}
PRW_TEST = {
    "c2s1_000010": (
        "anno_previous",
        [[5, -3.5, 10, 40.9, 90], [7, 100, 10, 40, 90], [-2, 200, 10, 30, 60]],
        np.float64,
    ),
    "c3s1_000020": ("box_new", [[5, 20, 20, 40, 90], [5, 300, 20, 40, 90]], np.float64),  # pid 5 twice
    "c1s2_000030": ("box_new", [[7, 230, 30, 40, 90]], np.uint8),  # x + w = 270 > 255
}
PRW_QUERY_LINES = ["5 -3.5 10.2 40.9 90 c2s1_000010", "7 30 30 40 90 c1s2_000030"]


def write_prw(root: Path, line_end: str = "\r\n") -> Path:
    """Write the hand-made PRW dataset."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for frames in (PRW_TRAIN, PRW_TEST):
        for frame, (key, rows, dtype) in frames.items():
            _jpeg(root / "frames" / f"{frame}.jpg", (480, 270))
            scipy.io.savemat(root / "annotations" / f"{frame}.jpg.mat", {key: np.array(rows, dtype=dtype)})
    scipy.io.savemat(root / "frame_train.mat", {"img_index_train": _cell(list(PRW_TRAIN))})
    scipy.io.savemat(root / "frame_test.mat", {"img_index_test": _cell(list(PRW_TEST))})
    scipy.io.savemat(root / "ID_train.mat", {"ID_train": np.array([[1, 2]])})
    scipy.io.savemat(root / "ID_test.mat", {"ID_test2": np.array([[5, 7]])})
    (root / "query_info.txt").write_bytes("".join(line + line_end for line in PRW_QUERY_LINES).encode())
    return root


# A model small enough for CPU tests: ResNet-18, ~128-224 px inputs, few proposals.
TINY_MODEL = [
    "model.backbone.arch=resnet18",
    "model.backbone.pretrained=none",
    "model.transform.min_size=128",
    "model.transform.max_size=224",
    "model.rpn.pre_nms_top_n_train=300",
    "model.rpn.post_nms_top_n_train=64",
    "model.rpn.pre_nms_top_n_test=150",
    "model.rpn.post_nms_top_n_test=32",
    "model.box_head.batch_size_per_image=32",
    "model.oim.queue_size=16",
]


def tiny_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    """The config overrides of a quick CPU-test training of :data:`TINY_MODEL` on ``root``, writing to ``out``."""
    return [
        f"dataset.root={root}",
        f"output_dir={out}",
        "train.batch_size=2",
        "train.workers=0",
        "train.eval_period=-1",
        "train.tensorboard=false",
        *TINY_MODEL,
        *extra,
    ]


def tiny_config(root: Path, out: Path, *extra: str) -> dict:
    """The config of :func:`tiny_overrides`."""
    return load_config(None, tiny_overrides(root, out, *extra))


# Helpers for bad-input tests: rewrite one file of a hand-made dataset with arbitrary (even poisoned) values.
def _any_box(xywh: list[float]) -> np.ndarray:
    """Like :func:`_box`, but stored as float64 when a value is not a small non-negative integer."""
    arr = np.array([xywh], dtype=np.float64)
    if np.isfinite(arr).all() and (arr >= 0).all() and (arr == np.round(arr)).all() and arr.max() < 65536:
        return _box(xywh)
    return arr


def write_cuhk_images(root: Path, images: dict[str, list[list[float]]]) -> Path:
    """Rewrite ``annotation/Images.mat`` with the given image -> x,y,w,h boxes."""
    rows = []
    for name, boxes in images.items():
        box_struct = _struct(["idlocate", "ishard"], [(_any_box(b), np.array([[0]], np.uint8)) for b in boxes])
        rows.append((name, np.array([[len(boxes)]], np.uint8), box_struct))
    path = root / "annotation" / "Images.mat"
    scipy.io.savemat(path, {"Img": _struct(["imname", "nAppear", "box"], rows)})
    return path


def write_cuhk_pool(root: Path, names: list[str]) -> Path:
    path = root / "annotation" / "pool.mat"
    scipy.io.savemat(path, {"pool": _cell(names)})
    return path


def write_cuhk_train(root: Path, identities: list[list[tuple[str, list[float]]]]) -> Path:
    """Rewrite ``Train.mat`` with identity -> [(image, x,y,w,h)] scenes."""
    cells = []
    for index, scenes in enumerate(identities):
        scene = _struct(
            ["imname", "idlocate", "ishard"], [(n, _any_box(b), np.array([[0]], np.uint8)) for n, b in scenes]
        )
        cells.append(
            _struct(["idname", "nAppear", "scene"], [(f"p{index + 1}", np.array([[len(scenes)]], np.uint8), scene)])
        )
    path = root / "annotation" / "test" / "train_test" / "Train.mat"
    scipy.io.savemat(path, {"Train": _cell(cells)})
    return path


def write_cuhk_protocol(root: Path, queries: list[tuple], size: int = 50) -> Path:
    """Rewrite ``TestG{size}.mat`` with (query image, query box, [(gallery image, box or None)]) rows."""
    rows = []
    for q, (qname, qbox, gallery) in enumerate(queries):
        query = _struct(
            ["imname", "idlocate", "ishard", "idname"],
            [(qname, _any_box(qbox), np.array([[0]], np.uint8), f"p{100 + q}")],
        )
        entries = [(n, EMPTY, EMPTY) if b is None else (n, _any_box(b), np.array([[0]], np.uint8)) for n, b in gallery]
        rows.append((query, _struct(["imname", "idlocate", "ishard"], entries)))
    key = f"TestG{size}"
    path = root / "annotation" / "test" / "train_test" / f"{key}.mat"
    scipy.io.savemat(path, {key: _struct(["Query", "Gallery"], rows)})
    return path


def write_prw_annotation(root: Path, frame: str, rows: list[list[float]], key: str = "box_new") -> Path:
    """Rewrite ``annotations/<frame>.jpg.mat`` with ``[pid, x, y, w, h]`` rows (float64)."""
    path = root / "annotations" / f"{frame}.jpg.mat"
    scipy.io.savemat(path, {key: np.array(rows, dtype=np.float64)})
    return path


def write_jpeg(path: Path, size: tuple[int, int]) -> None:
    """Replace an image with a blank one of ``size`` (width, height)."""
    _jpeg(path, size)


# Multi-process runs: ``run_ranks(worker, *args)`` runs ``worker(rank, *args)`` in two spawned processes, each
# with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT: a free port on
# 127.0.0.1) and one torch thread, so ``init_distributed("cpu")`` joins a gloo group. The worker must be a
# module-level function (the processes are spawned, not forked).
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_rank(rank: int, world_size: int, port: int, worker: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """In a spawned process: torchrun's environment for ``rank``, one torch thread, then the worker."""
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    import torch

    torch.set_num_threads(1)
    worker(rank, *args)


def run_ranks(worker: Callable[..., Any], *args: Any, world_size: int = 2) -> None:
    """Run ``worker(rank, *args)`` in ``world_size`` processes and wait for all; a failing rank fails the call."""
    import torch.multiprocessing as mp

    mp.spawn(_as_rank, args=(world_size, free_port(), worker, args), nprocs=world_size, join=True)
