"""The Python API: a trained person search model that finds and embeds people in your own images.

Example::

    from personsearch import Searcher
    searcher = Searcher.from_checkpoint("run/last.pth")              # CPU or CUDA ("auto")
    people = searcher.detect(["a.jpg", "b.jpg"])                      # boxes, scores, embeddings per image
    searcher.build_index("my.index", ["footage/", "walk.mp4"])        # a persistent gallery index
    hits = searcher.query("my.index", "me.jpg", box=(40, 30, 120, 260), top_k=10)

Images are file paths, PIL images or ``H x W x 3`` ``uint8`` RGB arrays. Embeddings are L2-normalised
``float32`` rows, so the inner product of two is their cosine similarity.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from personsearch.engine.checkpoint import checkpoint_id
from personsearch.errors import PersonSearchError
from personsearch.export.runtime import OnnxModel
from personsearch.footage.detections import Detections
from personsearch.footage.images import ImageLike, as_image_list, check_box, describe, to_rgb

if TYPE_CHECKING:
    import torch

    from personsearch.footage.store import GalleryIndex, Hit
    from personsearch.models.person_search import PersonSearchModel

__all__ = ["Detections", "Searcher"]


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32)


class Searcher:
    """A trained person search model in eval mode, with its id and detection threshold.

    Build one with :meth:`from_checkpoint`, or with :meth:`from_export` on a model written by ``personsearch
    export`` (``backend`` is then ``onnxruntime``: onnxruntime and numpy, no torch). ``embedding_dim`` is the
    size of an embedding, ``model_id`` the SHA-256 of the checkpoint file (an index records it, so it is
    never queried with another model), ``device`` the torch device the model runs on (``"cpu"`` for
    onnxruntime) and ``det_thresh`` the lowest detection score :meth:`detect` keeps.
    """

    def __init__(
        self,
        model: PersonSearchModel | OnnxModel,
        device: torch.device | str,
        model_id: str,
        det_thresh: float = 0.5,
        checkpoint: str | Path | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        #: ``torch`` (a PersonSearchModel) or ``onnxruntime`` (an exported model, :class:`OnnxModel`)
        self.backend: str = getattr(model, "backend", "torch")
        self.model: PersonSearchModel | OnnxModel
        self._model_score_thresh: float | None
        if isinstance(model, OnnxModel):  # self.backend == "onnxruntime"
            self.model = model
            self._model_score_thresh = model.default_score_thresh
            dim = model.embedding_dim
        else:
            self.model = model.eval()
            heads = getattr(model, "roi_heads", None)
            self._model_score_thresh = getattr(heads, "score_thresh", None)
            dim = model.reid_head.embedding_dim
        self.device = device
        self.model_id = model_id
        self.det_thresh = det_thresh
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.config = config or {}
        self.embedding_dim: int = int(dim)

    @property
    def det_thresh(self) -> float:
        """The lowest detection score :meth:`detect` keeps, in [0, 1]."""
        return self._det_thresh

    @det_thresh.setter
    def det_thresh(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise PersonSearchError(f"det_thresh must be in [0, 1], got {value}")
        self._det_thresh = value
        if self._model_score_thresh is not None:  # the model's own cut-off must not hide what is asked for
            heads = self.model if isinstance(self.model, OnnxModel) else self.model.roi_heads
            heads.score_thresh = min(self._model_score_thresh, value)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", det_thresh: float = 0.5, backend: str = "torch"
    ) -> Searcher:
        """Load a ``personsearch train`` checkpoint (safely: tensors and plain values only) onto ``device``
        (``auto``: CUDA when there is one, else the CPU; ``cpu``; ``cuda``; ``cuda:N``).

        ``backend="onnxruntime"``: ``path`` is a folder written by ``personsearch export`` (see
        :meth:`from_export`; ``device`` is then ignored, onnxruntime runs on the CPU)."""
        if backend == "onnxruntime":
            return cls.from_export(path, det_thresh=det_thresh)
        if backend != "torch":
            raise PersonSearchError(f"backend must be torch or onnxruntime, got {backend!r}")
        if Path(path).is_dir():
            from personsearch.export.runtime import export_meta

            if export_meta(path) is not None:
                raise PersonSearchError(f"{path} is an exported model; use it with backend onnxruntime")
        from personsearch.engine.loading import load_trained_model

        model_id = checkpoint_id(path)
        model, cfg, torch_device = load_trained_model(path, device)
        return cls(model, torch_device, model_id, det_thresh, checkpoint=path, config=cfg)

    @classmethod
    def from_export(cls, folder: str | Path, det_thresh: float = 0.5, threads: int | None = None) -> Searcher:
        """A searcher on a model exported by ``personsearch export`` (the folder or its ``model.json``), run by
        onnxruntime on the CPU with numpy: the torch model is never built. ``model_id`` is the exported
        checkpoint's, so indexes built by either backend are queried by the other."""
        from personsearch.export.runtime import export_meta

        path = Path(folder)
        if not path.exists():
            raise PersonSearchError(f"exported model {path} does not exist")
        if export_meta(path) is None:
            raise PersonSearchError(
                f"{path} is not a folder written by personsearch export (no model.json); export a checkpoint "
                "with: personsearch export --checkpoint C --format onnx --out DIR"
            )
        model = OnnxModel(path, threads=threads)
        return cls(model, "cpu", model.model_id, det_thresh, checkpoint=path, config=model.meta)

    def __repr__(self) -> str:
        return (
            f"Searcher(checkpoint={self.checkpoint!r}, model_id={self.model_id[:12]!r}, "
            f"embedding_dim={self.embedding_dim}, device={str(self.device)!r}, det_thresh={self.det_thresh})"
        )

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        from personsearch.data.torch_dataset import image_to_tensor

        return image_to_tensor(image).to(self.device)

    def detect(self, images: ImageLike | Sequence[ImageLike], batch_size: int = 4) -> list[Detections]:
        """The people in each image: one :class:`Detections` per image, in input order (a list of one for a
        single image), keeping detections scoring at least ``det_thresh``.

        Images go through the model ``batch_size`` at a time; within a batch, images of different sizes run
        separately, so a result never depends on which other images shared its batch.
        """
        if batch_size < 1:
            raise PersonSearchError(f"batch_size must be a positive integer, got {batch_size}")
        model = self.model
        if isinstance(model, OnnxModel):  # onnxruntime: one image per run (the graph takes one image of any size)
            return [self._keep(model.detect(to_rgb(item))) for item in as_image_list(images)]
        import torch

        items = as_image_list(images)
        results: list[Detections] = []
        dim = self.embedding_dim
        for start in range(0, len(items), batch_size):
            arrays = [to_rgb(item) for item in items[start : start + batch_size]]
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, array in enumerate(arrays):
                groups.setdefault(array.shape, []).append(i)
            batch: list[Detections | None] = [None] * len(arrays)
            with torch.inference_mode():
                for members in groups.values():
                    outputs = model([self._tensor(arrays[i]) for i in members])
                    for i, out in zip(members, outputs, strict=True):
                        keep = out["scores"] >= self.det_thresh
                        boxes = out["boxes"][keep].float().cpu().numpy().reshape(-1, 4)
                        scores = out["scores"][keep].float().cpu().numpy().reshape(-1)
                        emb = out["embeddings"][keep].float().cpu().numpy().reshape(-1, dim)
                        batch[i] = Detections(boxes.astype(np.float32), scores.astype(np.float32), _normalise(emb))
            results.extend(d for d in batch if d is not None)
        return results

    def _keep(self, out: dict[str, np.ndarray]) -> Detections:
        """Detections of the onnxruntime backend scoring at least ``det_thresh`` (as :meth:`detect`)."""
        keep = out["scores"] >= self.det_thresh
        boxes = out["boxes"][keep].astype(np.float32).reshape(-1, 4)
        emb = out["embeddings"][keep].astype(np.float32).reshape(-1, self.embedding_dim)
        return Detections(boxes, out["scores"][keep].astype(np.float32).reshape(-1), _normalise(emb))

    def embed(self, image: ImageLike, boxes: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """L2-normalised embeddings ``[n, D]`` (``float32``) of the people in the given boxes of ``image``
        (``x1 y1 x2 y2`` in pixels; one box or ``n`` of them), by the model's query-box embedder.

        Each box is clipped to the image; a box with a NaN or infinite coordinate, no positive size or
        nothing inside the image is a :class:`PersonSearchError` naming it and the image size.
        """
        array = to_rgb(image)
        raw = np.asarray(boxes, dtype=np.float64)
        if raw.ndim == 1:
            raw = raw[None]
        if raw.size == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        if raw.ndim != 2 or raw.shape[1] != 4:
            raise PersonSearchError(f"boxes for {describe(image)}: expected rows of x1,y1,x2,y2, got shape {raw.shape}")
        height, width = array.shape[:2]
        clipped = [check_box(row, describe(image), (width, height)) for row in raw]
        model = self.model
        if isinstance(model, OnnxModel):  # onnxruntime
            return _normalise(model.embed(array, np.asarray(clipped, dtype=np.float32)))
        import torch

        with torch.inference_mode():
            box_tensor = torch.tensor(clipped, dtype=torch.float32, device=self.device)
            features = model.extract_query_features([self._tensor(array)], [box_tensor])[0]
        return _normalise(features.float().cpu().numpy())

    def check_index(self, index: GalleryIndex, name: str | os.PathLike[str] | None = None) -> None:
        """A :class:`PersonSearchError` unless ``index`` was built with this searcher's model."""
        if index.model_id != self.model_id:
            what = f"checkpoint {self.checkpoint}" if self.checkpoint else "this searcher's model"
            where = f"index {name}" if name is not None else "the index"
            raise PersonSearchError(
                f"{where} was built with model {index.model_id[:12]}, {what} is {self.model_id[:12]}"
            )

    def build_index(self, out: str | Path, sources: Sequence[str | Path], **options: Any) -> dict[str, Any]:
        """Index every person in ``sources`` (folders, globs, list files, videos) into the gallery index
        ``out``, or bring an existing one up to date; returns the builder's summary. ``options`` go to
        :func:`personsearch.footage.builder.build_index` (``fps``, ``batch_size``, ``progress``, ...)."""
        from personsearch.footage.builder import build_index

        options.setdefault("checkpoint", None if self.checkpoint is None else os.path.abspath(self.checkpoint))
        return build_index(self, out, [str(s) for s in sources], **options)

    def query(
        self,
        index: str | Path | GalleryIndex,
        image: ImageLike,
        box: Sequence[float] | None = None,
        top_k: int = 20,
        **filters: Any,
    ) -> list[Hit]:
        """The ``top_k`` indexed detections most similar to the person in ``box`` of ``image`` (the whole
        image when ``box`` is None), best first.

        ``index`` is a gallery index path or an open :class:`~personsearch.footage.store.GalleryIndex`.
        ``filters``: ``sources`` (only hits from these sources), ``time_range`` (``(start, end)`` seconds
        of video), ``exclude_paths``, and ``exclude_query_image`` (default: skip hits from the query image
        when it is itself in the index); see :func:`personsearch.footage.query.search_index`.
        """
        from personsearch.footage.query import search_index
        from personsearch.footage.store import GalleryIndex

        if isinstance(index, (str, Path)):
            with GalleryIndex.open(index) as opened:
                return search_index(self, opened, image, box, top_k, index_name=index, **filters).hits
        return search_index(self, index, image, box, top_k, **filters).hits
