"""``personsearch.Searcher``: a checkpoint as a library — detect and embed people in paths, PIL images, arrays."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from personsearch.cli import main
from personsearch.data.synthetic import generate_dataset
from personsearch.errors import PersonSearchError

from handmade import TINY_MODEL


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-iteration checkpoint of the tiny model and a few scene images of the synthetic dataset."""
    work = tmp_path_factory.mktemp("searcher")
    root = generate_dataset("cuhk-sysu", work / "CUHK-SYSU", "tiny", seed=3).root
    run = work / "run"
    overrides = ["train.epochs=1", "train.max_iters_per_epoch=1", "train.batch_size=2", "train.workers=0"]
    overrides += ["train.eval_period=-1", "train.tensorboard=false", "model.box_head.detections_per_img=8"]
    assert main(["train", "--no-progress", f"dataset.root={root}", f"output_dir={run}", *overrides, *TINY_MODEL]) == 0
    images = sorted((root / "Image" / "SSM").glob("*.jpg"))[:3]
    return run / "last.pth", images


@pytest.fixture(scope="module")
def searcher(trained):
    from personsearch import Searcher

    return Searcher.from_checkpoint(trained[0], device="cpu", det_thresh=0.0)


def test_import_personsearch_stays_light_and_exports_the_api():
    code = "import sys, personsearch; assert 'torch' not in sys.modules; print(personsearch.Searcher.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "personsearch.footage.searcher"
    import personsearch

    assert {"Searcher", "Detections"} <= set(dir(personsearch))
    with pytest.raises(AttributeError):
        _ = personsearch.NoSuchThing


def test_from_checkpoint_attributes(trained, searcher):
    checkpoint, _ = trained
    assert searcher.embedding_dim == 256
    assert searcher.model_id == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert str(searcher.device) == "cpu" and searcher.det_thresh == 0.0
    assert searcher.checkpoint == str(checkpoint) and "c" in repr(searcher)
    with pytest.raises(PersonSearchError, match="does not exist"):
        type(searcher).from_checkpoint(checkpoint.with_name("missing.pth"), device="cpu")
    with pytest.raises(PersonSearchError, match=r"det_thresh must be in \[0, 1\]"):
        searcher.det_thresh = 1.5


def _same(a, b, atol=0.0):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.boxes.shape == y.boxes.shape
        np.testing.assert_allclose(x.boxes, y.boxes, atol=atol * 100)
        np.testing.assert_allclose(x.scores, y.scores, atol=atol)
        np.testing.assert_allclose(x.embeddings, y.embeddings, atol=atol)


def test_detect_paths_pil_and_arrays_agree(trained, searcher):
    _, paths = trained
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    pils = [Image.open(p) for p in paths]
    from_paths = searcher.detect(paths)
    assert len(from_paths) == len(paths) and all(len(d) > 0 for d in from_paths)
    _same(from_paths, searcher.detect(pils))
    _same(from_paths, searcher.detect(arrays))
    _same(from_paths, searcher.detect([str(p) for p in paths]))
    single = searcher.detect(paths[0])  # one image: a list of one
    assert isinstance(single, list) and len(single) == 1
    _same(single, from_paths[:1])
    for d, image in zip(from_paths, arrays):
        n = len(d)
        assert d.boxes.dtype == d.scores.dtype == d.embeddings.dtype == np.float32
        assert d.boxes.shape == (n, 4) and d.scores.shape == (n,) and d.embeddings.shape == (n, 256)
        np.testing.assert_allclose(np.linalg.norm(d.embeddings, axis=1), 1.0, atol=1e-5)
        assert (d.boxes[:, 2] <= image.shape[1] + 1e-3).all() and (d.boxes[:, 3] <= image.shape[0] + 1e-3).all()


def test_batched_detection_equals_one_by_one(trained, searcher):
    _, paths = trained
    base = np.asarray(Image.open(paths[0]).convert("RGB"))
    images = [base, base[:, ::-1].copy(), np.asarray(Image.open(paths[1]).convert("RGB")), base[::-1].copy(), base]
    alone = [searcher.detect(image)[0] for image in images]
    for batch_size in (2, 4, 8):
        _same(searcher.detect(images, batch_size=batch_size), alone, atol=1e-4)
    with pytest.raises(PersonSearchError, match="batch_size"):
        searcher.detect(images, batch_size=0)


def test_det_thresh_keeps_only_confident_detections(trained, searcher):
    _, paths = trained
    everything = searcher.detect(paths[0])[0]
    threshold = float(np.median(everything.scores))
    strict = type(searcher)(searcher.model, searcher.device, searcher.model_id, det_thresh=threshold)
    try:
        kept = strict.detect(paths[0])[0]
        assert len(kept) == int((everything.scores >= threshold).sum()) and (kept.scores >= threshold).all()
    finally:
        strict.det_thresh = 0.0  # the model is shared with the module's searcher


def test_embed_boxes(trained, searcher):
    _, paths = trained
    boxes = [[10, 20, 60, 140], [100.5, 30, 150, 200]]
    emb = searcher.embed(paths[0], boxes)
    assert emb.shape == (2, 256) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(searcher.embed(Image.open(paths[0]), boxes), emb, atol=1e-6)
    np.testing.assert_allclose(searcher.embed(paths[0], boxes[1])[0], emb[1], atol=1e-5)  # one box
    assert searcher.embed(paths[0], np.zeros((0, 4))).shape == (0, 256)
    height = Image.open(paths[0]).height
    # a box reaching past the image is clipped to it
    np.testing.assert_allclose(
        searcher.embed(paths[0], [[10, 20, 60, height + 50]]),
        searcher.embed(paths[0], [[10, 20, 60, height]]),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("box", "problem"),
    [
        ([10, 10, 10, 50], "positive width and height"),
        ([10, 50, 40, 20], "positive width and height"),
        ([5000, 10, 5100, 60], "outside the image"),
        ([-80, -80, -10, -10], "outside the image"),
        ([float("nan"), 10, 40, 60], "finite"),
        ([0, 10, float("inf"), 60], "finite"),
    ],
)
def test_embed_rejects_bad_boxes_naming_box_and_image_size(trained, searcher, box, problem):
    _, paths = trained
    width, height = Image.open(paths[0]).size
    with pytest.raises(PersonSearchError, match=problem) as caught:
        searcher.embed(paths[0], [[0, 0, 20, 40], box])
    message = str(caught.value)
    assert f"({width}x{height} pixels)" in message and str(paths[0]) in message and "\n" not in message


def test_bad_images_are_one_line_errors(trained, searcher, tmp_path):
    _, paths = trained
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    for image, words in [
        (tmp_path / "missing.jpg", "missing"),
        (broken, "cannot read image"),
        (np.zeros((20, 20, 3), dtype=np.float32), "dtype float32"),
        (np.zeros((20, 20, 4), dtype=np.uint8), "H x W x 3"),
        (12, "expected an image"),
    ]:
        with pytest.raises(PersonSearchError, match=words):
            searcher.detect([paths[0], image])
    with pytest.raises(PersonSearchError, match="rows of x1,y1,x2,y2"):
        searcher.embed(paths[0], [[1, 2, 3]])
