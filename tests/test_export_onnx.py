"""``personsearch export --format onnx``: the exported detector and query-box embedder run by onnxruntime give
the PyTorch model's detections and embeddings (two image sizes), and ``Searcher``/``index build``/``query``
run on it with ``--backend onnxruntime`` — an index built by one backend is queried by the other."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from personsearch.cli import main
from personsearch.data.synthetic import generate_dataset
from personsearch.errors import PersonSearchError

from handmade import TINY_MODEL

pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed: pip install -e '.[export]' (or '.[dev]') to run this test"
)
pytest.importorskip("onnx", reason="onnx is not installed: pip install -e '.[export]' (or '.[dev]')")

SIZES = [(200, 150), (130, 240)]  # (width, height): landscape and portrait, both resized by the graph


def _main(*args):
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A one-iteration tiny checkpoint, its export (score threshold 0: the untrained model's detections are
    kept, so the parity is never over empty outputs) and scene images at two sizes."""
    work = tmp_path_factory.mktemp("export")
    root = generate_dataset("cuhk-sysu", work / "CUHK-SYSU", "tiny", seed=3).root
    run = work / "run"
    overrides = ["train.epochs=1", "train.max_iters_per_epoch=1", "train.batch_size=2", "train.workers=0"]
    overrides += ["train.eval_period=-1", "train.tensorboard=false", "model.box_head.detections_per_img=8"]
    assert main(["train", "--no-progress", f"dataset.root={root}", f"output_dir={run}", *overrides, *TINY_MODEL]) == 0
    checkpoint = run / "last.pth"
    out = work / "onnx"
    assert _main("export", "--checkpoint", checkpoint, "--format", "onnx", "--out", out, "--score-thresh", "0") == 0
    scenes = sorted((root / "Image" / "SSM").glob("*.jpg"))[:3]
    footage = work / "footage"
    footage.mkdir()
    for scene, size in zip(scenes, [*SIZES, SIZES[0]]):
        Image.open(scene).convert("RGB").resize(size).save(footage / scene.name)
    return {"checkpoint": checkpoint, "out": out, "footage": footage, "images": sorted(footage.glob("*.jpg"))}


@pytest.fixture(scope="module")
def torch_model(exported):
    from personsearch.engine.loading import load_trained_model

    model, _, _ = load_trained_model(exported["checkpoint"], "cpu")
    meta = json.loads((exported["out"] / "model.json").read_text())
    model.roi_heads.score_thresh = meta["detection"]["score_thresh"]  # the threshold the export records
    return model


