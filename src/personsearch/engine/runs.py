"""``personsearch train / infer / test`` without the argument parsing: the config a training run starts
from, and one inference run of a checkpoint over a dataset's test split (end-to-end or two-step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor

    from personsearch.data import PersonSearchData


def training_config(
    config: Path | None,
    overrides: Sequence[str] = (),
    *,
    resume: Path | None = None,
    weights: Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The merged config of a new run (``config`` plus ``overrides``; ``weights``: the ImageNet backbone
    file), or ``{}`` with ``resume`` (the run continues with its saved config). Combining ``resume`` with a
    config, overrides, weights or ``overwrite`` is a :class:`~personsearch.errors.ConfigError`."""
    from personsearch.config import load_config
    from personsearch.errors import ConfigError

    if resume and (config or overrides or weights):
        raise ConfigError(
            "--resume continues a run with its saved config; do not combine it with --config or overrides"
        )
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it; give one of them")
    if resume:
        return {}
    merged = list(overrides)
    if weights:
        merged.append(f"model.backbone.pretrained={weights}")
    return load_config(config, merged)


@dataclass
class InferenceRun:
    """One checkpoint over one dataset: the data, the arrays of a results file and, when asked for, the
    Re-ID-alone figures on ground-truth boxes by the same embedder."""

    data: PersonSearchData
    arrays: dict[str, np.ndarray]
    reid: dict[str, float] | None = None


@dataclass(frozen=True)
class InferenceOptions:
    """How to run inference: device, batch size, loader processes, progress bars; ``cbgm``: also detect in
    the query images; ``gt_reid``: also Re-ID alone on ground-truth boxes."""

    device: str = "auto"
    batch_size: int = 1
    workers: int = 2
    progress: bool = True
    cbgm: bool = False
    gt_reid: bool = False


class Embedder(Protocol):
    """What replaces the model's embeddings (the teacher in two-step,
    :class:`personsearch.distill.two_step.TeacherEmbedder`)."""

    def embed_detections(self, images: list[Tensor], outputs: list[dict[str, Tensor]]) -> list[Tensor]: ...

    def embed_boxes(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]: ...


#: Called with the model's device once the model and the data are loaded: the embedder to use, or None.
EmbedderLoader = Callable[["torch.device"], "Embedder | None"]


def infer_checkpoint(
    checkpoint: Path, dataset: str, root: Path, options: InferenceOptions, load_embedder: EmbedderLoader | None = None
) -> InferenceRun:
    """Load the model of ``checkpoint`` and the dataset, and run inference over its test split; the
    embedder of ``load_embedder`` (two-step) replaces the model's embeddings of detections and query boxes."""
    from personsearch.data import load_dataset
    from personsearch.engine.inference import gt_box_reid, run_inference
    from personsearch.engine.loading import load_trained_model

    model, _, device = load_trained_model(checkpoint, options.device)
    data = load_dataset(dataset, root)
    embedder = load_embedder(device) if load_embedder is not None else None
    embedders: dict[str, Any] = {}
    if embedder is not None:
        embedders = {"embed": embedder.embed_detections, "embed_boxes": embedder.embed_boxes}
    arrays = run_inference(
        model,
        data,
        device,
        options.batch_size,
        options.workers,
        options.progress,
        query_detections=options.cbgm,
        **embedders,
    )
    reid = None
    if options.gt_reid:
        reid = gt_box_reid(model, data, device, arrays["query_features"], options.workers, options.progress,
                           embed_boxes=embedders.get("embed_boxes"))  # fmt: skip
    return InferenceRun(data, arrays, reid)
