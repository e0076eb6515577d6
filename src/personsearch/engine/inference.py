"""Inference: gallery detections with embeddings, query embeddings from ground-truth boxes.

The output is the evaluation's results-file content (see ``docs/evaluation.md``): ``gallery_names``,
``det_image``, ``det_boxes`` (x1 y1 x2 y2, original pixels), ``det_scores``, ``det_features``,
``query_names`` and ``query_features``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from personsearch.data import PersonSearchData
from personsearch.data.torch_dataset import ImageListSet, collate
from personsearch.engine.rng import rng_state, set_rng_state

GalleryEmbedder = Callable[[list[torch.Tensor], list[dict[str, torch.Tensor]]], list[torch.Tensor]]


@contextlib.contextmanager
def preserved_rng():
    """Run a block without disturbing the RNG streams (keeps resumed training exact)."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _loader(paths: list, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(ImageListSet(paths), batch_size=batch_size, shuffle=False, collate_fn=collate,
                      num_workers=workers)


@torch.no_grad()
def detect_gallery(
    model: torch.nn.Module,
    data: PersonSearchData,
    device: torch.device,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    embed: GalleryEmbedder | None = None,
) -> dict[str, np.ndarray]:
    """Run the detector over every gallery image; ``embed`` may replace the model's own embeddings
    (the two-step pipeline re-embeds the detected crops with a separate Re-ID network)."""
    model.eval()
    det_image, boxes, scores, feats = [], [], [], []
    loader = _loader([r.path for r in data.gallery], batch_size, workers)
    for images, indices in tqdm(loader, desc="gallery", disable=not progress, dynamic_ncols=True):
        images = [img.to(device) for img in images]
        outputs = model(images)
        embeddings = embed(images, outputs) if embed else [o["embeddings"] for o in outputs]
        for index, out, emb in zip(indices, outputs, embeddings):
            n = len(out["boxes"])
            det_image.append(np.full(n, index, dtype=np.int64))
            boxes.append(out["boxes"].float().cpu().numpy())
            scores.append(out["scores"].float().cpu().numpy())
            feats.append(emb.float().cpu().numpy())
    dim = feats[0].shape[1] if feats else 0
    return {
        "gallery_names": np.array([r.name for r in data.gallery], dtype=str),
        "det_image": np.concatenate(det_image) if det_image else np.zeros(0, np.int64),
        "det_boxes": np.concatenate(boxes).astype(np.float32).reshape(-1, 4),
        "det_scores": np.concatenate(scores).astype(np.float32),
        "det_features": np.concatenate(feats).astype(np.float32).reshape(-1, dim),
    }


@torch.no_grad()
def embed_queries(
    model: torch.nn.Module,
    data: PersonSearchData,
    device: torch.device,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    embed_boxes: Callable[[list[torch.Tensor], list[torch.Tensor]], list[torch.Tensor]] | None = None,
) -> dict[str, np.ndarray]:
    """Embeddings of the ground-truth query boxes, in the dataset's query order."""
    model.eval()
    embed_boxes = embed_boxes or model.extract_query_features
    feats = []
    loader = _loader([q.path for q in data.queries], batch_size, workers)
    for images, indices in tqdm(loader, desc="queries", disable=not progress, dynamic_ncols=True):
        images = [img.to(device) for img in images]
        boxes = [torch.as_tensor(data.queries[i].box, dtype=torch.float32, device=device)[None] for i in indices]
        feats.extend(e.float().cpu().numpy() for e in embed_boxes(images, boxes))
    return {
        "query_names": np.array([q.name for q in data.queries], dtype=str),
        "query_features": np.concatenate(feats).astype(np.float32),
    }


def run_inference(
    model: torch.nn.Module,
    data: PersonSearchData,
    device: torch.device,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Gallery detections and query embeddings: the content of a results file."""
    with preserved_rng():
        return {
            **detect_gallery(model, data, device, batch_size, workers, progress),
            **embed_queries(model, data, device, batch_size, workers, progress),
        }


def evaluate_model(
    model: torch.nn.Module,
    data: PersonSearchData,
    cfg: dict[str, Any],
    device: torch.device,
    progress: bool = True,
) -> dict[str, Any]:
    """Inference + the evaluation protocol with the run's ``eval`` settings."""
    from personsearch.evaluation import evaluate, results_from_arrays

    arrays = run_inference(model, data, device, int(cfg["eval"]["batch_size"]), 0, progress)
    results = results_from_arrays(arrays, data)
    e = cfg["eval"]
    size = int(e["gallery_size"]) if data.name == "cuhk-sysu" else None
    return evaluate(data, results, gallery_size=size, det_thresh=float(e["det_thresh"]))
