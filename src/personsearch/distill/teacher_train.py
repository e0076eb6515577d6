"""Training and evaluating the crop-based Re-ID teacher (``personsearch train-teacher``).

Loss: identity cross-entropy with label smoothing on the BN-neck logits + batch-hard triplet loss on the
pre-BN features. Evaluation: the crop-level Re-ID protocol on ground-truth boxes of
:mod:`personsearch.evaluation.crop_reid`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from personsearch.config import save_config
from personsearch.config_types import RunConfig, TeacherConfig
from personsearch.data import PersonSearchData, load_dataset
from personsearch.engine.checkpoint import save_checkpoint
from personsearch.engine.devices import resolve_device
from personsearch.engine.hooks import TrainHook
from personsearch.engine.loop import EpochLoop, RunLog, apply_gradients, eval_line, run_steps
from personsearch.engine.optim import build_optimizer, build_scheduler
from personsearch.engine.rng import seed_everything
from personsearch.errors import PersonSearchError
from personsearch.evaluation.crop_reid import crop_reid_metrics

from .sia import SIASettings
from .teacher import TeacherNet, TeacherSpec, build_teacher, teacher_checkpoint_state
from .teacher_data import (
    Crop,
    CropAugment,
    EvalCropSet,
    PKSampler,
    TeacherTrainSet,
    box_tuple,
    gallery_crops,
    training_crops,
)

TEACHER_FILE = "teacher.pth"


def batch_hard_triplet(features: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Batch-hard triplet loss (Hermans et al.): hardest positive and negative per anchor, Euclidean."""
    dist = torch.cdist(features, features, compute_mode="donot_use_mm_for_euclid_dist")
    same = labels[:, None] == labels[None, :]
    hardest_pos = dist.masked_fill(~same, 0.0).max(dim=1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(dim=1).values
    valid = torch.isfinite(hardest_neg)
    if not bool(valid.any()):
        return features.sum() * 0.0
    return F.relu(margin + hardest_pos[valid] - hardest_neg[valid]).mean()


def teacher_loss(net: TeacherNet, crops: Tensor, labels: Tensor, t: TeacherConfig) -> dict[str, Tensor]:
    """The weighted identity and triplet losses of one batch."""
    out = net(crops)
    loss_id = F.cross_entropy(out.logits, labels, label_smoothing=t.label_smoothing)
    loss_tri = batch_hard_triplet(out.features, labels, t.triplet_margin)
    return {"loss_id": t.id_weight * loss_id, "loss_triplet": t.triplet_weight * loss_tri}


def teacher_spec(config: RunConfig, num_classes: int) -> TeacherSpec:
    """The teacher network settings from a run's typed config."""
    t = config.teacher
    dim = t.embedding_dim if t.embedding_dim is not None else config.model.reid.embedding_dim
    return TeacherSpec(
        arch=t.arch,
        num_classes=num_classes,
        embedding_dim=dim,
        last_stride=t.last_stride,
        input_size=t.input_size,
        pixel_mean=t.pixel_mean,
        pixel_std=t.pixel_std,
        isa_alpha=t.isa_alpha if t.isa else 0.0,
        isa_dp=t.isa_dp if t.isa else 0.0,
    )


def crop_augment(t: TeacherConfig, spec: TeacherSpec) -> CropAugment:
    isa = SIASettings(spec.isa_alpha, spec.isa_dp, spec.input_size) if t.isa else None
    return CropAugment(
        input_size=spec.input_size,
        isa=isa,
        hflip_prob=t.hflip_prob,
        erase_prob=t.erase_prob,
        erase_area=t.erase_area,
        erase_ratio=t.erase_ratio,
        erase_value=spec.pixel_mean,
    )


@torch.no_grad()
def embed_crops(
    net: TeacherNet, crops: list[Crop], device: torch.device, batch_size: int = 64, progress: bool = False
) -> Tensor:
    """L2-normalised teacher embeddings ``[N, D]`` of exact-box crops (on the CPU)."""
    net.eval()
    loader = DataLoader(EvalCropSet(crops, net.spec.input_size), batch_size=batch_size, shuffle=False)
    feats = [torch.zeros(0, net.spec.embedding_dim)]
    for batch, _ in tqdm(loader, desc="crops", disable=not progress, dynamic_ncols=True):
        feats.append(net(batch.to(device)).embeddings.float().cpu())
    return torch.cat(feats)


def evaluate_teacher(
    net: TeacherNet, data: PersonSearchData, device: torch.device, batch_size: int = 64, progress: bool = False
) -> dict[str, float]:
    """The teacher alone as a Re-ID model on the test split's ground-truth crops."""
    queries = [Crop(Path(q.path), q.name, box_tuple(q.box), int(q.pid)) for q in data.queries]
    gallery = gallery_crops(data.gallery)
    qf = embed_crops(net, queries, device, batch_size, progress)
    gf = embed_crops(net, gallery, device, batch_size, progress)
    return crop_reid_metrics(
        qf,
        np.array([c.label for c in queries]),
        [c.image_name for c in queries],
        gf,
        np.array([c.label for c in gallery]),
        [c.image_name for c in gallery],
    )


class TeacherTrainer(EpochLoop):
    """Trains a teacher from a merged config on the engine's loop (devices, optimiser, schedule, log,
    checkpoints); writes ``teacher.pth``, ``log.txt`` and ``metrics.jsonl``."""

    def __init__(self, cfg: dict[str, Any], progress: bool = True, hooks: Sequence[TrainHook] = ()) -> None:
        self.cfg, self.progress, self.hooks = cfg, progress, list(hooks)  # cfg: the dict saved with the teacher
        self.config = RunConfig.from_dict(cfg)  # the typed view everything below reads
        t = self.config.teacher
        self.device = resolve_device(t.device, "teacher.device")
        seed_everything(t.seed)
        self.data = load_dataset(self.config.dataset.name, self.config.dataset.root)
        self.class_map = self.data.train_class_map()
        if not self.class_map:
            raise PersonSearchError("the training split has no labelled identity to train a teacher on")
        self.spec = teacher_spec(self.config, len(self.class_map))
        self.net = build_teacher(self.spec, t.pretrained).to(self.device)
        crops = training_crops(self.data.train, self.class_map)
        self.dataset = TeacherTrainSet(crops, crop_augment(t, self.spec), t.seed)
        self.sampler = PKSampler([c.label for c in crops], t.p, t.k, t.seed)
        self.optimizer = build_optimizer([p for p in self.net.parameters() if p.requires_grad], t, "teacher")
        self.scheduler = build_scheduler(self.optimizer, t, steps_per_epoch=1)  # stepped once per epoch
        self.run_dir = Path(self.config.output_dir)
        self.run_log = RunLog(self.run_dir)
        self.metrics: dict[str, float] | None = None

    def _loader(self) -> DataLoader:
        workers = self.config.teacher.workers
        return DataLoader(self.dataset, batch_size=self.sampler.batch_size(), sampler=self.sampler, num_workers=workers)

    def train_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, float]:
        crops, labels = batch
        self.call_before_step()
        losses = teacher_loss(self.net, crops.to(self.device), labels.to(self.device), self.config.teacher)
        loss = cast(Tensor, sum(losses.values()))
        apply_gradients(loss, self.optimizer)
        return {k: float(v.detach()) for k, v in {**losses, "loss": loss}.items()}

    def run_epoch(self, epoch: int) -> dict[str, float]:
        t = self.config.teacher
        self.sampler.set_epoch(epoch)
        self.net.train()
        total = self.sampler.num_batches()
        if t.max_iters_per_epoch > 0:
            total = min(total, t.max_iters_per_epoch)
        desc = f"teacher epoch {epoch + 1}/{t.epochs}"
        meter = run_steps(
            self._loader(), self.train_step, total, desc=desc, progress=self.progress, after_step=self.call_after_step
        )
        self.scheduler.step()
        return {k: v / max(total, 1) for k, v in meter.sums.items()}

    def save(self, epoch: int, metrics: dict[str, float] | None) -> Path:
        extra = {"config": self.cfg, "dataset": self.data.name, "epoch": epoch, "metrics": metrics}
        return save_checkpoint(teacher_checkpoint_state(self.net, self.class_map, extra), self.run_dir / TEACHER_FILE)

    def log(self, text: str, record: dict[str, Any] | None = None) -> None:
        self.run_log.line(text)
        if record is not None:
            self.run_log.record(record)

    def evaluate(self) -> dict[str, float]:
        t = self.config.teacher
        return evaluate_teacher(self.net, self.data, self.device, t.batch_size_eval, self.progress)

    def end_epoch(self, finished: int) -> None:
        """Evaluate when due (always after the last epoch), then save ``teacher.pth`` with the latest figures."""
        t = self.config.teacher
        epochs, period = t.epochs, t.eval_period
        last = finished == epochs
        if period >= 0 and (last or (period > 0 and finished % period == 0)):
            self.metrics = self.evaluate()
            self.log(eval_line(finished, self.metrics), {"epoch": finished, **self.metrics})
        self.save(finished, self.metrics)

    def train(self) -> tuple[Path, dict[str, float] | None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / "config.yaml")
        self.log(
            f"teacher {self.spec.arch} on {self.device}: {len(self.dataset)} crops, "
            f"{len(self.class_map)} identities, {self.sampler.num_batches()} PK batches/epoch"
        )
        self.run_epochs(0, self.config.teacher.epochs)
        return self.run_dir / TEACHER_FILE, self.metrics