@pytest.fixture(scope="module")
def sessions(exported):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return {
        name: ort.InferenceSession(str(exported["out"] / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
        for name in ("detector", "embedder")
    }


def _tensor(path):
    import torch

    array = np.asarray(Image.open(path).convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255.0)


def _close_boxes(a, b):
    """Boxes within 1e-3 relative (of each coordinate, at least of one pixel)."""
    return a.shape == b.shape and bool((np.abs(a - b) <= 1e-3 * np.maximum(np.abs(b), 1.0)).all())


def _cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_model_json_records_the_conventions(exported):
    from personsearch.engine.checkpoint import checkpoint_id

    meta = json.loads((exported["out"] / "model.json").read_text())
    assert meta["model_id"] == checkpoint_id(exported["checkpoint"])
    assert meta["opset"] == 17 and meta["personsearch_version"] and meta["embedding_dim"] == 256
    assert meta["input"]["pixel_range"] == [0.0, 1.0] and len(meta["input"]["pixel_mean"]) == 3
    assert meta["input"]["resize"]["min_size"] == 128 and meta["input"]["resize"]["max_size"] == 224
    assert meta["detection"]["score_thresh"] == 0.0 and meta["detection"]["nms_thresh"] == 0.4
    assert {p.name for p in exported["out"].iterdir()} == {"detector.onnx", "embedder.onnx", "model.json"}


@pytest.mark.parametrize("index", [0, 1])
def test_detector_parity_at_two_sizes(exported, torch_model, sessions, index):
    image = _tensor(exported["images"][index])
    assert tuple(image.shape[1:][::-1]) == SIZES[index]
    ref = torch_model.detect([image])[0]
    boxes, scores, embeddings = sessions["detector"].run(
        None, {"image": image.numpy(), "score_thresh": np.asarray(0.0, dtype=np.float32)}
    )
    n = len(ref["boxes"])
    assert n > 0, "the tiny model must detect someone, or the parity is vacuous"
    assert boxes.shape == (n, 4) and scores.shape == (n,) and embeddings.shape == (n, 256)
    assert _close_boxes(boxes, ref["boxes"].numpy())  # same count, same order after NMS
    np.testing.assert_allclose(scores, ref["scores"].numpy(), rtol=1e-3, atol=1e-5)
    assert _cosines(embeddings, ref["embeddings"].numpy()).min() >= 0.9999


@pytest.mark.parametrize("index", [0, 1])
def test_embedder_parity_at_two_sizes(exported, torch_model, sessions, index):
    import torch

    image = _tensor(exported["images"][index])
    h, w = image.shape[1:]
    boxes = torch.tensor([[5.0, 8.0, w * 0.4, h * 0.9], [w * 0.5, h * 0.2, w - 1.0, h - 2.0], [10, 10, 30, 70]])
    ref = torch_model.extract_query_features([image], [boxes])[0].numpy()
    (embeddings,) = sessions["embedder"].run(None, {"image": image.numpy(), "boxes": boxes.numpy()})
    assert embeddings.shape == ref.shape == (3, 256)
    assert _cosines(embeddings, ref).min() >= 0.9999


def test_detector_with_no_detection_returns_empty_outputs(exported, sessions):
    image = _tensor(exported["images"][0]).numpy()
    boxes, scores, embeddings = sessions["detector"].run(
        None, {"image": image, "score_thresh": np.asarray(1.01, dtype=np.float32)}
    )
    assert boxes.shape == (0, 4) and scores.shape == (0,) and embeddings.shape == (0, 256)


def test_searcher_from_export_matches_torch_searcher(exported):
    from personsearch import Searcher

    ours = Searcher.from_export(exported["out"], det_thresh=0.0)
    theirs = Searcher.from_checkpoint(exported["checkpoint"], device="cpu", det_thresh=0.0)
    assert ours.backend == "onnxruntime" and theirs.backend == "torch"
    assert ours.model_id == theirs.model_id and ours.embedding_dim == theirs.embedding_dim
    for a, b in zip(ours.detect(exported["images"]), theirs.detect(exported["images"]), strict=True):
        assert len(a) == len(b) > 0 and _close_boxes(a.boxes, b.boxes)
        assert _cosines(a.embeddings, b.embeddings).min() >= 0.9999
    box = [10, 12, 80, 140]
    assert _cosines(ours.embed(exported["images"][0], box), theirs.embed(exported["images"][0], box))[0] >= 0.9999
    ours.det_thresh = 0.9  # above the recorded threshold: filtered as the torch searcher does
    theirs.det_thresh = 0.9
    assert [len(d) for d in ours.detect(exported["images"])] == [len(d) for d in theirs.detect(exported["images"])]
    same = Searcher.from_checkpoint(exported["out"], backend="onnxruntime")
    assert same.backend == "onnxruntime" and same.model_id == ours.model_id


def test_onnxruntime_backend_never_imports_torch(exported):
    image = str(exported["images"][0])
    code = (
        "import sys; from personsearch import Searcher; "
        f"s = Searcher.from_export({str(exported['out'])!r}, det_thresh=0.0); "
        f"d = s.detect({image!r})[0]; e = s.embed({image!r}, [5, 5, 60, 90]); "
        "assert len(d) > 0 and e.shape == (1, 256); assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_index_built_with_torch_is_queried_with_onnxruntime_and_back(exported, tmp_path, capsys):
    footage, images = exported["footage"], exported["images"]
    hits = {}
    for built, queried in (("torch", "onnxruntime"), ("onnxruntime", "torch")):
        index = tmp_path / f"{built}.index"
        model = exported["checkpoint"] if built == "torch" else exported["out"]
        args = ["index", "build", footage, "--checkpoint", model, "--out", index, "--det-thresh", "0"]
        assert _main(*args, "--backend", built, "--device", "cpu", "--no-progress") == 0
        other = exported["out"] if queried == "onnxruntime" else exported["checkpoint"]
        out_json = tmp_path / f"{built}.json"
        query = ["query", "--index", index, "--image", images[0], "--box", "10,12,80,140", "--top-k", 5]
        assert _main(*query, "--checkpoint", other, "--backend", queried, "--json", out_json) == 0
        hits[built] = json.loads(out_json.read_text())["hits"]
    capsys.readouterr()
    assert len(hits["torch"]) == 5
    assert [(h["path"], h["image_id"]) for h in hits["torch"]] == [
        (h["path"], h["image_id"]) for h in hits["onnxruntime"]
    ]
    for a, b in zip(hits["torch"], hits["onnxruntime"], strict=True):
        assert abs(a["similarity"] - b["similarity"]) < 1e-3


def test_bad_inputs_are_one_line_errors(exported, tmp_path, capsys):
    from personsearch import Searcher

    with pytest.raises(PersonSearchError, match="does not exist"):
        Searcher.from_export(tmp_path / "missing")
    with pytest.raises(PersonSearchError, match="not a folder written by personsearch export"):
        Searcher.from_export(tmp_path)
    with pytest.raises(PersonSearchError, match="use it with backend onnxruntime"):
        Searcher.from_checkpoint(exported["out"], device="cpu")
    assert _main("export", "--checkpoint", tmp_path / "none.pth", "--out", tmp_path / "x") == 2
    assert "does not exist" in capsys.readouterr().err
    assert _main("export", "--checkpoint", exported["checkpoint"], "--out", tmp_path / "x", "--opset", "11") == 2
    assert "opset" in capsys.readouterr().err
