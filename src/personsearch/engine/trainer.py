"""The training loop: one process or many (torchrun), CPU or CUDA, resumable exactly.

A run folder holds ``config.yaml`` (the merged configuration), ``last.pth`` and ``epoch_NNN.pth``
checkpoints (``last.pth`` a hard link to the newest epoch file when they hold the same state), ``log.txt``,
``metrics.jsonl`` (periodic evaluations) and TensorBoard event files.
Checkpoints store the model (OIM memory included), optimiser, scheduler, AMP scaler, the position in
training (epoch and iteration inside the epoch) and every RNG state, so ``--resume`` continues exactly
where the run stopped.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader

from personsearch.config import save_config
from personsearch.config_types import RunConfig
from personsearch.data import PersonSearchData, load_dataset
from personsearch.data.torch_dataset import EpochSampler, PersonSearchTrainSet, collate
from personsearch.engine.checkpoint import (
    LAST,
    epoch_checkpoint_name,
    link_checkpoint,
    load_checkpoint,
    prune_epoch_checkpoints,
    resolve_resume,
    save_checkpoint,
)
from personsearch.engine.devices import resolve_device
from personsearch.engine.distributed import barrier, init_distributed, reduce_mean, shutdown
from personsearch.engine.hooks import LossContributor, TrainHook
from personsearch.engine.loop import EpochLoop, RunLog, apply_gradients, eval_line, hooks_of_kind, run_steps
from personsearch.engine.optim import build_optimizer, build_scheduler
from personsearch.engine.rng import rng_state, seed_everything, set_rng_state
from personsearch.errors import PersonSearchError
from personsearch.models import TrainOutputs, build_model
from personsearch.outputs import check_run_folder, open_run_folder

#: The files of a previous run that ``--overwrite`` deletes (so old and new checkpoints never mix).
OVERWRITTEN = ("last.pth", "epoch_*.pth", "log.txt", "metrics.jsonl", "tensorboard/events.out.tfevents.*")


def autocast_context(amp: str | bool | None, device: torch.device):
    """Mixed precision on CUDA (``bf16`` or ``fp16``); a no-op on the CPU or with ``off``."""
    if amp in (None, "off", False):
        return contextlib.nullcontext()
    if amp not in ("bf16", "fp16"):
        raise PersonSearchError(f"train.amp={amp!r}: expected off, bf16 or fp16")
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def move_targets(targets: tuple[dict, ...], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def wrap_ddp(model: torch.nn.Module, device: torch.device, sync_bn: bool, find_unused: bool = False) -> torch.nn.Module:
    """DistributedDataParallel without per-step buffer broadcasts: the OIM memory is kept identical by
    the all-gather inside the loss; trainable BatchNorm statistics are synchronised with SyncBatchNorm on
    CUDA (``train.sync_bn``) and stay per-rank on the CPU (gloo has no SyncBatchNorm), where rank 0's are
    the ones checkpointed."""
    if sync_bn and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    sync: dict[str, Any] = {"broadcast_buffers": False}
    if "forward_sync_buffers" in inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters:
        sync = {"forward_sync_buffers": False}
    return torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused,
        **sync,
    )


@dataclass
class TrainState:
    """Where a run is: the next epoch and iteration inside it, and the global iteration count."""

    epoch: int = 0
    iteration: int = 0  # next iteration inside ``epoch``
    global_step: int = 0


class Trainer(EpochLoop):
    """Builds everything from a merged config and runs the epochs.

    ``hooks``: :class:`~personsearch.engine.hooks.TrainHook` objects called around training and every step;
    those that are :class:`~personsearch.engine.hooks.LossContributor` also take part in the loss (more can
    be added with :meth:`register` before :meth:`train`). A config naming a ``distill.teacher`` needs the
    distillation contributor: build such trainers with :func:`personsearch.distill.student_trainer`.
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        resume: str | Path | None = None,
        progress: bool = True,
        overwrite: bool = False,
        hooks: Sequence[TrainHook] = (),
    ):
        self.progress = progress
        self.hooks = list(hooks)
        self._resumed_rng: Any = None
        self.checkpoint_state = None
        if resume:
            checkpoint_path = resolve_resume(resume)
            self.checkpoint_state = load_checkpoint(checkpoint_path, kind="resume")
            self.resume_path = checkpoint_path
            cfg = dict(self.checkpoint_state["config"])
            cfg["output_dir"] = str(checkpoint_path.parent)  # the run folder may have moved
        self.cfg = cfg  # the plain dict: saved as config.yaml and in every checkpoint
        self.config = RunConfig.from_dict(cfg)  # the typed view everything below reads
        self.overwrite = overwrite and not resume
        if not resume:  # before any long work: a finished run is never silently overwritten
            check_run_folder(self.config.output_dir, ("config.yaml", LAST), overwrite)
        t = self.config.train
        wants_cuda = t.device.startswith("cuda") or (t.device == "auto" and torch.cuda.is_available())
        self.info = init_distributed("cuda" if wants_cuda else "cpu")
        local_rank = self.info.local_rank if self.info.enabled else None
        self.device = resolve_device(t.device, "train.device", local_rank)
        self.run_dir = Path(self.config.output_dir)
        self.run_log = RunLog(self.run_dir, self.info.is_main)
        self.amp = t.amp if self.device.type == "cuda" else "off"
        if t.amp not in ("off", None, False) and self.device.type != "cuda":
            warnings.warn("train.amp is only used on CUDA; training in fp32 on the CPU", stacklevel=2)

        seed_everything(t.seed)
        self.data: PersonSearchData = load_dataset(self.config.dataset.name, self.config.dataset.root)
        self.class_map = self.data.train_class_map()
        self.dataset = PersonSearchTrainSet(self.data.train, self.class_map, self.config.input.hflip_prob, t.seed)
        self.sampler = EpochSampler(len(self.dataset), t.seed, self.info.rank, self.info.world_size)
        self.batch_size = t.batch_size
        self.iters_per_epoch = math.ceil(self.sampler.per_rank() / self.batch_size)
        if t.max_iters_per_epoch > 0:
            self.iters_per_epoch = min(self.iters_per_epoch, t.max_iters_per_epoch)

        self.model = build_model(self.config.model, num_classes=len(self.class_map)).to(self.device)
        self.ddp_model: torch.nn.Module = self.model
        if self.info.enabled:
            self.ddp_model = wrap_ddp(self.model, self.device, t.sync_bn, t.find_unused_parameters)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(params, t, "train")
        self.scheduler = build_scheduler(self.optimizer, t, self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.state = TrainState()
        self.writer: Any = None  # a SummaryWriter once training starts (train.tensorboard)
        if self.checkpoint_state is not None:
            self._restore(self.checkpoint_state)

    # ---- checkpoints -------------------------------------------------------------------------------
    def _restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from ``ckpt``; one that does not fit this run (another dataset's identities, weights
        that do not match the config saved in it, a damaged optimiser state) is a one-line error."""
        from personsearch.engine.loading import check_identities, load_weights

        path = getattr(self, "resume_path", "to resume from")
        check_identities(path, ckpt, self.class_map, self.config.dataset.root)
        load_weights(self.model, ckpt["model"], path)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            self.state = TrainState(**ckpt["train_state"])
            # set now, and again when training starts: hooks built after the trainer (a teacher's random
            # initialisation) then consume no randomness of the resumed run
            self._resumed_rng = ckpt.get("rng", {}).get(self.info.rank)
            if self._resumed_rng is not None:
                set_rng_state(self._resumed_rng)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise PersonSearchError(
                f"checkpoint {path}: its training state does not fit this run ({exc.__class__.__name__}: {first})"
            ) from None

    def checkpoint(self, name: str) -> None:
        """Save on rank 0 (RNG states of every rank are gathered into the file)."""
        states: list[Any] = [None] * self.info.world_size
        if self.info.enabled:
            torch.distributed.all_gather_object(states, rng_state())
        else:
            states = [rng_state()]
        if not self.info.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "train_state": vars(self.state).copy(),
            "rng": dict(enumerate(states)),
            "config": self.cfg,
            "num_classes": len(self.class_map),
            "class_map": self.class_map,
            "dataset": self.data.name,
        }
        save_checkpoint(state, self.run_dir / name)
        if name != LAST:
            link_checkpoint(self.run_dir / name, self.run_dir / LAST)
            prune_epoch_checkpoints(self.run_dir, self.config.train.keep_checkpoints)

    # ---- logging -----------------------------------------------------------------------------------
    def _open_writer(self) -> None:
        if not (self.info.is_main and self.config.train.tensorboard):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("tensorboard is not installed; scalars are written to log.txt only", stacklevel=2)
            return
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, text: str) -> None:
        self.run_log.line(text)

    @property
    def contributors(self) -> list[LossContributor]:
        return hooks_of_kind(self.hooks, LossContributor)

    # ---- the loop ----------------------------------------------------------------------------------
    def forward_losses(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        """The model's losses, scaled by the contributors' factors, plus the contributors' own terms."""
        contributors = self.contributors
        if not contributors:
            return self.ddp_model(images, targets)
        asked = [(c, c.extra_boxes(images, targets)) for c in contributors]
        extra = [(c, boxes) for c, boxes in asked if boxes is not None]
        if len(extra) > 1:
            raise PersonSearchError(f"two loss contributors ask for extra boxes: {', '.join(c.name for c, _ in extra)}")
        extra_boxes = extra[0][1] if extra else None
        scales = {c.reid_backbone_grad for c in contributors if c.reid_backbone_grad < 1}
        if len(scales) > 1:
            raise PersonSearchError(f"loss contributors ask for different Re-ID backbone gradients: {sorted(scales)}")
        losses, outputs = self.ddp_model(
            images, targets, extra_boxes=extra_boxes, return_outputs=True, reid_grad_scale=min(scales, default=1.0)
        )
        assert isinstance(outputs, TrainOutputs)
        added: dict[str, torch.Tensor] = {}
        for c in contributors:
            added.update(c.losses(images, targets, outputs))
        for c in contributors:
            for key, factor in c.loss_factors().items():
                losses[key] = losses[key] * factor
        return {**losses, **added}

    def train_step(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, float]:
        t = self.config.train
        self.call_before_step()
        with autocast_context(self.amp, self.device):
            losses = self.forward_losses(images, targets)
        weights = t.loss_weights
        loss = cast(torch.Tensor, sum(weights.get(k, 1.0) * v for k, v in losses.items()))
        if not torch.isfinite(loss):
            values = ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items())
            raise PersonSearchError(
                f"training diverged at step {self.state.global_step} (loss {float(loss)}: {values}); "
                "lower train.lr or enable gradient clipping"
            )
        apply_gradients(loss, self.optimizer, self.scaler, t.clip_grad_norm or 0.0, self.model.parameters())
        self.scheduler.step()
        logs = {k: float(v.detach()) for k, v in losses.items()}
        logs["loss"] = float(loss.detach())
        return logs

    def _loader(self) -> DataLoader:
        generator = torch.Generator()
        generator.manual_seed(self.config.train.seed + self.state.epoch)
        workers = self.config.train.workers
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            collate_fn=collate,
            num_workers=workers,
            generator=generator,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def run_epoch(self, epoch: int) -> dict[str, float]:
        self.sampler.set_epoch(epoch, start=self.state.iteration * self.batch_size)
        self.model.train()
        checkpoint_iters = self.config.train.checkpoint_iters

        def step(batch: tuple) -> dict[str, float]:
            images, targets = batch
            images = [img.to(self.device, non_blocking=True) for img in images]
            return self.train_step(images, move_targets(targets, self.device))

        def after_step(logs: Mapping[str, float]) -> None:
            self.state.iteration += 1
            self.state.global_step += 1
            if self.writer is not None:
                for k, v in logs.items():
                    self.writer.add_scalar(f"train/{k}", v, self.state.global_step)
                self.writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.state.global_step)
            every = checkpoint_iters and self.state.global_step % checkpoint_iters == 0
            if every and self.state.iteration < self.iters_per_epoch:
                self.checkpoint(LAST)
            self.call_after_step(logs)

        def postfix(logs: Mapping[str, float]) -> dict[str, str]:
            lr = self.optimizer.param_groups[0]["lr"]
            return {"loss": f"{logs['loss']:.3f}", "oim": f"{logs.get('loss_oim', 0):.3f}", "lr": f"{lr:.2e}"}

        meter = run_steps(
            self._loader(),
            step,
            total=self.iters_per_epoch,
            start=self.state.iteration,
            desc=f"epoch {epoch + 1}/{self.config.train.epochs}",
            progress=self.progress and self.info.is_main,
            postfix=postfix,
            after_step=after_step,
        )
        means = meter.means()
        return reduce_mean(means, self.info, self.device) if meter.count else means

    def evaluate(self) -> dict[str, Any] | None:
        """Evaluate on the test split (rank 0); other ranks wait."""
        metrics = None
        if self.info.is_main:
            from personsearch.engine.inference import evaluate_model

            metrics = evaluate_model(self.model, self.data, self.config.eval, self.device, progress=self.progress)
            self.run_log.record({"epoch": self.state.epoch, "step": self.state.global_step, **metrics})
            if self.writer is not None:
                for k, v in metrics.get("search", {}).items():
                    self.writer.add_scalar(f"eval/{k}", v, self.state.global_step)
        barrier(self.info)
        return metrics

    def end_epoch(self, finished: int) -> None:
        t = self.config.train
        epochs, eval_period = t.epochs, t.eval_period
        self.state = TrainState(finished, 0, self.state.global_step)
        if finished % t.checkpoint_period == 0 or finished == epochs:
            self.checkpoint(epoch_checkpoint_name(finished))
        due = eval_period > 0 and finished % eval_period == 0
        if eval_period >= 0 and (due or finished == epochs):
            metrics = self.evaluate()
            if metrics is not None:
                self.log(eval_line(finished, metrics["search"]))

    def _check_contributors(self) -> None:
        """A config naming a teacher without the distillation contributor would silently train without it."""
        if self.config.distill.teacher and not any(c.name == "distillation" for c in self.contributors):
            raise PersonSearchError(
                "distill.teacher is set but this trainer has no distillation contributor; "
                "build it with personsearch.distill.student_trainer(cfg)"
            )

    def _start_log(self) -> None:
        setup = [f"amp {self.amp}"]
        if self.info.enabled:
            sync_bns = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in self.ddp_model.modules())
            setup += [f"backend {torch.distributed.get_backend()}", f"{sync_bns} SyncBatchNorm layers"]
        resumed = f", resumed at epoch {self.state.epoch + 1} iteration {self.state.iteration}"
        self.log(
            f"training on {self.device} x{self.info.world_size} ({', '.join(setup)}): {len(self.dataset)} images, "
            f"{len(self.class_map)} identities, {self.iters_per_epoch} iterations/epoch"
            + (resumed if self.checkpoint_state else "")
        )

    def train(self) -> Path:
        self._check_contributors()
        if self.info.is_main:
            open_run_folder(self.run_dir, OVERWRITTEN if self.overwrite else ())  # and kill leftovers removed
            save_config(self.cfg, self.run_dir / "config.yaml")
            self._open_writer()
            self._start_log()
        barrier(self.info)
        if self._resumed_rng is not None:
            set_rng_state(self._resumed_rng)
        try:
            self.run_epochs(self.state.epoch, self.config.train.epochs)
        finally:
            if self.writer is not None:
                self.writer.close()
            shutdown(self.info)
        return self.run_dir
