"""CUHK-SYSU in its real on-disk layout (docs/datasets.md 1, 5): scene JPEGs plus the MATLAB annotation files.

Identities: training ids are Train.mat positions + 1; test ids are TestG50 query positions + 1 (one query
per test identity, as in the real protocol). Unlabelled passers-by get -1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personsearch.data.annotations import UNLABELED
from personsearch.data.cuhk_sysu import GALLERY_SIZES

from . import matio
from .common import child_rng, progress
from .identities import Appearance, make_identities, random_appearance
from .presets import Preset
from .scenes import CameraStyle, PersonRequest, compose_scene, make_camera_style, render_background
from .truth import ImageTruth, QueryTruth, Quirk, SyntheticDataset

XYWH = tuple[int, int, int, int]
# Test identities that carry the TestG quirks of docs/datasets.md section 1 (by test-id position).
Q_DIFF_BOX, Q_SAME_BOX, Q_REPEATED, G_TWICE = 0, 1, 2, 3
NUM_ZERO_SIZE = 3


@dataclass
class _Slot:
    """One person drawn in one image; ``owner`` is ("train"|"test", index) or None (unlabelled)."""

    app: Appearance
    owner: tuple[str, int] | None
    ishard: int
    twice: bool = False  # annotated with two different boxes (quirk)
    boxes: list[XYWH] = field(default_factory=list)


@dataclass
class _Image:
    name: str
    split: str
    slots: list[_Slot] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)
    boxes: list[tuple[XYWH, int]] = field(default_factory=list)  # (x y w h, ishard) in file order


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct non-contiguous image names ``s<k>.jpg`` in ascending number order."""
    numbers = np.sort(rng.choice(np.arange(1, 3 * n + 10), size=n, replace=False))
    return [f"s{int(k)}.jpg" for k in numbers]


def _spread(rng: np.random.Generator, counts: np.ndarray, k: int, exclude: set[int] | None = None) -> list[int]:
    """``k`` distinct image positions, preferring images with few people so far."""
    weights = 1.0 / (1.0 + counts.astype(np.float64)) ** 2
    if exclude:
        weights[list(exclude)] = 0.0
    chosen = rng.choice(len(counts), size=k, replace=False, p=weights / weights.sum())
    counts[chosen] += 1
    return [int(c) for c in chosen]


def _assign(
    rng: np.random.Generator,
    images: list[_Image],
    apps: list[Appearance],
    kind: str,
    preset: Preset,
    fixed: dict[int, int] | None = None,
) -> list[list[int]]:
    """Put every identity of ``kind`` into ≥ 2 distinct images; returns image positions per identity."""
    counts = np.zeros(len(images), dtype=np.int64)
    where: list[list[int]] = []
    for i, app in enumerate(apps):
        k = (fixed or {}).get(i) or int(rng.integers(2, preset.max_appearances + 1))
        pos = _spread(rng, counts, k)
        for p in pos:
            images[p].slots.append(_Slot(app, (kind, i), int(rng.random() < 0.07)))
        where.append(pos)
    return where


def _add_unlabelled(rng: np.random.Generator, images: list[_Image], preset: Preset) -> None:
    for im in images:
        room = preset.max_people - len(im.slots)
        extra = int(rng.integers(0, min(2, room) + 1)) if room > 0 else 0
        if not im.slots:
            extra = max(extra, 1)
        for _ in range(extra):
            im.slots.append(_Slot(random_appearance(rng), None, int(rng.random() < 0.07)))
        order = rng.permutation(len(im.slots))
        im.slots = [im.slots[int(i)] for i in order]


def _second_box(box: XYWH) -> XYWH:
    """A second, slightly tighter box of the same person (the real data's double annotations)."""
    x, y, w, h = box
    return (x + 2, y + 3, max(w - 4, 1), max(h - 5, 1))


def _render(seed: int, index: int, im: _Image, styles: list[CameraStyle], preset: Preset, root: Path) -> None:
    """Draw one image, save it, and fill its boxes."""
    rng = child_rng(seed, 1, index)
    im.size = tuple(preset.cuhk_sizes[int(rng.integers(len(preset.cuhk_sizes)))])  # type: ignore[assignment]
    style = styles[int(rng.integers(len(styles)))]
    background = render_background(rng, im.size, style)
    picture, placed = compose_scene(rng, background, style, [PersonRequest(s.app) for s in im.slots])
    for slot, p in zip(im.slots, placed, strict=True):
        slot.boxes = [(p.x, p.y, p.w, p.h)]
        if slot.twice:
            slot.boxes.append(_second_box(slot.boxes[0]))
        im.boxes.extend((b, slot.ishard) for b in slot.boxes)
    picture.save(root / "Image" / "SSM" / im.name, format="JPEG", quality=style.jpeg_quality)


