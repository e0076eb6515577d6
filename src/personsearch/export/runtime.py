"""Run an exported model (``personsearch export``) with onnxruntime and numpy only — no torch model is built.

The graphs hold the whole inference computation (normalisation, resize, RPN, NMS, heads; see
:mod:`personsearch.export.onnx_export`), so this wrapper only converts ``H x W x 3`` ``uint8`` RGB arrays to
``float32 [3, H, W]`` in 0..1 (``/ 255``, as ``personsearch.data.torch_dataset.image_to_tensor``) and feeds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from personsearch.errors import PersonSearchError

META_FILE = "model.json"


def export_meta(path: str | Path) -> dict[str, Any] | None:
    """The ``model.json`` of an export folder (or of the file itself), or None when ``path`` is not one."""
    path = Path(path)
    meta_path = path / META_FILE if path.is_dir() else path
    if meta_path.name != META_FILE or not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise PersonSearchError(f"{meta_path} is not a readable model description ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "personsearch-onnx":
        raise PersonSearchError(f"{meta_path} is not written by personsearch export")
    return meta


def model_id(path: str | Path) -> str:
    """The model id an index records: for a model exported by ``personsearch export`` (its folder or
    ``model.json``) the id stored there, which is its checkpoint's, so an index built with one backend is
    queried with the other; else the checkpoint file's own id. Needs no torch."""
    from personsearch.engine.checkpoint import checkpoint_id

    path = Path(path)
    if path.is_dir() or path.name == "model.json":
        meta = export_meta(path)
        if meta is not None:
            return str(meta["model_id"])
    return checkpoint_id(path)


def _to_chw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)


class OnnxModel:
    """The detector and query-box embedder graphs of an export folder in onnxruntime sessions.

    ``score_thresh`` is the detector's cut-off (default: the one recorded in ``model.json``).
    """

    backend = "onnxruntime"

    def __init__(self, folder: str | Path, threads: int | None = None, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise PersonSearchError(
                "the onnxruntime backend needs onnxruntime: pip install 'personsearch[export]'"
            ) from None
        self.folder = Path(folder)
        meta = export_meta(self.folder)
        if meta is None:
            raise PersonSearchError(f"{folder} is not a model exported by personsearch export (no {META_FILE})")
        self.meta = meta
        self.model_id: str = str(meta["model_id"])
        self.embedding_dim: int = int(meta["embedding_dim"])
        self.default_score_thresh: float = float(meta["detection"]["score_thresh"])
        self.score_thresh: float = self.default_score_thresh
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = providers or ["CPUExecutionProvider"]
        root = self.folder if self.folder.is_dir() else self.folder.parent
        sessions = []
        for name in ("detector", "embedder"):
            graph = root / meta["graphs"][name]["file"]
            if not graph.is_file():
                raise PersonSearchError(f"{graph} is missing (export again with personsearch export)")
            sessions.append(ort.InferenceSession(str(graph), options, providers=providers))
        self.detector, self.embedder = sessions

    def detect(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """``boxes`` [n, 4], ``scores`` [n], ``embeddings`` [n, D] of one ``H x W x 3`` uint8 RGB image."""
        feed = {"image": _to_chw(image), "score_thresh": np.asarray(self.score_thresh, dtype=np.float32)}
        boxes, scores, embeddings = self.detector.run(None, feed)
        return {"boxes": boxes, "scores": scores, "embeddings": embeddings}

    def embed(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Embeddings [k, D] of ``boxes`` (finite, [k, 4] in the image's pixels) in one uint8 RGB image."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        if not np.isfinite(boxes).all():
            raise PersonSearchError("boxes must have finite coordinates")
        (embeddings,) = self.embedder.run(None, {"image": _to_chw(image), "boxes": boxes})
        return embeddings
