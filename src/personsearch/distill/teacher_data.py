"""Ground-truth person crops for the teacher: training set with ISA, flip and random erasing; PK sampler.

Augmentation is a function of ``(seed, epoch, slot)`` only (``slot`` = position in the epoch), like the
student's data: a crop drawn twice in one batch gets two different augmentations, and the result does not
depend on the number of data workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from personsearch.data.annotations import ImageRecord
from personsearch.data.images import load_image
from personsearch.data.torch_dataset import image_to_tensor
from personsearch.data.validation import check_boxes_fit

from .sia import SIASettings, crop_resize, perturb_boxes


@dataclass(frozen=True)
class Crop:
    """One ground-truth person box of a scene image."""

    path: Path
    image_name: str
    box: tuple[float, float, float, float]
    label: int  # class index (training) or raw identity (evaluation; -1 = unlabelled)


@dataclass(frozen=True)
class CropAugment:
    """Training augmentation of the teacher's crops."""

    input_size: tuple[int, int] = (256, 128)
    isa: SIASettings | None = None  # None: crop the box exactly
    hflip_prob: float = 0.5
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_ratio: float = 0.3
    erase_value: tuple[float, float, float] = (0.485, 0.456, 0.406)  # the pixel mean


def box_tuple(box: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` as Python floats."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1, y1, x2, y2)


def training_crops(records: Sequence[ImageRecord], class_map: dict[int, int]) -> list[Crop]:
    """Every labelled training box whose identity is in ``class_map``, labelled with its class index."""
    crops = []
    for r in records:
        for box, pid in zip(r.boxes, r.pids):
            if int(pid) in class_map:
                crops.append(Crop(Path(r.path), r.name, box_tuple(box), class_map[int(pid)]))
    return crops


def gallery_crops(records: Sequence[ImageRecord]) -> list[Crop]:
    """Every ground-truth box of the gallery images (labelled or not), with its raw identity."""
    return [Crop(Path(r.path), r.name, box_tuple(box), int(pid)) for r in records for box, pid in zip(r.boxes, r.pids)]


def item_generator(seed: int, epoch: int, slot: int) -> torch.Generator:
    """A torch generator that depends on ``(seed, epoch, slot)`` only."""
    key = int(np.random.SeedSequence([seed, epoch, slot, 2718]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(key)


def random_erase(crop: Tensor, aug: CropAugment, g: torch.Generator) -> Tensor:
    """Random erasing (Zhong et al.): a rectangle of random area and aspect set to ``erase_value``."""
    if float(torch.rand((), generator=g)) >= aug.erase_prob:
        return crop
    _, height, width = crop.shape
    for _ in range(100):
        area = height * width * _uniform(g, *aug.erase_area)
        ratio = math.exp(_uniform(g, math.log(aug.erase_ratio), math.log(1.0 / aug.erase_ratio)))
        h, w = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < h < height and 0 < w < width:
            y = int(torch.randint(0, height - h + 1, (), generator=g))
            x = int(torch.randint(0, width - w + 1, (), generator=g))
            crop = crop.clone()
            crop[:, y : y + h, x : x + w] = torch.tensor(aug.erase_value, dtype=crop.dtype).view(3, 1, 1)
            return crop
    return crop


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def augment_crop(image: Tensor, box: Tensor, aug: CropAugment, g: torch.Generator) -> Tensor:
    """ISA crop (or the exact box), horizontal flip, random erasing: ``[3, H, W]``."""
    boxes = box.view(1, 4)
    if aug.isa is not None:
        boxes, _ = perturb_boxes(boxes, aug.isa, (int(image.shape[1]), int(image.shape[2])), generator=g)
    crop = crop_resize(image, boxes, aug.input_size)[0]
    if float(torch.rand((), generator=g)) < aug.hflip_prob:
        crop = crop.flip(-1)
    return random_erase(crop, aug, g)


def _load_checked(crop: Crop) -> Tensor:
    """The crop's scene image as a tensor; a one-line error when the box does not fit it (wrong image)."""
    image = image_to_tensor(load_image(crop.path))
    check_boxes_fit(crop.path, np.asarray([crop.box]), int(image.shape[2]), int(image.shape[1]))
    return image


class TeacherTrainSet(Dataset):
    """Items ``(index, epoch, slot)`` -> ``(crop [3, H, W], class index)``."""

    def __init__(self, crops: Sequence[Crop], aug: CropAugment, seed: int = 0) -> None:
        self.crops, self.aug, self.seed = list(crops), aug, seed

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[Tensor, int]:
        index, epoch, slot = item
        c = self.crops[index]
        image = _load_checked(c)
        crop = augment_crop(image, torch.tensor(c.box), self.aug, item_generator(self.seed, epoch, slot))
        return crop, c.label


class EvalCropSet(Dataset):
    """Crops of the exact boxes, no augmentation: ``(crop, index)``. Crops of one image are read once in a row."""

    def __init__(self, crops: Sequence[Crop], input_size: tuple[int, int]) -> None:
        self.crops, self.input_size = list(crops), input_size
        self._last: tuple[Path, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        c = self.crops[index]
        if self._last is None or self._last[0] != c.path:
            self._last = (c.path, _load_checked(c))
        return crop_resize(self._last[1], torch.tensor([c.box]), self.input_size)[0], index


class PKSampler(Sampler):
    """Batches of ``p`` identities x ``k`` crops; identities shuffled per epoch (seeded by ``(seed, epoch)``).

    An identity with fewer than ``k`` crops is sampled with replacement. Yields ``(index, epoch, slot)``;
    use it with ``batch_size = p * k``. The last incomplete group of identities is dropped unless the
    dataset has fewer than ``p`` identities, in which case every batch holds them all.
    """

    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0) -> None:
        if p < 1 or k < 1:
            raise ValueError("PK sampling needs p >= 1 and k >= 1")
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0
        by_label: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            by_label.setdefault(int(label), []).append(i)
        if not by_label:
            raise ValueError("no labelled crops to sample from")
        self.by_label = {k_: np.array(v) for k_, v in sorted(by_label.items())}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def num_batches(self) -> int:
        return max(1, len(self.by_label) // self.p)

    def batch_size(self) -> int:
        return min(self.p, len(self.by_label)) * self.k

    def indices(self) -> list[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 104729])
        ids = np.array(list(self.by_label))
        order = rng.permutation(ids)
        p = min(self.p, len(ids))
        out: list[int] = []
        for b in range(self.num_batches()):
            for label in order[b * p : (b + 1) * p]:
                pool = self.by_label[int(label)]
                pick = rng.choice(pool, size=self.k, replace=len(pool) < self.k)
                out.extend(int(i) for i in pick)
        return out

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        for slot, index in enumerate(self.indices()):
            yield index, self.epoch, slot

    def __len__(self) -> int:
        return self.num_batches() * self.batch_size()
