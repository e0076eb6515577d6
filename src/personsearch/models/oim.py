"""Online instance matching (OIM) loss: a lookup table of labelled identities plus a circular queue.

Labels: ``0..K-1`` for labelled identities, ``-1`` (:data:`personsearch.data.annotations.UNLABELED`, or any
negative value) for unlabelled people.
The memory (``lut`` [K, D], ``cq`` [Q, D], ``cq_ptr``) is stored as buffers, so it is saved with the
model. All memory math runs in fp32 with autocast disabled. When ``torch.distributed`` is
initialised, the features and labels of every rank are gathered before the memory update, so the
memory stays identical on every rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

#: How the lookup table starts. ``zeros`` (the reference OIM): no gradient until rows are written, and then
#: only within the span of the stored features, so an embedding that starts collapsed (random weights) stays
#: in a few directions. ``random``: random unit rows, a full-rank target from the first iteration.
LUT_INITS = ("zeros", "random")


def _distributed_world() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _gather_rows(tensor: Tensor, sizes: list[int]) -> Tensor:
    """All-gather ``tensor`` (rows may differ per rank: padded to the largest count, then cut)."""
    max_rows = max(sizes)
    padded = tensor.new_zeros((max_rows, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    chunks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded)
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, sizes)], dim=0)


def gather_features_and_labels(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Features and labels of every rank, in rank order (identity when not distributed)."""
    world = _distributed_world()
    if world == 1:
        return features, labels
    count = torch.tensor([features.shape[0]], device=features.device, dtype=torch.long)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    if max(sizes) == 0:
        return features, labels
    return _gather_rows(features, sizes), _gather_rows(labels, sizes)


def _labelled_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over rows with a label >= 0; a zero in the graph when there is none."""
    labelled = labels >= 0
    if not bool(labelled.any()):  # cross-entropy averaging over nothing would be NaN
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled], labels[labelled])


class OIMLoss(nn.Module):
    """OIM loss with LUT momentum update and a circular queue of unlabelled features."""

    lut: Tensor
    cq: Tensor
    cq_ptr: Tensor

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        queue_size: int = 5000,
        scalar: float = 30.0,
        momentum: float = 0.5,
        lut_init: str = "zeros",
        classifier_weight: float = 0.0,
        memory_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"OIM needs at least one labelled identity, got num_classes={num_classes}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.num_features = num_features
        self.num_classes = num_classes
        self.queue_size = queue_size
        self.scalar = float(scalar)
        self.momentum = float(momentum)
        if lut_init not in LUT_INITS:
            raise ValueError(f"lut_init must be one of {LUT_INITS}, got {lut_init!r}")
        self.classifier_weight = float(classifier_weight)
        self.memory_weight = float(memory_weight)
        if self.memory_weight <= 0 and self.classifier_weight <= 0:
            raise ValueError("OIM needs memory_weight > 0 or classifier_weight > 0 (no Re-ID loss otherwise)")
        lut = torch.zeros(num_classes, num_features)
        if lut_init == "random":  # full-rank memory from the start (see LUT_INITS)
            lut = F.normalize(torch.randn(num_classes, num_features), dim=1)
        self.register_buffer("lut", lut)
        # Optional learnable cosine classifier over the labelled identities (see ``forward``).
        self.classifier = (
            nn.Parameter(F.normalize(torch.randn(num_classes, num_features), dim=1)) if classifier_weight > 0 else None
        )
        self.register_buffer("cq", torch.zeros(queue_size, num_features))
        self.register_buffer("cq_ptr", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"num_features={self.num_features}, num_classes={self.num_classes}, "
            f"queue_size={self.queue_size}, scalar={self.scalar}, momentum={self.momentum}, "
            f"memory_weight={self.memory_weight}, classifier_weight={self.classifier_weight}"
        )

    def logits(self, features: Tensor) -> Tensor:
        """Scaled similarities [N, K + Q] to the LUT and the queue (fp32; memory is a constant)."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            memory = torch.cat([self.lut, self.cq], dim=0).detach().clone()
            return self.scalar * features.float() @ memory.t()

    def class_probabilities(self, features: Tensor) -> Tensor:
        """p = softmax(scalar * f . LUT^T) over the K labelled identities (fp32, differentiable in f)."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            lut = self.lut.detach().clone()
            return F.softmax(self.scalar * features.float() @ lut.t(), dim=1)

    def forward(self, features: Tensor, labels: Tensor, update: bool | None = None) -> Tensor:
        """``memory_weight`` x the cross-entropy over [LUT; CQ] logits, ignoring unlabelled targets, plus
        ``classifier_weight`` x that of the learnable cosine classifier (when enabled); then update the memory
        (also with ``memory_weight`` 0: the LUT still gives the class probabilities distillation uses).

        ``update`` defaults to ``self.training``. When every target is unlabelled (or there are no
        rows) the loss is a zero that still belongs to the graph, so ``backward`` works.
        """
        labels = labels.to(device=features.device, dtype=torch.long)
        loss = self.memory_weight * _labelled_cross_entropy(self.logits(features), labels)
        if self.classifier is not None:
            # The OIM gradient lies in the span of the memory (past features); a learnable classifier's does
            # not, which lets an embedding that starts in a few directions spread out.
            with torch.autocast(device_type=features.device.type, enabled=False):
                weights = F.normalize(self.classifier.float(), dim=1)
                class_logits = self.scalar * features.float() @ weights.t()
            loss = loss + self.classifier_weight * _labelled_cross_entropy(class_logits, labels)
        if self.training if update is None else update:
            self.update_memory(features, labels)
        return loss

    @torch.no_grad()
    def update_memory(self, features: Tensor, labels: Tensor) -> None:
        """LUT momentum update for labelled rows, queue push for unlabelled rows (all ranks gathered)."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            feats = F.normalize(features.detach().float(), dim=1)
            feats, labels = gather_features_and_labels(feats, labels.to(feats.device, torch.long))
            self._update_lut(feats[labels >= 0], labels[labels >= 0])
            self._push_queue(feats[labels < 0])

    def _update_lut(self, feats: Tensor, labels: Tensor) -> None:
        # Sequential, so repeated identities in one batch compound exactly as one-by-one updates.
        m = self.momentum
        for f, y in zip(feats, labels.tolist()):
            if y >= self.num_classes:
                raise ValueError(f"identity label {y} out of range for a LUT of {self.num_classes}")
            self.lut[y] = F.normalize(m * self.lut[y] + (1.0 - m) * f, dim=0)

    def _push_queue(self, feats: Tensor) -> None:
        q = self.queue_size
        n = feats.shape[0]
        if q == 0 or n == 0:
            return
        ptr = int(self.cq_ptr)
        if n > q:  # only the newest q survive
            ptr = (ptr + n - q) % q
            feats = feats[-q:]
        idx = (ptr + torch.arange(feats.shape[0], device=feats.device)) % q
        self.cq[idx] = feats
        self.cq_ptr.fill_((ptr + feats.shape[0]) % q)