def _zero_size_boxes(rng: np.random.Generator, images: list[_Image]) -> list[Quirk]:
    quirks = []
    for p in rng.choice(len(images), size=min(NUM_ZERO_SIZE, len(images)), replace=False):
        im = images[int(p)]
        w, h = im.size
        box = (int(rng.integers(0, w - 20)), int(rng.integers(0, h - 40)), 0, int(rng.integers(10, 40)))
        if rng.random() < 0.5:
            box = (box[0], box[1], int(rng.integers(5, 20)), 0)
        im.boxes.insert(int(rng.integers(len(im.boxes) + 1)), (box, 0))
        quirks.append(Quirk("zero_size_box", im.name, detail=f"x,y,w,h = {box}"))
    return quirks


# -- protocol ---------------------------------------------------------------------------------------


@dataclass
class _Query:
    image: str
    box: XYWH
    ishard: int
    idname: str
    positives: list[tuple[str, XYWH, int]]  # (image, box, ishard), in file order
    excluded: set[str]  # images containing the person


def _occurrences(images: list[_Image], kind: str, count: int) -> list[list[tuple[_Image, _Slot]]]:
    occ: list[list[tuple[_Image, _Slot]]] = [[] for _ in range(count)]
    for im in images:
        for slot in im.slots:
            if slot.owner is not None and slot.owner[0] == kind:
                occ[slot.owner[1]].append((im, slot))
    return occ


def _build_queries(
    rng: np.random.Generator, occ: list[list[tuple[_Image, _Slot]]], idnames: list[str]
) -> tuple[list[_Query], list[Quirk]]:
    queries, quirks = [], []
    for t, items in enumerate(occ):
        qi = 0 if t != G_TWICE else 1  # the doubled gallery image must not be the query image
        q_im, q_slot = items[qi]
        pos = [(im.name, s.boxes[0], s.ishard) for j, (im, s) in enumerate(items) if j != qi]
        for im, s in items:
            if len(s.boxes) > 1 and im is not q_im:
                k = next(i for i, p in enumerate(pos) if p[0] == im.name)
                pos.insert(k + 1, (im.name, s.boxes[1], s.ishard))
                quirks.append(Quirk("gallery_image_twice_two_boxes", im.name, t, "same person, two boxes"))
        rng.shuffle(pos)
        pos = _keep_pairs_adjacent(pos)
        if t == Q_DIFF_BOX:
            pos.append((q_im.name, q_slot.boxes[1], q_slot.ishard))
            quirks.append(Quirk("query_image_in_gallery_different_box", q_im.name, t))
        if t == Q_SAME_BOX:
            pos.append((q_im.name, q_slot.boxes[0], q_slot.ishard))
            quirks.append(Quirk("query_image_in_gallery_same_box", q_im.name, t))
        if t == Q_REPEATED:
            pos = [pos[0], pos[0]]
            quirks.append(Quirk("single_positive_repeated", pos[0][0], t))
        queries.append(_Query(q_im.name, q_slot.boxes[0], q_slot.ishard, idnames[t], pos, {im.name for im, _ in items}))
    return queries, quirks


def _keep_pairs_adjacent(pos: list[tuple[str, XYWH, int]]) -> list[tuple[str, XYWH, int]]:
    """Group entries of the same image together (stable), so a doubled image is listed twice in a row."""
    order: list[str] = []
    for name, _, _ in pos:
        if name not in order:
            order.append(name)
    return [p for name in order for p in pos if p[0] == name]


def _fitting_sizes(preset: Preset, queries: list[_Query], pool: list[str]) -> list[int]:
    """Every CUHK-SYSU gallery size that fits the pool for every query (each one is written)."""
    sizes = []
    for n in GALLERY_SIZES:
        if all(len(q.positives) < n <= len(q.positives) + len(pool) - len(q.excluded) for q in queries):
            sizes.append(n)
    if 50 not in sizes:
        raise ValueError(f"preset {preset.name}: pool of {len(pool)} images cannot hold TestG50")
    return sizes


