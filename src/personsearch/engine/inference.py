"""Inference: gallery detections with embeddings, query embeddings from ground-truth boxes.

The output is the evaluation's results-file content (see ``docs/evaluation.md``): ``gallery_names``,
``det_image``, ``det_boxes`` (x1 y1 x2 y2, original pixels), ``det_scores``, ``det_features``,
``query_names`` and ``query_features``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.ops import boxes as box_ops
from tqdm import tqdm

from personsearch.config_types import EvalConfig
from personsearch.data import PersonSearchData
from personsearch.data.torch_dataset import ImageListSet, collate
from personsearch.engine.rng import rng_state, set_rng_state

# (images, detector outputs) -> one embedding matrix per image; replaces the model's own embeddings
GalleryEmbedder = Callable[[list[torch.Tensor], list[dict[str, torch.Tensor]]], list[torch.Tensor]]
# (images, boxes per image) -> one embedding matrix per image
BoxEmbedder = Callable[[list[torch.Tensor], list[torch.Tensor]], list[torch.Tensor]]


@contextlib.contextmanager
def preserved_rng():
    """Run a block without disturbing the RNG streams (keeps resumed training exact)."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _model_box_embedder(model: torch.nn.Module | None) -> BoxEmbedder:
    """The model's own embedder of given boxes (eval mode); a model is needed when no embedder is given."""
    if model is None:
        raise ValueError("either a model or a box embedder is needed")
    model.eval()
    return cast(BoxEmbedder, model.extract_query_features)


def _loader(paths: list, batch_size: int, workers: int, boxes: list | None = None, what: str = "box") -> DataLoader:
    """Images in order; each is checked against its ``boxes`` (an image that does not match them is an error)."""
    return DataLoader(
        ImageListSet(paths, boxes, what), batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=workers
    )


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
    loader = _loader([r.path for r in data.gallery], batch_size, workers, [r.boxes for r in data.gallery])
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
    model: torch.nn.Module | None,
    data: PersonSearchData,
    device: torch.device,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    embed_boxes: BoxEmbedder | None = None,
) -> dict[str, np.ndarray]:
    """Embeddings of the ground-truth query boxes, in the dataset's query order."""
    embed_boxes = embed_boxes or _model_box_embedder(model)
    feats: list[np.ndarray] = []
    loader = _loader(
        [q.path for q in data.queries], batch_size, workers, [q.box[None] for q in data.queries], "query box"
    )
    for images, indices in tqdm(loader, desc="queries", disable=not progress, dynamic_ncols=True):
        images = [img.to(device) for img in images]
        boxes = [torch.as_tensor(data.queries[i].box, dtype=torch.float32, device=device)[None] for i in indices]
        feats.extend(e.float().cpu().numpy() for e in embed_boxes(images, boxes))
    return {
        "query_names": np.array([q.name for q in data.queries], dtype=str),
        "query_features": np.concatenate(feats).astype(np.float32),
    }


@torch.no_grad()
def detect_query_images(
    model: torch.nn.Module,
    data: PersonSearchData,
    device: torch.device,
    workers: int = 0,
    progress: bool = True,
    nms_thresh: float = 0.5,
    embed: GalleryEmbedder | None = None,
    embed_boxes: BoxEmbedder | None = None,
) -> dict[str, np.ndarray]:
    """CBGM context (docs/evaluation.md): each query image run as a gallery image, its ground-truth query box forced
    in as the first row (score 1.0), NMS at ``nms_thresh``, rows in score order, embeddings without
    score weighting. ``embed``/``embed_boxes`` replace the model's embeddings (two-step pipeline)."""
    model.eval()
    embed_boxes = embed_boxes or _model_box_embedder(model)
    index, boxes, scores, feats = [], [], [], []
    loader = _loader([q.path for q in data.queries], 1, workers, [q.box[None] for q in data.queries], "query box")
    for images, indices in tqdm(loader, desc="query images", disable=not progress, dynamic_ncols=True):
        images = [img.to(device) for img in images]
        q = int(indices[0])
        det = model(images)[0]
        gt_box = torch.as_tensor(data.queries[q].box, dtype=torch.float32, device=device)[None]
        gt_feat = embed_boxes(images, [gt_box])[0]
        if embed is not None:
            det_feat = embed(images, [det])[0]
        else:
            det_feat = det["embeddings"]
            if getattr(model, "score_weighted_embeddings", False):
                det_feat = det_feat / det["scores"].clamp(min=1e-6)[:, None]
        all_boxes = torch.cat([gt_box, det["boxes"].float()])
        ranking = torch.cat([gt_box.new_tensor([2.0]), det["scores"].float()])  # the query box ranks first
        keep = box_ops.nms(all_boxes, ranking, nms_thresh)
        index.append(np.full(len(keep), q, dtype=np.int64))
        boxes.append(all_boxes[keep].cpu().numpy())
        scores.append(ranking[keep].clamp(max=1.0).cpu().numpy())
        feats.append(torch.cat([gt_feat.float(), det_feat.float()])[keep].cpu().numpy())
    return {
        "query_det_index": np.concatenate(index),
        "query_det_boxes": np.concatenate(boxes).astype(np.float32),
        "query_det_scores": np.concatenate(scores).astype(np.float32),
        "query_det_features": np.concatenate(feats).astype(np.float32),
    }


