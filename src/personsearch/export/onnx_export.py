"""Export a trained person search model to ONNX: a detector graph and a query-box embedder graph.

Both graphs are traced with torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``)
through the model's own inference code, so the whole computation is inside the graphs:

* ``detector.onnx``: ``image`` float32 [3, H, W] (RGB, 0..1, any H and W) and ``score_thresh`` float32 [] ->
  ``boxes`` [n, 4] (x1, y1, x2, y2 in input pixels), ``scores`` [n], ``embeddings`` [n, D]. Inside:
  GeneralizedRCNNTransform (normalise with mean/std, bilinear resize so the short side is ``min_size``
  unless the long side would exceed ``max_size``, pad to ``size_divisible``), backbone, RPN (top-k, NMS),
  box head, the RoI heads' post-processing (decode, clip, score >= ``score_thresh``, drop tiny boxes, NMS,
  top ``detections_per_img``), the Re-ID head on the final detections, boxes mapped back to input pixels.
  ``score_thresh`` is an input so a runtime can keep lower-scoring people than the training default, as
  the torch ``Searcher`` does (``min(model threshold, det_thresh)``).
* ``embedder.onnx``: ``image`` float32 [3, H, W] and ``boxes`` float32 [k, 4] (input pixels) ->
  ``embeddings`` [k, D] (L2-normalised): the same transform, boxes resized alike, backbone, RoIAlign,
  Re-ID head — :meth:`PersonSearchModel.extract_query_features`.

``model.json`` beside them records the input conventions and the model's identity (``model_id`` = the
SHA-256 of the checkpoint, so an index built with the torch model is queried with the exported one).
"""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from personsearch.errors import PersonSearchError
from personsearch.models.heads import _global_pool
from personsearch.models.person_search import FEATURE_NAME, PersonSearchModel

FORMAT_VERSION = 1
DEFAULT_OPSET = 17  # RoIAlign with aligned/half-pixel coordinates needs opset >= 16
DETECTOR_FILE = "detector.onnx"
EMBEDDER_FILE = "embedder.onnx"
META_FILE = "model.json"


def _reid(model: PersonSearchModel, features: dict[str, Tensor], boxes: Tensor) -> Tensor:
    """``PersonSearchModel.reid_embeddings`` for one image, without its Python-side checks (empty input,
    finite boxes: the runtime wrapper checks query boxes before they reach the graph) so that it traces."""
    head = model.reid_head
    # One extra (dummy) box keeps every tensor non-empty when there are no detections: onnxruntime's
    # optimised convolutions fail on a batch of 0. Each RoI is embedded on its own (eval-mode BatchNorm
    # is per row), so the real rows are exactly those of the model; the extra one is sliced off.
    n = boxes.shape[0]
    padded = torch.cat([boxes, boxes.new_tensor([[0.0, 0.0, 1.0, 1.0]])])
    pooled = model.reid_roi_align(features[model.reid_feature], [padded])
    x = head.projection(_global_pool(head.res5(pooled), head.pooling)).float()
    return nn.functional.normalize(head.bn(x), dim=1)[:n]


