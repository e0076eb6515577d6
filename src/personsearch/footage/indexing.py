"""``personsearch index build / update`` without the argument parsing: what an update re-indexes (from the
index's recorded settings), and one build run, sharded over the processes of ``torchrun``.

:func:`personsearch.footage.builder.build_index` does the indexing; this module picks its inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personsearch.errors import PersonSearchError


@dataclass(frozen=True)
class BuildJob:
    """What to index: the index folder, its sources, the model and the sampling (fps, detection threshold)."""

    out: Path
    sources: list[str]
    checkpoint: Path
    fps: float
    det_thresh: float


@dataclass(frozen=True)
class BuildOptions:
    """How to run a build: the device and backend of the model, the batch size, the progress bar, and the
    search options recorded in the index (None: the recorded or default ones)."""

    device: str = "auto"
    backend: str = "torch"
    batch_size: int = 4
    progress: bool = True
    index_type: str | None = None
    ef_search: int | None = None
    nprobe: int | None = None

    def build_kwargs(self) -> dict[str, Any]:
        """The batch size, progress bar and search options as :func:`~personsearch.footage.builder.build_index`
        takes them."""
        search = {"index_type": self.index_type, "ef_search": self.ef_search, "nprobe": self.nprobe}
        return {"batch_size": self.batch_size, "progress": self.progress, **search}


def update_job(
    index: Path,
    sources: Sequence[str | os.PathLike[str]] = (),
    add: Sequence[str | os.PathLike[str]] = (),
    checkpoint: Path | None = None,
    fps: float | None = None,
    det_thresh: float | None = None,
) -> BuildJob:
    """The job bringing ``index`` up to date: ``sources`` (default: the recorded ones) plus ``add``, and the
    recorded checkpoint, fps and detection threshold unless given. An index that does not exist, or that
    records no sources or checkpoint when none are given, is a :class:`PersonSearchError`."""
    from personsearch.footage.builder import read_meta_of

    meta = read_meta_of(index)
    if meta is None:
        if not index.exists():
            raise PersonSearchError(f"gallery index {index} does not exist (build one with personsearch index build)")
        raise PersonSearchError(f"{index} is not a gallery index: it holds no index.sqlite")
    chosen = [str(s) for s in sources] or list(meta.get("sources") or [])
    chosen += [str(s) for s in add]
    if not chosen:
        raise PersonSearchError(f"index {index} records no sources; give SOURCES")
    if checkpoint is None:
        checkpoint = _recorded_checkpoint(index, meta)
    fps = fps if fps is not None else float(meta.get("fps") or 1.0)
    det = det_thresh if det_thresh is not None else meta.get("det_thresh")
    return BuildJob(index, chosen, checkpoint, fps, 0.5 if det is None else float(det))


def _recorded_checkpoint(index: Path, meta: dict[str, Any]) -> Path:
    if not meta.get("checkpoint"):
        raise PersonSearchError(f"index {index} records no checkpoint; give --checkpoint")
    checkpoint = Path(meta["checkpoint"])
    if not checkpoint.exists():  # a checkpoint file, or an exported model's folder
        raise PersonSearchError(
            f"index {index} was built with checkpoint {checkpoint}, which does not exist; give --checkpoint"
        )
    return checkpoint


def _rank_device(device: str) -> str:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): join the process group; this rank's device (its own GPU when
    CUDA is used). Otherwise ``device`` unchanged."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    import torch

    from personsearch.engine.distributed import init_distributed

    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    info = init_distributed("cuda" if use_cuda else "cpu")
    return f"cuda:{info.local_rank}" if use_cuda else device


def run_build_job(job: BuildJob, options: BuildOptions) -> dict[str, Any]:
    """Index ``job`` (:func:`~personsearch.footage.builder.build_index`); returns its summary. Rank 0 first
    runs every check that needs no model, before the model loads. Under ``torchrun`` each process indexes
    its shard; the summary of a rank other than 0 has a non-zero ``rank``."""
    from personsearch.export.runtime import model_id as model_id_of
    from personsearch.footage.builder import build_index, preflight
    from personsearch.footage.searcher import Searcher

    model_id = model_id_of(job.checkpoint)
    scan = None
    if int(os.environ.get("RANK", "0")) == 0:  # every check that needs no model, before loading it
        scan = preflight(job.out, job.sources, model_id, None, job.fps, job.det_thresh, f"checkpoint {job.checkpoint}")
    device = _rank_device(options.device)
    searcher = Searcher.from_checkpoint(job.checkpoint, device, det_thresh=job.det_thresh, backend=options.backend)
    return build_index(
        searcher,
        job.out,
        job.sources,
        fps=job.fps,
        checkpoint=str(job.checkpoint),
        det_thresh=job.det_thresh,
        scan=scan,
        **options.build_kwargs(),
    )
