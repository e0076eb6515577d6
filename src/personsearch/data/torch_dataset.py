"""PyTorch datasets and samplers over :class:`ImageRecord` lists.

Training augmentation is a function of ``(seed, epoch, index)`` only (never of a worker's RNG), and the
sampler's order is a function of ``(seed, epoch)``: a run resumed from a checkpoint therefore sees exactly
the images, in the order and with the flips, that the uninterrupted run saw, whatever the number of data
workers or processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from personsearch.data.annotations import UNLABELED, ImageRecord
from personsearch.data.images import load_image
from personsearch.data.validation import check_boxes_fit


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``[3, H, W]`` float in ``0..1``."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def hflip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror ``x1 y1 x2 y2`` boxes in an image of the given width."""
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def flip_decision(seed: int, epoch: int, index: int, prob: float) -> bool:
    """Whether image ``index`` is flipped in ``epoch``; reproducible without any shared RNG state."""
    if prob <= 0:
        return False
    return bool(np.random.default_rng([seed, epoch, index]).random() < prob)


class PersonSearchTrainSet(Dataset):
    """Training images with targets ``{"boxes", "labels"}``; labels are class indices or ``-1``.

    Items are addressed by ``(index, epoch)`` pairs (see :class:`EpochSampler`) so the flip of an image
    depends only on the seed, the epoch and the index.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_map: dict[int, int],
        hflip_prob: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        self.class_map = class_map
        self.hflip_prob = hflip_prob
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def labels_of(self, record: ImageRecord) -> np.ndarray:
        return np.array([self.class_map.get(int(p), UNLABELED) for p in record.pids], dtype=np.int64)

    def __getitem__(self, item: tuple[int, int] | int) -> tuple[torch.Tensor, dict]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        record = self.records[index]
        image = load_image(record.path)
        check_boxes_fit(record.path, record.boxes, image.shape[1], image.shape[0], "annotation box")
        boxes = record.boxes.astype(np.float32)
        if flip_decision(self.seed, epoch, index, self.hflip_prob):
            image = image[:, ::-1]
            boxes = hflip_boxes(boxes, image.shape[1])
        target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(self.labels_of(record)),
            "image_name": record.name,
        }
        return image_to_tensor(image), target


class ImageListSet(Dataset):
    """Images for inference: returns ``(image tensor, index)``.

    With ``boxes`` (one ``(N, 4)`` x1 y1 x2 y2 array per image: its annotations or its query box), an
    image that does not match its boxes (a box outside it, or far past its edge) is a one-line error.
    """

    def __init__(self, paths: Sequence, boxes: Sequence | None = None, what: str = "annotation box") -> None:
        self.paths = list(paths)
        self.boxes = None if boxes is None else list(boxes)
        self.what = what

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.paths[index])
        if self.boxes is not None:
            check_boxes_fit(self.paths[index], self.boxes[index], image.shape[1], image.shape[0], self.what)
        return image_to_tensor(image), index


class EpochSampler(Sampler):
    """Shuffled ``(index, epoch)`` pairs, seeded by ``(seed, epoch)``, sharded over ``world_size`` ranks.

    Every rank gets the same number of items (the permutation is padded by wrapping around, as
    ``DistributedSampler`` does). ``start`` skips the first items of this rank's share, to resume inside
    an epoch.
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.seed, self.rank, self.world_size, self.shuffle = size, seed, rank, world_size, shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def per_rank(self) -> int:
        return -(-self.size // self.world_size)

    def indices(self) -> list[int]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 7919]).permutation(self.size)
        else:
            order = np.arange(self.size)
        total = self.per_rank() * self.world_size
        order = np.resize(order, total)  # wrap around to equal shares
        return [int(i) for i in order[self.rank : total : self.world_size]]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices()[self.start :]:
            yield index, self.epoch

    def __len__(self) -> int:
        return self.per_rank() - self.start


def collate(batch: list) -> tuple:
    """Keep images and targets as lists (detection models take variable-size images)."""
    return tuple(zip(*batch))