def _testg(rng: np.random.Generator, queries: list[_Query], pool: list[str], n: int) -> np.ndarray:
    rows = []
    for q in queries:
        query = matio.struct_array(
            ("imname", "idlocate", "ishard", "idname"),
            [(q.image, matio.box_array(q.box), matio.scalar(q.ishard), q.idname)],
            (1, 1),
        )
        negatives = [name for name in pool if name not in q.excluded]
        picked = rng.choice(len(negatives), size=n - len(q.positives), replace=False)
        entries = [(name, matio.box_array(b), matio.scalar(h)) for name, b, h in q.positives]
        entries += [(negatives[int(i)], matio.EMPTY.copy(), matio.EMPTY.copy()) for i in picked]
        rows.append((query, matio.struct_array(("imname", "idlocate", "ishard"), entries, (1, n))))
    return matio.struct_array(("Query", "Gallery"), rows, (1, len(queries)))


# -- files ------------------------------------------------------------------------------------------


def _images_mat(images: list[_Image]) -> np.ndarray:
    rows = []
    for im in images:
        box = matio.struct_array(
            ("idlocate", "ishard"),
            [(matio.box_array(b), matio.scalar(h)) for b, h in im.boxes],
            (1, len(im.boxes)),
        )
        rows.append((im.name, matio.scalar(len(im.boxes)), box))
    return matio.struct_array(("imname", "nAppear", "box"), rows, (1, len(images)))


def _person_rows(occ: list[list[tuple[_Image, _Slot]]], idnames: list[str]) -> list[tuple]:
    rows = []
    for items, idname in zip(occ, idnames, strict=True):
        scene = [(im.name, matio.box_array(b), matio.scalar(s.ishard)) for im, s in items for b in s.boxes]
        rows.append(
            (
                idname,
                matio.scalar(len(scene)),
                matio.struct_array(("imname", "idlocate", "ishard"), scene, (1, len(scene))),
            )
        )
    return rows


def _train_mat(occ: list[list[tuple[_Image, _Slot]]], idnames: list[str]) -> np.ndarray:
    cells = [matio.struct_array(("idname", "nAppear", "scene"), [row], (1, 1)) for row in _person_rows(occ, idnames)]
    return matio.cell_column(cells)


def _truth_images(images: list[_Image], split: str, pid_of: dict[tuple[str, XYWH], int]) -> list[ImageTruth]:
    out = []
    for im in images:
        valid = [b for b, _ in im.boxes if b[2] > 0 and b[3] > 0]
        boxes = [(x, y, x + w, y + h) for x, y, w, h in valid]
        out.append(ImageTruth(im.name, split, im.size, boxes, [pid_of.get((im.name, b), UNLABELED) for b in valid]))
    return out


@dataclass
class _Scenes:
    """Both splits' images with every person placed (boxes come with rendering)."""

    images: list[_Image]  # every image, in name (Images.mat) order
    pool: list[str]  # the test images, in pool.mat order
    train: list[_Image]  # loader order
    gallery: list[_Image]  # pool order
    train_occ: list[list[tuple[_Image, _Slot]]]  # per training identity
    test_occ: list[list[tuple[_Image, _Slot]]]  # per test identity
    hard_negatives: list[tuple[str, int, int, str]]


def _place_people(rng: np.random.Generator, preset: Preset) -> _Scenes:
    """Split the images into train and pool, then put identities, quirks and passers-by into them."""
    names = _names(rng, preset.cuhk_train_images + preset.cuhk_pool_images)
    pool = [names[int(i)] for i in rng.permutation(len(names))[: preset.cuhk_pool_images]]
    pool_set = set(pool)
    train = [_Image(n, "train") for n in sorted(names) if n not in pool_set]  # loader order: str sort
    gallery = [_Image(n, "gallery") for n in pool]
    train_apps, train_pairs = make_identities(rng, preset.cuhk_train_ids)
    test_apps, test_pairs = make_identities(rng, preset.cuhk_test_ids)
    _assign(rng, train, train_apps, "train", preset)
    _assign(rng, gallery, test_apps, "test", preset, {Q_REPEATED: 2, G_TWICE: 3, Q_DIFF_BOX: 2})
    _add_unlabelled(rng, train + gallery, preset)
    test_occ = _occurrences(gallery, "test", len(test_apps))
    test_occ[Q_DIFF_BOX][0][1].twice = True  # the query's own image carries a second box
    test_occ[G_TWICE][0][1].twice = True  # a gallery image listed twice with two boxes
    by_name = {im.name: im for im in train + gallery}
    return _Scenes(
        images=[by_name[n] for n in names],
        pool=pool,
        train=train,
        gallery=gallery,
        train_occ=_occurrences(train, "train", len(train_apps)),
        test_occ=test_occ,
        hard_negatives=[("train", i + 1, j + 1, a) for i, j, a in train_pairs]
        + [("gallery", i + 1, j + 1, a) for i, j, a in test_pairs],
    )


