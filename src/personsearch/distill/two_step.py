"""The two-step pipeline for comparison: the end-to-end model's detections, the teacher's embeddings.

Gallery: every detection of the end-to-end model is cropped from the input image and embedded by the
teacher (``f^M``, L2-normalised). Queries: the ground-truth query box, embedded by the teacher (with
``--cbgm`` also the query image's own detections). The results file has exactly the end-to-end layout
(same boxes and scores, teacher features).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from personsearch.data import PersonSearchData
from personsearch.data.images import load_image
from personsearch.data.torch_dataset import image_to_tensor
from personsearch.errors import PersonSearchError

from .sia import crop_resize
from .teacher import TeacherNet


class TeacherEmbedder:
    """The teacher as the embedding function of :func:`personsearch.engine.inference.detect_gallery` and
    :func:`~personsearch.engine.inference.embed_queries`."""

    def __init__(self, teacher: TeacherNet, batch_size: int = 64) -> None:
        self.teacher = teacher.eval()
        self.batch_size = max(1, batch_size)

    @torch.no_grad()
    def embed_boxes(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]:
        """Teacher embeddings ``[n, D]`` of the crops at ``boxes`` (input pixels), one tensor per image."""
        self.teacher.eval()
        height, width = self.teacher.spec.input_size
        size = (int(height), int(width))
        out = []
        for image, b in zip(images, boxes):
            feats = [image.new_zeros((0, self.teacher.spec.embedding_dim))]
            for chunk in b.float().split(self.batch_size):
                feats.append(self.teacher(crop_resize(image.float(), chunk, size)).embeddings)
            out.append(torch.cat(feats))
        return out

    def embed_detections(self, images: list[Tensor], outputs: list[dict[str, Tensor]]) -> list[Tensor]:
        """Teacher embeddings of the end-to-end detections."""
        return self.embed_boxes(images, [o["boxes"] for o in outputs])


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def time_pipelines(
    model: torch.nn.Module, teacher: TeacherNet, data: PersonSearchData, device: torch.device, images: int = 10
) -> dict[str, float]:
    """Seconds per gallery image of end-to-end and two-step inference on the same images (decoded
    beforehand; one warm-up image each), and their ratio ``two_step / end_to_end``."""
    model.eval()
    embedder = TeacherEmbedder(teacher.to(device))
    tensors = [image_to_tensor(load_image(r.path)).to(device) for r in data.gallery[: max(1, images)]]

    def end_to_end() -> None:
        for t in tensors:
            model([t])

    def two_step() -> None:
        for t in tensors:
            embedder.embed_detections([t], model([t]))

    model([tensors[0]])
    embedder.embed_detections([tensors[0]], model([tensors[0]]))
    e2e = _timed(end_to_end, device) / len(tensors)
    two = _timed(two_step, device) / len(tensors)
    return {"end_to_end_s": e2e, "two_step_s": two, "ratio": two / e2e, "images": len(tensors)}


def two_step_embedder(two_step: bool, teacher: str | Path | None, device: torch.device) -> TeacherEmbedder | None:
    """``infer/test --two-step --teacher FILE``: the teacher of ``teacher`` loaded as the embedder of the
    end-to-end detections and of the query boxes (``run_inference(embed=..., embed_boxes=...)``); None when
    neither is asked for. One without the other is a :class:`PersonSearchError`."""
    from .teacher import load_teacher

    if not two_step and not teacher:
        return None
    if not (two_step and teacher):
        raise PersonSearchError("--two-step and --teacher FILE go together")
    net, _ = load_teacher(teacher, device)
    return TeacherEmbedder(net.to(device))
