"""The training loop shared by the student (:class:`~personsearch.engine.trainer.Trainer`) and the crop
teacher (:class:`~personsearch.distill.teacher_train.TeacherTrainer`): epochs of optimisation steps with a
progress bar, the per-epoch loss means in ``log.txt``, evaluations in ``metrics.jsonl``, and hooks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from personsearch.engine.hooks import TrainHook


class RunLog:
    """Appends to a run folder's ``log.txt`` (text lines) and ``metrics.jsonl`` (one JSON record a line);
    does nothing when not ``enabled`` (ranks other than 0)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled

    def line(self, text: str) -> None:
        self._append("log.txt", text)

    def record(self, record: Mapping[str, Any]) -> None:
        self._append("metrics.jsonl", json.dumps(record))

    def _append(self, name: str, text: str) -> None:
        if self.enabled:
            with open(self.run_dir / name, "a") as handle:
                handle.write(text + "\n")


def epoch_line(epoch: int, means: Mapping[str, float], seconds: float) -> str:
    """``epoch N: loss=... (S s)``: the line each finished epoch leaves in ``log.txt``."""
    losses = ", ".join(f"{k}={v:.4f}" for k, v in sorted(means.items()))
    return f"epoch {epoch}: {losses} ({seconds:.0f} s)"


def eval_line(epoch: int, metrics: Mapping[str, float]) -> str:
    return f"epoch {epoch} eval: mAP={metrics['mAP']:.4f} top1={metrics['top1']:.4f}"


def apply_gradients(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    clip_grad_norm: float = 0.0,
    params: Iterable[torch.nn.Parameter] = (),
) -> None:
    """One optimisation step: backward (through the AMP ``scaler`` when given), optional gradient-norm
    clipping of ``params``, optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        if clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(list(params), clip_grad_norm)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if clip_grad_norm:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(list(params), clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()


class LossMeans:
    """Running sums of per-step logged values; ``means()`` over the steps added."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, logs: Mapping[str, float]) -> None:
        self.count += 1
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


def run_steps(
    batches: Iterable[Any],
    step: Callable[[Any], dict[str, float]],
    total: int,
    start: int = 0,
    desc: str = "",
    progress: bool = True,
    postfix: Callable[[Mapping[str, float]], Mapping[str, str]] | None = None,
    after_step: Callable[[Mapping[str, float]], None] | None = None,
) -> LossMeans:
    """Call ``step`` on batches until the epoch's step ``total`` (counting from ``start``: a resumed epoch),
    with a progress bar; ``after_step`` sees each step's logs. The per-step logs are averaged."""
    bar = tqdm(total=total, initial=start, desc=desc, disable=not progress, dynamic_ncols=True, leave=True)
    meter = LossMeans()
    position = start
    for batch in batches:
        if position >= total:
            break
        logs = step(batch)
        position += 1
        meter.add(logs)
        shown = postfix(logs) if postfix else {"loss": f"{logs['loss']:.3f}"}
        bar.set_postfix(dict(sorted(shown.items())))  # as set_postfix(**shown) shows them: by name
        bar.update(1)
        if after_step is not None:
            after_step(logs)
    bar.close()
    return meter


class EpochLoop:
    """The epoch skeleton: subclasses implement :meth:`run_epoch` (one epoch's steps -> loss means) and
    :meth:`end_epoch` (checkpoints, evaluations); the loop times and logs each epoch and calls the hooks."""

    run_log: RunLog
    hooks: list[TrainHook]

    def run_epoch(self, epoch: int) -> dict[str, float]:
        raise NotImplementedError

    def end_epoch(self, finished: int) -> None:
        """After epoch ``finished`` (1-based) was logged."""

    def register(self, *hooks: TrainHook) -> None:
        self.hooks.extend(hooks)

    def run_epochs(self, first: int, epochs: int) -> None:
        """Epochs ``first`` .. ``epochs - 1`` (0-based), with ``before_train`` / ``after_train`` around them."""
        for hook in self.hooks:
            hook.before_train(self)
        try:
            for epoch in range(first, epochs):
                start = time.perf_counter()
                means = self.run_epoch(epoch)
                self.run_log.line(epoch_line(epoch + 1, means, time.perf_counter() - start))
                self.end_epoch(epoch + 1)
        finally:
            for hook in self.hooks:
                hook.after_train(self)

    def call_before_step(self) -> None:
        for hook in self.hooks:
            hook.before_step(self)

    def call_after_step(self, logs: Mapping[str, float]) -> None:
        for hook in self.hooks:
            hook.after_step(self, logs)


def hooks_of_kind(hooks: Sequence[TrainHook], kind: type) -> list[Any]:
    """The hooks that are instances of ``kind`` (e.g. the loss contributors), in order."""
    return [h for h in hooks if isinstance(h, kind)]