def _render_all(rng: np.random.Generator, seed: int, images: list[_Image], preset: Preset, root: Path) -> None:
    """Draw and save every image (camera styles from ``rng``, each picture from its own child seed)."""
    (root / "Image" / "SSM").mkdir(parents=True, exist_ok=True)
    styles = [make_camera_style(rng) for _ in range(12)]
    for i, im in progress(enumerate(images), len(images), "cuhk-sysu images", preset.progress):
        _render(seed, i, im, styles, preset, root)


def _idnames(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct identity names ``p<k>``, in random order."""
    return [f"p{int(k)}" for k in rng.choice(np.arange(1, 4 * count), count, replace=False)]


def _write_annotations(
    root: Path, seed: int, scenes: _Scenes, idnames: list[str], queries: list[_Query], sizes: list[int]
) -> None:
    """Images.mat, Person.mat, pool.mat, Train.mat and one TestG{N}.mat per size."""
    ann = root / "annotation"
    protocol_dir = ann / "test" / "train_test"
    protocol_dir.mkdir(parents=True, exist_ok=True)
    train_names, test_names = idnames[: len(scenes.train_occ)], idnames[len(scenes.train_occ) :]
    matio.save_mat(ann / "Images.mat", {"Img": _images_mat(scenes.images)})
    person_rows = _person_rows(scenes.train_occ, train_names) + _person_rows(scenes.test_occ, test_names)
    matio.save_mat(
        ann / "Person.mat",
        {"Person": matio.struct_array(("idname", "nAppear", "scene"), person_rows, (1, len(person_rows)))},
    )
    matio.save_mat(ann / "pool.mat", {"pool": matio.cell_column(scenes.pool)})
    matio.save_mat(protocol_dir / "Train.mat", {"Train": _train_mat(scenes.train_occ, train_names)})
    for n in sizes:
        matio.save_mat(
            protocol_dir / f"TestG{n}.mat", {f"TestG{n}": _testg(child_rng(seed, 2, n), queries, scenes.pool, n)}
        )


def _pid_map(train_occ: list[list[tuple[_Image, _Slot]]], queries: list[_Query]) -> dict[tuple[str, XYWH], int]:
    """The loader's identity of every labelled (image, box): Train.mat position + 1, TestG50 query position + 1."""
    pid_of: dict[tuple[str, XYWH], int] = {}
    for i, items in enumerate(train_occ):
        pid_of.update({(im.name, b): i + 1 for im, s in items for b in s.boxes})
    for i, q in enumerate(queries):
        pid_of[(q.image, q.box)] = i + 1
        pid_of.update({(name, b): i + 1 for name, b, _ in q.positives})
    return pid_of


def write_cuhk(root: Path, preset: Preset, seed: int) -> SyntheticDataset:
    """Generate and write a CUHK-SYSU-format dataset under ``root``; return its ground truth."""
    rng = np.random.default_rng([seed, 0])
    scenes = _place_people(rng, preset)
    _render_all(rng, seed, scenes.images, preset, root)
    quirks = _zero_size_boxes(rng, scenes.images)
    idnames = _idnames(rng, len(scenes.train_occ) + len(scenes.test_occ))
    queries, q_quirks = _build_queries(rng, scenes.test_occ, idnames[len(scenes.train_occ) :])
    sizes = _fitting_sizes(preset, queries, scenes.pool)
    _write_annotations(root, seed, scenes, idnames, queries, sizes)
    pid_of = _pid_map(scenes.train_occ, queries)
    return SyntheticDataset(
        fmt="cuhk-sysu",
        root=root,
        preset=preset.name,
        seed=seed,
        images=_truth_images(scenes.train, "train", pid_of) + _truth_images(scenes.gallery, "gallery", pid_of),
        queries=[
            QueryTruth(q.image, (q.box[0], q.box[1], q.box[0] + q.box[2], q.box[1] + q.box[3]), i + 1)
            for i, q in enumerate(queries)
        ],
        gallery_sizes=sizes,
        num_zero_size_boxes=NUM_ZERO_SIZE,
        quirks=quirks + q_quirks,
        train_ids=list(range(1, len(scenes.train_occ) + 1)),
        test_ids=list(range(1, len(queries) + 1)),
        hard_negatives=scenes.hard_negatives,
    )