class DetectorGraph(nn.Module):
    """One image -> detections with embeddings: :meth:`PersonSearchModel.detect` for a batch of one."""

    def __init__(self, model: PersonSearchModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, score_thresh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = self.model
        original_size = image.shape[-2:]
        image_list, _ = m.transform([image], None)
        features = m.features(image_list)
        res4 = features["res4"]
        proposals, _ = m.rpn(image_list, OrderedDict([(FEATURE_NAME, res4)]))
        saved = m.roi_heads.score_thresh
        m.roi_heads.score_thresh = score_thresh  # a graph input instead of a constant; same code
        try:
            detections, _, _ = m.roi_heads(res4, proposals, image_list.image_sizes)
        finally:
            m.roi_heads.score_thresh = saved
        boxes, scores = detections[0]["boxes"], detections[0]["scores"]
        embeddings = _reid(m, features, boxes)
        if m.score_weighted_embeddings:
            embeddings = embeddings * scores[:, None]
        out = m.transform.postprocess(
            [{"boxes": boxes, "scores": scores}], image_list.image_sizes, [(original_size[0], original_size[1])]
        )
        return out[0]["boxes"], scores, embeddings


class EmbedderGraph(nn.Module):
    """One image and boxes in its pixels -> L2-normalised embeddings: ``extract_query_features``."""

    def __init__(self, model: PersonSearchModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, boxes: Tensor) -> Tensor:
        m = self.model
        original_size = image.shape[-2:]
        image_list, _ = m.transform([image], None)
        resized = m.resize_boxes_to([boxes], [(original_size[0], original_size[1])], image_list.image_sizes)
        return _reid(m, m.features(image_list), resized[0])


def model_conventions(model: PersonSearchModel) -> dict[str, Any]:
    """The input conventions and post-processing settings a runtime needs (all read from the model)."""
    t, h, rpn = model.transform, model.roi_heads, model.rpn
    return {
        "input": {
            "layout": "CHW",
            "channels": "RGB",
            "dtype": "float32",
            "pixel_range": [0.0, 1.0],
            "pixel_mean": [float(v) for v in t.image_mean],
            "pixel_std": [float(v) for v in t.image_std],
            "resize": {
                "min_size": int(t.min_size[-1]),
                "max_size": int(t.max_size),
                "rule": "bilinear (align_corners=False), scale = min(min_size / short side, max_size / long side), "
                "inside the graph",
                "size_divisible": int(t.size_divisible),
            },
        },
        "rpn": {
            "pre_nms_top_n": int(rpn._pre_nms_top_n["testing"]),
            "post_nms_top_n": int(rpn._post_nms_top_n["testing"]),
            "nms_thresh": float(rpn.nms_thresh),
        },
        "detection": {
            "score_thresh": float(h.score_thresh),
            "nms_thresh": float(h.nms_thresh),
            "detections_per_img": int(h.detections_per_img),
            "nms": "inside the graph (ONNX NonMaxSuppression, as torchvision.ops.nms)",
        },
        "embedding_dim": int(model.reid_head.embedding_dim),
        "score_weighted_embeddings": bool(model.score_weighted_embeddings),
    }


def example_image(model: PersonSearchModel, seed: int = 0) -> Tensor:
    """A tracing image (random texture, the model's working size) — the tracer needs some detections."""
    size = int(model.transform.min_size[-1])
    g = torch.Generator().manual_seed(seed)
    return torch.rand((3, size, size * 4 // 3), generator=g)


class GraphIO(NamedTuple):
    """A graph's input and output names, and its axes of variable size (by tensor name)."""

    inputs: list[str]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]


DETECTOR_IO = GraphIO(
    ["image", "score_thresh"],
    ["boxes", "scores", "embeddings"],
    {"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "scores": {0: "n"}, "embeddings": {0: "n"}},
)
EMBEDDER_IO = GraphIO(
    ["image", "boxes"], ["embeddings"], {"image": {1: "height", 2: "width"}, "boxes": {0: "k"}, "embeddings": {0: "k"}}
)


def _export_graph(graph: nn.Module, inputs: tuple[Tensor, ...], path: Path, opset: int, io: GraphIO) -> None:
    """Trace ``graph`` on ``inputs`` into the ONNX file ``path``."""
    torch.onnx.export(
        graph.eval(),
        inputs,
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=io.inputs,
        output_names=io.outputs,
        dynamic_axes=io.dynamic_axes,
    )


def export_graphs(model: PersonSearchModel, out: Path, opset: int = DEFAULT_OPSET) -> None:
    """Trace ``model`` (eval mode, CPU, float32) into ``out/detector.onnx`` and ``out/embedder.onnx``."""
    image = example_image(model)
    h, w = image.shape[-2:]
    boxes = torch.tensor([[w * 0.1, h * 0.2, w * 0.4, h * 0.9], [w * 0.5, h * 0.1, w * 0.7, h * 0.6]])
    trace_thresh = torch.tensor(0.0)  # every branch traced with detections present
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings of torchvision's code (handled by its ONNX paths)
        _export_graph(DetectorGraph(model), (image, trace_thresh), out / DETECTOR_FILE, opset, DETECTOR_IO)
        _export_graph(EmbedderGraph(model), (image, boxes), out / EMBEDDER_FILE, opset, EMBEDDER_IO)


def export_metadata(
    model: PersonSearchModel,
    model_id: str,
    opset: int,
    score_thresh: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``model.json``: format, versions, the graphs' inputs and outputs, and the model's
    conventions (:func:`model_conventions`; ``score_thresh`` replaces its default detection threshold)."""
    from personsearch import __version__

    conventions = model_conventions(model)
    if score_thresh is not None:
        conventions["detection"]["score_thresh"] = float(score_thresh)
    return {
        "format": "personsearch-onnx",
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "personsearch_version": __version__,
        "torch_version": torch.__version__,
        "opset": int(opset),
        "graphs": {
            "detector": {
                "file": DETECTOR_FILE,
                "inputs": {"image": "float32 [3, H, W]", "score_thresh": "float32 []"},
                "outputs": {"boxes": "float32 [n, 4]", "scores": "float32 [n]", "embeddings": "float32 [n, D]"},
            },
            "embedder": {
                "file": EMBEDDER_FILE,
                "inputs": {"image": "float32 [3, H, W]", "boxes": "float32 [k, 4]"},
                "outputs": {"embeddings": "float32 [k, D]"},
            },
        },
        **conventions,
        **(extra or {}),
    }


def export_model(
    model: PersonSearchModel,
    out: str | Path,
    *,
    model_id: str,
    score_thresh: float | None = None,
    opset: int = DEFAULT_OPSET,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``detector.onnx``, ``embedder.onnx`` and ``model.json`` into ``out``; returns the metadata.

    ``score_thresh`` (default: the model's ``box_head.score_thresh``) is recorded in ``model.json`` as the
    default detection threshold; the detector graph takes the threshold as an input. The model is put in
    eval mode on the CPU in float32 (traced there; onnxruntime runs the graphs on any provider).
    """
    if opset < 16:
        raise PersonSearchError(f"--opset must be at least 16 (RoIAlign with aligned coordinates), got {opset}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu().float()
    meta = export_metadata(model, model_id, opset, score_thresh, extra)
    export_graphs(model, out, opset)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, score_thresh: float | None = None, opset: int = DEFAULT_OPSET
) -> dict[str, Any]:
    """Load a ``train`` checkpoint on the CPU and export it (see :func:`export_model`)."""
    from personsearch.engine.checkpoint import checkpoint_id
    from personsearch.engine.loading import load_trained_model

    model_id = checkpoint_id(checkpoint)
    model, _cfg, _device = load_trained_model(checkpoint, "cpu")
    return export_model(
        model,
        out,
        model_id=model_id,
        score_thresh=score_thresh,
        opset=opset,
        extra={"checkpoint": Path(checkpoint).name},
    )
