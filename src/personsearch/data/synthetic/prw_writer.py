"""PRW in its real on-disk layout (docs/datasets.md 2, 5): frames of six cameras plus per-frame annotation files.

Frames are scaled by the preset's ``prw_scale`` from 1920×1080 (c1–c5) and 720×576 (c6). Identities are
raw PRW ids (train and test ids interleave in one range, as in the real data); unlabelled people are -2
in the files and -1 in the returned ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from personsearch.data.annotations import UNLABELED
from personsearch.data.prw import PRW_UNLABELED

from . import matio
from .common import child_rng, progress
from .identities import Appearance, make_identities, random_appearance
from .presets import Preset
from .scenes import CameraStyle, PersonRequest, compose_scene, make_camera_style, render_background
from .truth import ImageTruth, QueryTruth, Quirk, SyntheticDataset

CAMERAS = (1, 2, 3, 4, 5, 6)
CAM_SHARE = np.array([891 + 891, 754 + 593, 996 + 1269, 566 + 640, 1251 + 1067, 1246 + 1652], dtype=float)


@dataclass
class _Slot:
    app: Appearance
    pid: int  # raw PRW id or PRW_UNLABELED (-2, as the annotation files write it)
    edge: str | None = None  # "left"/"top": box starts outside the frame (negative x or y)
    twice: bool = False  # the same pid boxed twice in this frame
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class _Frame:
    name: str  # without .jpg
    cam: int
    split: str
    slots: list[_Slot] = field(default_factory=list)
    key: str = "box_new"
    size: tuple[int, int] = (0, 0)


def frame_size(cam: int, scale: float) -> tuple[int, int]:
    """Frame (width, height): real 1920×1080 for c1–c5 and 720×576 for c6, times ``scale``."""
    w, h = (720, 576) if cam == 6 else (1920, 1080)
    return round(w * scale), round(h * scale)


def _frames(rng: np.random.Generator, n_train: int, n_test: int) -> tuple[list[_Frame], list[_Frame]]:
    """Distinct frame names c<cam>s<seq>_<frame:06d>, split at random, each split sorted by name."""
    n = n_train + n_test
    cams = rng.choice(CAMERAS, size=n, p=CAM_SHARE / CAM_SHARE.sum())
    seqs = rng.integers(1, 4, size=n)
    taken: set[str] = set()
    names: list[tuple[str, int]] = []
    for cam, seq in zip(cams, seqs, strict=True):
        while True:
            name = f"c{int(cam)}s{int(seq)}_{int(rng.integers(1, 40000)) * 25 + 1:06d}"
            if name not in taken:
                taken.add(name)
                names.append((name, int(cam)))
                break
    order = rng.permutation(n)
    train = sorted(names[int(i)] for i in order[:n_train])
    test = sorted(names[int(i)] for i in order[n_train:])
    return [_Frame(nm, c, "train") for nm, c in train], [_Frame(nm, c, "gallery") for nm, c in test]


def _assign(
    rng: np.random.Generator, frames: list[_Frame], apps: list[Appearance], pids: list[int], preset: Preset
) -> None:
    """Each identity in 2–3 cameras (so ≥ 2 camera views) and 1+ frames per camera."""
    counts = np.zeros(len(frames))
    by_cam = {c: [i for i, f in enumerate(frames) if f.cam == c] for c in CAMERAS}
    usable = [c for c in CAMERAS if by_cam[c]]
    for app, pid in zip(apps, pids, strict=True):
        n_cams = min(len(usable), int(rng.integers(2, 4)))
        cams = rng.choice(usable, size=n_cams, replace=False)
        budget = max(int(rng.integers(2, preset.max_appearances + 1)), n_cams)
        per_cam = np.ones(n_cams, dtype=int)
        for _ in range(budget - n_cams):
            per_cam[int(rng.integers(n_cams))] += 1
        for cam, k in zip(cams, per_cam, strict=True):
            cand = by_cam[int(cam)]
            w = 1.0 / (1.0 + counts[cand]) ** 2
            for j in rng.choice(cand, size=min(int(k), len(cand)), replace=False, p=w / w.sum()):
                frames[int(j)].slots.append(_Slot(app, pid))
                counts[int(j)] += 1


def _fill(rng: np.random.Generator, frames: list[_Frame], preset: Preset) -> None:
    for f in frames:
        room = preset.max_people - len(f.slots)
        extra = int(rng.integers(0, min(2, max(room, 0)) + 1))
        for _ in range(max(extra, 0 if f.slots else 1)):
            f.slots.append(_Slot(random_appearance(rng), PRW_UNLABELED))
        f.slots = [f.slots[int(i)] for i in rng.permutation(len(f.slots))]


def _inject(rng: np.random.Generator, train: list[_Frame], test: list[_Frame]) -> list[Quirk]:
    """Negative-coordinate boxes, a pid boxed twice, and the alternative annotation keys."""
    quirks = []
    for frames, edges in ((train, ("left", "top")), (test, ("left",))):
        for edge in edges:
            f = frames[int(rng.integers(len(frames)))]
            f.slots.append(_Slot(random_appearance(rng), PRW_UNLABELED, edge=edge))
        labelled = [f for f in frames if any(s.pid > 0 for s in f.slots)]
        f = labelled[int(rng.integers(len(labelled)))]
        slot = next(s for s in f.slots if s.pid > 0)
        slot.twice = True
        quirks.append(Quirk("pid_twice_in_frame", f.name + ".jpg", detail=f"pid {slot.pid}"))
    everything = train + test
    for key in ("anno_file", "anno_previous"):
        for i in rng.choice(len(everything), size=2, replace=False):
            if everything[int(i)].key == "box_new":
                everything[int(i)].key = key
                quirks.append(Quirk(f"key_{key}", everything[int(i)].name + ".jpg"))
    return quirks


def _render(
    seed: int,
    index: int,
    f: _Frame,
    styles: dict[int, CameraStyle],
    backgrounds: dict[int, Image.Image],
    root: Path,
) -> Image.Image:
    rng = child_rng(seed, 3, index)
    picture, placed = compose_scene(
        rng, backgrounds[f.cam], styles[f.cam], [PersonRequest(s.app, s.edge) for s in f.slots]
    )
    f.size = picture.size
    for slot, p in zip(f.slots, placed, strict=True):
        slot.boxes = [(p.x, p.y, p.w, p.h)]
        if slot.twice:
            slot.boxes.append((p.x + 3, p.y + 2, max(p.w - 5, 1), max(p.h - 4, 1)))
    picture.save(root / "frames" / f"{f.name}.jpg", format="JPEG", quality=styles[f.cam].jpeg_quality)
    return picture


def _rows(f: _Frame) -> np.ndarray:
    return np.array([[s.pid, *b] for s in f.slots for b in s.boxes], dtype=np.float64).reshape(-1, 5)


def _loader_box(x: float, y: float, w: float, h: float) -> tuple[int, int, int, int]:
    """Gallery conversion of docs/datasets.md section 2: clip x,y,w,h at 0, then x2 = x + w, then truncate."""
    x, y, w, h = (max(v, 0.0) for v in (x, y, w, h))
    return int(x), int(y), int(x + w), int(y + h)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}".rstrip("0")


@dataclass
class _PlannedQuery:
    frame: _Frame
    slot: _Slot
    text: str = ""
    box: tuple[int, int, int, int] = (0, 0, 0, 0)


def _plan_queries(
    rng: np.random.Generator, test: list[_Frame], test_pids: list[int], preset: Preset
) -> list[_PlannedQuery]:
    planned = []
    for pid in test_pids:
        seen = [(f, s) for f in test for s in f.slots if s.pid == pid and not s.twice]
        cams = sorted({f.cam for f, _ in seen})
        if len({f.cam for f in test if any(s.pid == pid for s in f.slots)}) < 2:
            raise ValueError(f"test pid {pid} is seen by fewer than 2 cameras")
        for cam in rng.permutation(cams)[: preset.prw_queries_per_id]:
            options = [(f, s) for f, s in seen if f.cam == int(cam)]
            f, s = options[int(rng.integers(len(options)))]
            planned.append(_PlannedQuery(f, s))
    return planned


def _finish_query(rng: np.random.Generator, q: _PlannedQuery, picture: Image.Image, root: Path) -> None:
    """Hand-drawn-like query box (fractional, a pixel or so off the annotation) and its crop."""
    x, y, w, h = q.slot.boxes[0]
    vals = [
        max(x + rng.uniform(-1, 1), 0.0),
        max(y + rng.uniform(-1, 1), 0.0),
        w + rng.uniform(-1, 1),
        h + rng.uniform(-1, 1),
    ]
    vals = [round(float(v) * 2) / 2 if rng.random() < 0.5 else round(float(v), 2) for v in vals]
    text = [_num(v) for v in vals]
    qx, qy, qw, qh = (float(t) for t in text)
    q.text = f"{q.slot.pid} {' '.join(text)} {q.frame.name}\r\n"
    box = [int(qx), int(qy), int(qx + qw), int(qy + qh)]  # truncate first, then clip (docs/datasets.md section 2)
    q.box = (max(box[0], 0), max(box[1], 0), max(box[2], 0), max(box[3], 0))
    crop = picture.crop((q.box[0], q.box[1], min(q.box[2], picture.width), min(q.box[3], picture.height)))
    crop.save(root / "query_box" / f"{q.slot.pid:03d}_{q.frame.name}.jpg", format="JPEG", quality=90)


def _truth(frames: list[_Frame]) -> list[ImageTruth]:
    out = []
    for f in frames:
        rows = _rows(f)
        boxes = [_loader_box(*r[1:]) for r in rows]
        pids = [UNLABELED if r[0] == PRW_UNLABELED else int(r[0]) for r in rows]
        out.append(ImageTruth(f.name + ".jpg", f.split, f.size, boxes, pids, f.cam))
    return out


def write_prw(root: Path, preset: Preset, seed: int) -> SyntheticDataset:
    """Generate and write a PRW-format dataset under ``root``; return its ground truth."""
    rng = np.random.default_rng([seed, 1])
    train, test = _frames(rng, preset.prw_train_frames, preset.prw_test_frames)
    n_ids = preset.prw_train_ids + preset.prw_test_ids
    test_pids = sorted(int(p) for p in rng.choice(np.arange(1, n_ids + 1), preset.prw_test_ids, replace=False))
    train_pids = [p for p in range(1, n_ids + 1) if p not in set(test_pids)]
    train_apps, train_pairs = make_identities(rng, len(train_pids))
    test_apps, test_pairs = make_identities(rng, len(test_pids))
    _assign(rng, train, train_apps, train_pids, preset)
    _assign(rng, test, test_apps, test_pids, preset)
    _fill(rng, train + test, preset)
    quirks = _inject(rng, train, test)
    planned = _plan_queries(rng, test, test_pids, preset)

    styles = {c: make_camera_style(rng) for c in CAMERAS}
    backgrounds = {
        c: render_background(child_rng(seed, 4, c), frame_size(c, preset.prw_scale), styles[c]) for c in CAMERAS
    }
    for sub in ("frames", "annotations", "query_box"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    queries_of: dict[str, list[_PlannedQuery]] = {}
    for q in planned:
        queries_of.setdefault(q.frame.name, []).append(q)
    frames = train + test
    for i, f in progress(enumerate(frames), len(frames), "prw frames", preset.progress):
        picture = _render(seed, i, f, styles, backgrounds, root)
        for q in queries_of.get(f.name, []):
            _finish_query(child_rng(seed, 5, i, q.slot.pid), q, picture, root)
        matio.save_mat(root / "annotations" / f"{f.name}.jpg.mat", {f.key: _rows(f)})
    for f in frames:
        for s in f.slots:
            if s.boxes[0][0] < 0 or s.boxes[0][1] < 0:
                quirks.append(Quirk("negative_xy_box", f.name + ".jpg", detail=f"x,y,w,h = {s.boxes[0]}"))
        if any(s.pid == PRW_UNLABELED for s in f.slots):
            quirks.append(Quirk("unlabelled_pid_-2", f.name + ".jpg"))
    quirks += [
        Quirk("fractional_query_box", q.frame.name + ".jpg", i)
        for i, q in enumerate(planned)
        if "." in q.text.split(" ", 5)[1] + q.text.split(" ", 5)[2]
    ]

    matio.save_mat(root / "frame_train.mat", {"img_index_train": matio.cell_column([f.name for f in train])})
    matio.save_mat(root / "frame_test.mat", {"img_index_test": matio.cell_column([f.name for f in test])})
    matio.save_mat(root / "ID_train.mat", {"ID_train": np.array([train_pids], dtype=np.float64)})
    matio.save_mat(root / "ID_test.mat", {"ID_test2": np.array([test_pids], dtype=np.float64)})
    (root / "query_info.txt").write_bytes("".join(q.text for q in planned).encode("ascii"))
    return SyntheticDataset(
        fmt="prw",
        root=root,
        preset=preset.name,
        seed=seed,
        images=_truth(train) + _truth(test),
        queries=[QueryTruth(q.frame.name + ".jpg", q.box, q.slot.pid, q.frame.cam) for q in planned],
        quirks=quirks,
        train_ids=train_pids,
        test_ids=test_pids,
        hard_negatives=[("train", train_pids[i], train_pids[j], a) for i, j, a in train_pairs]
        + [("gallery", test_pids[i], test_pids[j], a) for i, j, a in test_pairs],
    )
