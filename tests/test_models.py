"""The person search network on tiny CPU inputs (resnet18, random init, ~200 px images)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from personsearch.errors import ConfigError, PersonSearchError
from personsearch.models import DEFAULT_MODEL_CONFIG, PersonSearchModel, ReIDOutput, build_model
from personsearch.models.backbone import build_resnet
from personsearch.models.build import CONFIG_DOC
from personsearch.models.weights import resolve_pretrained, torchvision_cache_path

LOSS_KEYS = {"loss_rpn_objectness", "loss_rpn_box", "loss_box_cls", "loss_box_reg", "loss_oim"}
NUM_IDS = 4


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared, loaded CPU this is about twice as fast as two."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(**overrides: dict) -> dict:
    cfg = {
        "backbone": {"arch": "resnet18", "pretrained": "none"},
        "transform": {"min_size": 192, "max_size": 256},
        "rpn": {
            "pre_nms_top_n_train": 300,
            "post_nms_top_n_train": 100,
            "pre_nms_top_n_test": 200,
            "post_nms_top_n_test": 50,
        },
        "box_head": {"batch_size_per_image": 64, "score_thresh": 0.0},
        "oim": {"queue_size": 16},
    }
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def tiny_model(**overrides: dict) -> PersonSearchModel:
    torch.manual_seed(0)
    return build_model(tiny_config(**overrides), num_classes=NUM_IDS)


def batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 160, 224, generator=gen), torch.rand(3, 200, 180, generator=gen)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 60.0, 140.0], [100.0, 30.0, 150.0, 150.0]]),
            "labels": torch.tensor([0, -1]),
        },
        {"boxes": torch.tensor([[40.0, 40.0, 90.0, 180.0]]), "labels": torch.tensor([3])},
    ]
    return images, targets


def test_config_documented_and_validated() -> None:
    documented = {f"{s}.{k}" for s, keys in DEFAULT_MODEL_CONFIG.items() for k in keys}
    assert documented == set(CONFIG_DOC)
    with pytest.raises(ConfigError):
        build_model({"rpn": {"anchor_size": [8]}}, num_classes=2)
    with pytest.raises(ConfigError):
        build_model({"detector": {}}, num_classes=2)


def test_structure() -> None:
    model = tiny_model(rpn={"anchor_sizes": [16, 32], "aspect_ratios": [1.0, 2.0]})
    assert model.rpn.anchor_generator.num_anchors_per_location() == [4]
    assert model.oim.lut.shape == (NUM_IDS, 256) and model.oim.cq.shape == (16, 256)
    assert {"oim.lut", "oim.cq", "oim.cq_ptr"} <= set(model.state_dict())
    conv1 = model.backbone[0]
    assert not conv1.weight.requires_grad
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.modules())
    det_res5, reid_res5 = model.roi_heads.box_head.res5, model.reid_head.res5
    for (_, a), (_, b) in zip(det_res5.named_parameters(), reid_res5.named_parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # same init, separate copies


def test_train_mode_losses_and_outputs() -> None:
    model = tiny_model()
    model.train()
    images, targets = batch()
    extra = [t["boxes"] + 2.0 for t in targets]
    losses, outputs = model(images, targets, extra_boxes=extra, return_outputs=True)
    assert set(losses) == LOSS_KEYS
    for value in losses.values():
        assert value.dim() == 0 and torch.isfinite(value)
    gt = outputs.gt
    assert isinstance(gt, ReIDOutput) and gt.embeddings.shape == (3, 256) and gt.counts == [2, 1]
    assert gt.probabilities.shape == (3, NUM_IDS)
    torch.testing.assert_close(gt.probabilities.sum(1), torch.ones(3))
    assert outputs.gt_labels.tolist() == [0, -1, 3]
    assert outputs.extra.embeddings.shape == (3, 256)
    # A distillation wrapper may back-propagate through the GT / extra Re-ID outputs after the OIM update.
    distill = gt.probabilities.log().mean() + outputs.extra.embeddings.sum() + outputs.extra.probabilities.sum()
    (sum(losses.values()) + distill).backward()
    assert model.reid_head.projection.weight.grad is not None
    assert model.roi_heads.box_head.cls_score.weight.grad is not None
    assert model.rpn.head.conv[0][0].weight.grad is not None
    assert model.oim.lut[0].norm() > 0.99 and model.oim.lut[3].norm() > 0.99  # labelled slots written
    assert int(model.oim.cq_ptr) > 0  # unlabelled person pushed


def test_degenerate_box_is_rejected() -> None:
    model = tiny_model()
    model.train()
    images, targets = batch()
    targets[0]["boxes"][0, 2] = 5.0
    with pytest.raises(ValueError, match="degenerate"):
        model(images, targets)


def test_reid_outputs_hook() -> None:
    model = tiny_model()
    model.eval()
    images, targets = batch()
    image_list, _ = model.transform(images, None)
    features = model.features(image_list)
    out = model.reid_outputs(features, [targets[0]["boxes"], torch.zeros((0, 4))])
    assert out.counts == [2, 0] and out.embeddings.shape == (2, 256) and out.probabilities.shape == (2, NUM_IDS)
    embeddings, probabilities = out.split()
    assert embeddings[1].shape == (0, 256) and probabilities[0].shape == (2, NUM_IDS)


def test_image_without_people_trains() -> None:
    model = tiny_model()
    model.train()
    images, targets = batch()
    targets[1] = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.long)}
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())


def test_eval_mode_detections() -> None:
    model = tiny_model()
    model.eval()
    images, _ = batch()
    detections = model(images)
    assert len(detections) == 2
    for det, image in zip(detections, images):
        n = len(det["boxes"])
        assert n > 0 and det["boxes"].shape == (n, 4) and det["scores"].shape == (n,)
        assert det["embeddings"].shape == (n, 256)
        torch.testing.assert_close(det["embeddings"].norm(dim=1), torch.ones(n))
        assert float(det["boxes"][:, 2].max()) <= image.shape[2] + 1e-3  # mapped back to input pixels
        assert float(det["boxes"][:, 3].max()) <= image.shape[1] + 1e-3


def test_score_weighted_embeddings_switch() -> None:
    model = tiny_model(reid={"score_weighted_embeddings": True})
    model.eval()
    det = model(batch()[0])[0]
    torch.testing.assert_close(det["embeddings"].norm(dim=1), det["scores"])


def test_query_embeddings() -> None:
    model = tiny_model()
    model.eval()
    images, targets = batch()
    boxes = [t["boxes"] for t in targets]
    query = model(images, query_boxes=boxes)
    assert [q.shape for q in query] == [(2, 256), (1, 256)]
    torch.testing.assert_close(query[0].norm(dim=1), torch.ones(2))
    alone = model.extract_query_features(images[:1], boxes[:1])[0]
    # Alone the image is padded less than in the batch; only the border context differs.
    torch.testing.assert_close(alone, query[0], atol=1e-2, rtol=0)


def test_weights_auto_missing_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.warns(UserWarning, match="resnet18-f37072fd.pth"):
        assert resolve_pretrained("resnet18", "auto") is None
    with pytest.raises(PersonSearchError, match=r"https://download\.pytorch\.org/models/resnet18"):
        resolve_pretrained("resnet18", "imagenet")
    with pytest.raises(PersonSearchError, match="does not exist"):
        resolve_pretrained("resnet18", str(tmp_path / "nope.pth"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_pretrained("resnet18", "none") is None


def test_weights_loaded_from_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    torch.manual_seed(3)
    reference = build_resnet("resnet18", frozen_bn=False).state_dict()
    path = torchvision_cache_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    model = build_model(tiny_config(backbone={"pretrained": "imagenet"}), num_classes=2)
    torch.testing.assert_close(model.backbone[0].weight, reference["conv1.weight"])
    torch.testing.assert_close(model.reid_head.res5[0][0].conv1.weight, reference["layer4.0.conv1.weight"])
    torch.testing.assert_close(model.roi_heads.box_head.res5[0][0].conv1.weight, reference["layer4.0.conv1.weight"])


def synthetic_scene() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """One grey image with two coloured rectangles as 'people' (identities 0 and 1)."""
    image = torch.full((3, 192, 192), 0.5)
    image[:, 30:150, 20:70] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    image[:, 50:170, 110:160] = torch.tensor([0.1, 0.2, 0.9])[:, None, None]
    boxes = torch.tensor([[20.0, 30.0, 70.0, 150.0], [110.0, 50.0, 160.0, 170.0]])
    return [image], [{"boxes": boxes, "labels": torch.tensor([0, 1])}]


@pytest.mark.slow
def test_overfit_one_synthetic_image() -> None:
    model = tiny_model(transform={"min_size": 128, "max_size": 160})
    model.train()
    images, targets = synthetic_scene()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    totals = []
    for _ in range(20):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        totals.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(totals)))
    assert sum(totals[-3:]) / 3 < 0.7 * sum(totals[:3]) / 3, totals


def test_bfloat16_autocast_keeps_boxes_and_embeddings_fp32() -> None:
    model = tiny_model()
    model.train()
    images, targets = (x[:1] for x in batch())  # one image: bf16 convolutions are slow on CPU
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        losses, outputs = model(images, targets, return_outputs=True)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert outputs.gt.embeddings.dtype == torch.float32
    sum(losses.values()).backward()
    model.eval()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        det = model(images)[0]
    assert det["boxes"].dtype == torch.float32 and det["embeddings"].dtype == torch.float32


def test_inference_paths_need_eval_mode() -> None:
    model = tiny_model()
    model.train()
    images, targets = batch()
    with pytest.raises(RuntimeError, match="eval"):
        model.detect(images)
    with pytest.raises(RuntimeError, match="eval"):
        model(images, query_boxes=[t["boxes"] for t in targets])


def test_detached_reid_outputs_train_the_reid_head_only() -> None:
    model = tiny_model()
    model.train()
    images, targets = batch()
    extra = [t["boxes"] + 2.0 for t in targets]
    _, outputs = model(images, targets, extra_boxes=extra, return_outputs=True, reid_grad_scale=0.0)
    detached = outputs.gt_scaled
    assert detached is not None and detached.embeddings.shape == outputs.gt.embeddings.shape
    assert detached.counts == outputs.gt.counts
    (detached.embeddings.sum() + detached.probabilities.sum() + outputs.extra.embeddings.sum()).backward()
    assert model.reid_head.projection.weight.grad is not None
    trainable = [p for p in model.backbone.parameters() if p.requires_grad]
    assert trainable and all(p.grad is None for p in trainable)  # nothing reached the shared backbone
    _, plain = model(images, targets, return_outputs=True)
    assert plain.gt_scaled is None
    with pytest.raises(ValueError, match="reid_grad_scale"):
        model(images, targets, return_outputs=True, reid_grad_scale=1.5)


def test_scaled_reid_outputs_scale_the_backbone_gradient_only() -> None:
    """reid_grad_scale s: the scaled outputs equal the plain ones (same batch statistics, running statistics
    moved once); a loss on them sends s times the plain gradient into the backbone, the full one into the
    Re-ID head."""
    images, targets = batch()
    torch.manual_seed(0)
    base = tiny_model()
    base.train()
    grads, buffers = {}, {}
    for scale in (1.0, 0.25):
        model = copy.deepcopy(base)
        backbone = [p for p in model.backbone.parameters() if p.requires_grad]
        head = [p for p in model.reid_head.parameters() if p.requires_grad]
        torch.manual_seed(1)
        _, outputs = model(images, targets, return_outputs=True, reid_grad_scale=scale)
        out = outputs.gt if scale == 1 else outputs.gt_scaled
        if scale < 1:
            torch.testing.assert_close(out.embeddings, outputs.gt.embeddings, rtol=0, atol=0)
            torch.testing.assert_close(out.probabilities, outputs.gt.probabilities, rtol=0, atol=0)
        loss = (out.embeddings * torch.linspace(-1, 1, out.embeddings.shape[-1])).sum()
        grads[scale] = (torch.autograd.grad(loss, backbone + head), len(backbone))
        buffers[scale] = [b.clone() for b in model.reid_head.buffers()]
    (full, n), (scaled, _) = grads[1.0], grads[0.25]
    assert any(g.abs().sum() > 0 for g in full[:n])
    for f, s in zip(full[:n], scaled[:n]):
        torch.testing.assert_close(s, 0.25 * f, rtol=1e-4, atol=1e-7)
    for f, s in zip(full[n:], scaled[n:]):
        torch.testing.assert_close(s, f, rtol=1e-4, atol=1e-7)
    for a, b in zip(buffers[1.0], buffers[0.25]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
