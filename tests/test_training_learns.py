"""End to end: a short from-scratch training on tiny synthetic data learns something.

The losses fall (detection from the start, OIM after its lookup table fills), and the trained embeddings
rank the people far better than random unit-norm embeddings on the very same boxes. Small model and
images: about three minutes on two (shared) CPU cores. A few minutes of from-scratch training cannot yet
generalise to unseen identities, nor detect well, so the search runs over the *training* images with one
query per training identity (PRW-style protocol: every other image is a gallery image) and the annotated
boxes as the "detections": the mAP measures the learnt Re-ID embedding, the evaluation code path is the
real one. Detection quality and generalisation to the unseen test identities are what the longer CPU demo
(``make demo``) shows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from personsearch.config import load_config
from personsearch.data import UNLABELED, PersonSearchData, QueryRecord, load_dataset
from personsearch.data.images import load_image
from personsearch.data.synthetic import generate_dataset
from personsearch.data.torch_dataset import image_to_tensor
from personsearch.engine.trainer import Trainer, TrainState
from personsearch.evaluation import make_results
from personsearch.search.compare import random_features, search_metrics

pytestmark = pytest.mark.slow

EPOCHS = 20  # 200 iterations of 4 images
DET_THRESH = 0.5

OVERRIDES = [
    "train.batch_size=4",
    f"train.epochs={EPOCHS}",
    "train.optimizer=adamw",
    "train.lr=0.0005",
    "train.weight_decay=0.0001",
    "train.warmup_iters=10",
    "train.warmup_factor=0.1",
    "train.lr_steps=[16]",
    "train.workers=0",
    "train.eval_period=-1",
    "train.tensorboard=false",
    "model.backbone.arch=resnet18",
    "model.backbone.pretrained=none",
    "model.backbone.frozen_bn=false",
    "model.backbone.freeze_stem=false",
    "model.transform.min_size=256",
    "model.transform.max_size=448",
    "model.rpn.anchor_sizes=[16,32,64,128,256]",
    "model.rpn.pre_nms_top_n_train=600",
    "model.rpn.post_nms_top_n_train=100",
    "model.rpn.pre_nms_top_n_test=300",
    "model.rpn.post_nms_top_n_test=50",
    "model.roi.output_size=8",
    "model.box_head.batch_size_per_image=16",
    "model.box_head.score_thresh=0.05",
    "model.box_head.detections_per_img=30",
    "model.oim.queue_size=100",
    "model.oim.scalar=10",
]


def seen_identities(data: PersonSearchData) -> PersonSearchData:
    """The training split as a search benchmark: gallery = training images (one camera), queries = the
    first appearance of each training identity; evaluated with the PRW protocol (query image excluded)."""
    gallery = [dataclasses.replace(r, cam_id=1) for r in data.train]
    queries, seen = [], set()
    for r in gallery:
        for box, pid in zip(r.boxes, r.pids, strict=True):
            if pid != UNLABELED and int(pid) not in seen:
                seen.add(int(pid))
                queries.append(QueryRecord(r.name, r.path, box, int(pid), cam_id=1))
    return PersonSearchData("prw", data.root, [], gallery, queries)


@torch.no_grad()
def embed_ground_truth(model: torch.nn.Module, data: PersonSearchData):
    """Results whose gallery "detections" are the annotated boxes (score 1), embedded by the model's query
    path like the queries: the search then measures the Re-ID embedding alone."""
    model.eval()
    det_image, boxes, feats = [], [], []
    for i, r in enumerate(data.gallery):
        image = image_to_tensor(load_image(r.path))
        box = torch.as_tensor(r.boxes, dtype=torch.float32)
        feats.append(model.extract_query_features([image], [box])[0].numpy())
        det_image.append(np.full(len(r.boxes), i))
        boxes.append(r.boxes.astype(np.float32))
    queries = []
    for q in data.queries:
        image = image_to_tensor(load_image(q.path))
        queries.append(model.extract_query_features([image], [torch.as_tensor(q.box[None], dtype=torch.float32)])[0])
    det_boxes = np.concatenate(boxes)
    return make_results(
        [r.name for r in data.gallery],
        np.concatenate(det_image),
        det_boxes,
        np.ones(len(det_boxes), np.float32),
        np.concatenate(feats),
        [q.name for q in data.queries],
        torch.cat(queries).numpy(),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine: oversubscribed OpenMP threads are several times slower
    try:
        work = tmp_path_factory.mktemp("learns")
        root = work / "CUHK-SYSU"
        generate_dataset("cuhk-sysu", root, "tiny", 0)
        cfg = load_config(None, [f"dataset.root={root}", f"output_dir={work / 'run'}", *OVERRIDES])
        trainer = Trainer(cfg, progress=False)
        epochs = []
        for epoch in range(EPOCHS):
            epochs.append(trainer.run_epoch(epoch))
            trainer.state = TrainState(epoch + 1, 0, trainer.state.global_step)
        data = seen_identities(load_dataset("cuhk-sysu", root))
        yield data, embed_ground_truth(trainer.model, data), epochs
    finally:
        torch.set_num_threads(threads)


def test_loss_falls(trained) -> None:
    """Detection losses fall from the start. The OIM loss starts artificially low (empty lookup table and
    queue give uniform logits), rises while the memory fills, then falls: it must end well below its peak."""
    _, _, epochs = trained
    losses = [round(e["loss"], 3) for e in epochs]
    print("epoch losses:", losses, "OIM:", [round(e["loss_oim"], 3) for e in epochs])
    assert np.isfinite(losses).all(), losses
    det = ("loss_rpn_objectness", "loss_box_cls")
    assert sum(epochs[-1][k] for k in det) < 0.7 * sum(epochs[0][k] for k in det), losses
    oim = [e["loss_oim"] for e in epochs]
    assert oim[-1] < 0.85 * max(oim), [round(v, 3) for v in oim]
    assert losses[-1] < 0.85 * max(losses), losses


def test_map_beats_random_embeddings(trained) -> None:
    data, results, _ = trained
    assert (results.det_scores >= DET_THRESH).any(), "no detection above the threshold"
    ours, _ = search_metrics(data, results, DET_THRESH)
    rand, _ = search_metrics(data, random_features(results, seed=0), DET_THRESH)
    table = {r["setting"]: (round(r["mAP"], 3), round(q["mAP"], 3)) for r, q in zip(ours, rand, strict=True)}
    print("mAP trained vs random:", table)
    full = next(r for r in ours if r["setting"] == "all frames")
    full_random = next(r for r in rand if r["setting"] == "all frames")
    assert full["mAP"] > full_random["mAP"] + 0.1, table
    assert full["mAP"] > 1.5 * full_random["mAP"], table


def test_results_cover_every_query(trained) -> None:
    data, results, _ = trained
    assert len(results.query_features) == len(data.queries)
    norms = np.linalg.norm(results.query_features, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4)
