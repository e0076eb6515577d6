"""A contact sheet of a *written* dataset, read back from its files, for a person to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.io import loadmat

from personsearch.errors import DatasetError

THUMB_W, THUMB_H, COLS = 320, 240, 4
LABELLED, UNLABELLED_COLOR = (40, 230, 60), (255, 60, 60)
Annotated = tuple[Path, list[tuple[int, int, int, int]], list[int]]  # image, x1y1x2y2 boxes, pids


def _cuhk(root: Path) -> list[Annotated]:
    ann = root / "annotation"
    img = loadmat(ann / "Images.mat")["Img"].squeeze()
    pool = [str(a[0]) for a in loadmat(ann / "pool.mat")["pool"].squeeze()]
    labels: dict[tuple[str, tuple[int, ...]], int] = {}
    train = loadmat(ann / "test" / "train_test" / "Train.mat")["Train"].squeeze()
    for i, item in enumerate(train):
        for name, box, _ in item[0, 0][2].squeeze():
            labels[(str(name[0]), tuple(box.squeeze().astype(np.int32)))] = i + 1
    protoc = loadmat(ann / "test" / "train_test" / "TestG50.mat")["TestG50"].squeeze()
    for i, item in enumerate(protoc):
        q = item["Query"][0, 0]
        labels[(str(q[0][0]), tuple(q[1].squeeze().astype(np.int32)))] = i + 1
        for g in item["Gallery"].squeeze():
            if g[1].size:
                labels[(str(g[0][0]), tuple(g[1][0].astype(np.int32)))] = i + 1
    out: list[Annotated] = []
    for name, _, boxes in img:
        name = str(name[0])
        xywh = [tuple(b[0].reshape(-1).astype(np.int32)) for b in boxes[0]]
        xywh = [b for b in xywh if b[2] > 0 and b[3] > 0]
        out.append(
            (
                root / "Image" / "SSM" / name,
                [(x, y, x + w, y + h) for x, y, w, h in xywh],
                [labels.get((name, b), -1) for b in xywh],
            )
        )
    pool_set = set(pool)
    return sorted(out, key=lambda a: a[0].name in pool_set)


def _prw(root: Path) -> list[Annotated]:
    out: list[Annotated] = []
    for mat, key in (("frame_train.mat", "img_index_train"), ("frame_test.mat", "img_index_test")):
        for cell in loadmat(root / mat)[key]:
            name = str(cell[0][0])
            anno = loadmat(root / "annotations" / f"{name}.jpg.mat")
            rows = next(anno[k] for k in ("box_new", "anno_file", "anno_previous") if k in anno)
            boxes = [(int(x), int(y), int(x + w), int(y + h)) for _, x, y, w, h in rows]
            out.append((root / "frames" / f"{name}.jpg", boxes, [int(p) if p >= 0 else -1 for p in rows[:, 0]]))
    return out


def _thumb(path: Path, boxes: list[tuple[int, int, int, int]], pids: list[int]) -> Image.Image:
    with Image.open(path) as im:
        scene = im.convert("RGB")
    draw = ImageDraw.Draw(scene)
    for box, pid in zip(boxes, pids, strict=True):
        color = LABELLED if pid >= 0 else UNLABELLED_COLOR
        draw.rectangle(box, outline=color, width=2)
        draw.text((box[0] + 2, box[1] + 1), str(pid) if pid >= 0 else "?", fill=color)
    draw.text((3, 3), path.name, fill=(255, 255, 255))
    scene.thumbnail((THUMB_W, THUMB_H))
    return scene


def write_preview(root: str | Path, fmt: str, out_png: str | Path, num_scenes: int = 12, seed: int = 0) -> Path:
    """Draw ``num_scenes`` scenes of the dataset at ``root`` with boxes and ids into ``out_png``.

    Labelled boxes are green with their id, unlabelled ones red with "?".
    """
    root, out_png = Path(root), Path(out_png)
    if fmt not in ("cuhk-sysu", "prw"):
        raise DatasetError(f"unknown dataset format {fmt!r}; choose cuhk-sysu or prw")
    if num_scenes < 1:
        raise DatasetError(f"num_scenes must be at least 1, got {num_scenes}")
    try:
        items = _cuhk(root) if fmt == "cuhk-sysu" else _prw(root)
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{root}: cannot read the {fmt} annotations for a preview ({exc})") from None
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(items), size=min(num_scenes, len(items)), replace=False))
    rows = (len(picked) + COLS - 1) // COLS
    sheet = Image.new("RGB", (COLS * THUMB_W, rows * THUMB_H), (30, 30, 30))
    for k, i in enumerate(picked):
        thumb = _thumb(*items[int(i)])
        sheet.paste(thumb, ((k % COLS) * THUMB_W, (k // COLS) * THUMB_H))
    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out_png, format="PNG")
    except OSError as exc:
        raise DatasetError(f"{out_png}: cannot write the preview ({exc.strerror or exc})") from None
    return out_png