@torch.no_grad()
def gt_box_reid(
    model: torch.nn.Module | None,
    data: PersonSearchData,
    device: torch.device,
    query_features: np.ndarray,
    workers: int = 0,
    progress: bool = True,
    embed_boxes: BoxEmbedder | None = None,
) -> dict[str, float]:
    """Re-ID alone on ground-truth boxes (:mod:`personsearch.evaluation.crop_reid`): ``query_features`` (in
    query order) against the embeddings of every ground-truth box of the gallery images, by the model's
    Re-ID head or ``embed_boxes`` (the teacher in two-step)."""
    from personsearch.evaluation.crop_reid import crop_reid_metrics

    embed_boxes = embed_boxes or _model_box_embedder(model)
    feats: list[torch.Tensor] = []
    pids: list[int] = []
    names: list[str] = []
    loader = _loader([r.path for r in data.gallery], 1, workers, [r.boxes for r in data.gallery])
    with preserved_rng():
        for images, indices in tqdm(loader, desc="GT boxes", disable=not progress, dynamic_ncols=True):
            record = data.gallery[int(indices[0])]
            if len(record.boxes) == 0:
                continue
            boxes = torch.as_tensor(np.asarray(record.boxes), dtype=torch.float32, device=device)
            feats.append(embed_boxes([images[0].to(device)], [boxes])[0].float().cpu())
            pids.extend(int(p) for p in record.pids)
            names.extend([record.name] * len(record.boxes))
    return crop_reid_metrics(
        torch.from_numpy(np.asarray(query_features, dtype=np.float32)),
        np.array([int(q.pid) for q in data.queries]),
        [q.name for q in data.queries],
        torch.cat(feats) if feats else torch.zeros(0, np.asarray(query_features).shape[1]),
        np.array(pids, dtype=np.int64),
        names,
    )


def run_inference(
    model: torch.nn.Module,
    data: PersonSearchData,
    device: torch.device,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    query_detections: bool = False,
    embed: GalleryEmbedder | None = None,
    embed_boxes: BoxEmbedder | None = None,
) -> dict[str, np.ndarray]:
    """Gallery detections and query embeddings: the content of a results file; with
    ``query_detections`` also the query images' own detections that CBGM needs. ``embed`` and
    ``embed_boxes`` replace the model's embeddings of detections and of given boxes (two-step)."""
    with preserved_rng():
        arrays = {
            **detect_gallery(model, data, device, batch_size, workers, progress, embed=embed),
            **embed_queries(model, data, device, batch_size, workers, progress, embed_boxes=embed_boxes),
        }
        if query_detections:
            arrays.update(
                detect_query_images(model, data, device, workers, progress, embed=embed, embed_boxes=embed_boxes)
            )
        return arrays


def pick_gallery_size(data: PersonSearchData, wanted: int) -> int | None:
    """CUHK-SYSU: ``wanted`` if its protocol file exists, else the largest present size below it (or the
    smallest present); PRW: ``None`` (no gallery-size option)."""
    from personsearch.evaluation.protocols import protocol_for

    if not protocol_for(data).has_gallery_sizes:
        return None
    sizes = data.protocol_sizes
    if wanted == -1 or wanted in sizes or not sizes:
        return wanted
    smaller = [s for s in sizes if s <= wanted]
    return max(smaller) if smaller else min(sizes)


def evaluate_model(
    model: torch.nn.Module,
    data: PersonSearchData,
    settings: EvalConfig,
    device: torch.device,
    progress: bool = True,
) -> dict[str, Any]:
    """Inference + the evaluation protocol with the run's ``eval`` settings."""
    from personsearch.evaluation import evaluate, make_results

    arrays = run_inference(model, data, device, settings.batch_size, 0, progress)
    size = pick_gallery_size(data, settings.gallery_size)
    return evaluate(
        data, make_results(**arrays), gallery_size=-1 if size is None else size, det_thresh=settings.det_thresh
    )


def full_report(
    data: PersonSearchData, results, det_thresh: float = 0.5, cbgm: bool = False
) -> tuple[dict[str, Any], str]:
    """Every standard setting: CUHK-SYSU at each gallery size present plus the full set; PRW with and
    without same-camera frames. Returns the figures and a printable table."""
    from personsearch.evaluation import evaluate, evaluate_sweep, protocol_for
    from personsearch.evaluation.report import format_metrics, format_sweep

    spec = protocol_for(data)
    if spec.has_gallery_sizes:
        report = evaluate_sweep(data, results, spec.sweep_sizes(data), det_thresh=det_thresh, cbgm=cbgm)
        return report, format_sweep(report)
    same = evaluate(data, results, gallery_size=-1, det_thresh=det_thresh, cbgm=cbgm)
    cross = evaluate(
        data, results, gallery_size=-1, cross_camera=True, det_thresh=det_thresh, cbgm=cbgm, detection=False
    )
    report = {"same_camera": same, "cross_camera": cross}
    return report, format_metrics(same) + "\n" + format_metrics(cross)
