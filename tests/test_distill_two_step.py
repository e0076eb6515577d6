"""The two-step pipeline: the end-to-end model's detections, re-embedded by the teacher, same results file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from personsearch.config import load_config
from personsearch.engine.checkpoint import save_checkpoint

STUDENT = [
    "model.backbone.arch=resnet18",
    "model.backbone.pretrained=none",
    "model.transform.min_size=128",
    "model.transform.max_size=224",
    "model.rpn.pre_nms_top_n_test=150",
    "model.rpn.post_nms_top_n_test=32",
    "model.box_head.score_thresh=0.0",  # an untrained detector: keep its detections
    "model.box_head.detections_per_img=5",
    "model.oim.queue_size=16",
    "model.reid.embedding_dim=32",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from personsearch.data import load_dataset
    from personsearch.data.synthetic import generate_dataset
    from personsearch.distill.teacher import TeacherNet, TeacherSpec, teacher_checkpoint_state
    from personsearch.models.build import build_model

    base = tmp_path_factory.mktemp("two_step")
    root = base / "data"
    generate_dataset("cuhk-sysu", root, "tiny", 0)
    class_map = load_dataset("cuhk-sysu", root).train_class_map()
    torch.manual_seed(0)
    cfg = load_config(None, STUDENT)
    model = build_model(cfg["model"], len(class_map))
    student = save_checkpoint(
        {"model": model.state_dict(), "config": cfg, "num_classes": len(class_map)}, base / "student.pth"
    )
    teacher = TeacherNet(TeacherSpec("resnet18", len(class_map), 16, input_size=(64, 32)))
    teacher_path = save_checkpoint(teacher_checkpoint_state(teacher, class_map, {}), base / "teacher.pth")
    return root, student, teacher_path


@pytest.mark.slow
def test_two_step_results_file(files, tmp_path: Path) -> None:
    from personsearch.cli import main
    from personsearch.data import load_dataset
    from personsearch.data.images import load_image
    from personsearch.data.torch_dataset import image_to_tensor
    from personsearch.distill.sia import crop_resize
    from personsearch.distill.teacher import load_teacher
    from personsearch.engine.loading import load_trained_model
    from personsearch.evaluation import load_results

    root, student, teacher_path = files
    common = ["--checkpoint", str(student), "--dataset", "cuhk-sysu", "--root", str(root), "--device", "cpu",
              "--workers", "0", "--no-progress"]  # fmt: skip
    assert (
        main(["infer", *common, "--out", str(tmp_path / "two.npz"), "--two-step", "--teacher", str(teacher_path)]) == 0
    )
    two = load_results(tmp_path / "two.npz")
    assert len(two.det_boxes) > 0 and two.feature_dim == 16  # teacher features replace the model's (32)
    np.testing.assert_allclose(np.linalg.norm(two.det_features, axis=1), 1.0, rtol=1e-5)

    data = load_dataset("cuhk-sysu", root)
    model, _, _ = load_trained_model(student, "cpu")
    teacher, _ = load_teacher(teacher_path)
    first = int(two.det_image[0])
    image = image_to_tensor(load_image(data.gallery[first].path))
    rows = two.det_image == first
    det = model([image])[0]  # the end-to-end detections of the same image
    np.testing.assert_array_equal(two.det_boxes[rows], det["boxes"].numpy())
    np.testing.assert_array_equal(two.det_scores[rows], det["scores"].numpy())
    with torch.no_grad():
        want = teacher(crop_resize(image, torch.from_numpy(two.det_boxes[rows]), (64, 32))).embeddings
    np.testing.assert_allclose(two.det_features[rows], want.numpy(), atol=1e-5)
    q = data.queries[0]
    with torch.no_grad():
        qbox = torch.from_numpy(q.box[None].astype(np.float32))
        qwant = teacher(crop_resize(image_to_tensor(load_image(q.path)), qbox, (64, 32))).embeddings
    np.testing.assert_allclose(two.query_features[0], qwant[0].numpy(), atol=1e-5)


@pytest.mark.slow
def test_two_step_with_cbgm_embeds_the_query_images_with_the_teacher(files, tmp_path: Path) -> None:
    from personsearch.cli import main
    from personsearch.data import load_dataset
    from personsearch.data.images import load_image
    from personsearch.data.torch_dataset import image_to_tensor
    from personsearch.distill.sia import crop_resize
    from personsearch.distill.teacher import load_teacher
    from personsearch.evaluation import load_results

    root, student, teacher_path = files
    out, report = tmp_path / "two.npz", tmp_path / "report.json"
    assert main(["test", "--checkpoint", str(student), "--dataset", "cuhk-sysu", "--root", str(root),
                 "--device", "cpu", "--workers", "0", "--no-progress", "--two-step", "--teacher", str(teacher_path),
                 "--cbgm", "--out", str(out), "--json", str(report)]) == 0  # fmt: skip
    assert report.is_file()
    two = load_results(out)
    assert two.query_det_features is not None and two.query_det_features.shape[1] == 16
    data = load_dataset("cuhk-sysu", root)
    teacher, _ = load_teacher(teacher_path)
    for q in range(len(data.queries)):
        rows = np.flatnonzero(two.query_det_index == q)
        # the forced ground-truth query box comes first, with the teacher's query feature
        np.testing.assert_array_equal(two.query_det_boxes[rows[0]], data.queries[q].box.astype(np.float32))
        np.testing.assert_allclose(two.query_det_features[rows[0]], two.query_features[q], atol=1e-5)
    q = int(two.query_det_index[np.flatnonzero(np.bincount(two.query_det_index) > 1)[0]])
    rows = np.flatnonzero(two.query_det_index == q)
    image = image_to_tensor(load_image(data.queries[q].path))
    with torch.no_grad():
        want = teacher(crop_resize(image, torch.from_numpy(two.query_det_boxes[rows[1:]]), (64, 32))).embeddings
    np.testing.assert_allclose(two.query_det_features[rows[1:]], want.numpy(), atol=1e-5)


@pytest.mark.slow
def test_gt_reid_is_the_teacher_protocol_for_both_embedders(files, tmp_path: Path) -> None:
    """``test --gt-reid``: with --two-step it reproduces the teacher's own evaluation exactly; for the end-to-end
    model it is the same protocol over the model's embeddings of the same ground-truth boxes."""
    import json

    from personsearch.cli import main
    from personsearch.data import load_dataset
    from personsearch.distill.teacher import load_teacher
    from personsearch.distill.teacher_train import evaluate_teacher
    from personsearch.engine.loading import load_trained_model
    from personsearch.evaluation.crop_reid import crop_reid_metrics

    root, student, teacher_path = files
    common = ["test", "--checkpoint", str(student), "--dataset", "cuhk-sysu", "--root", str(root), "--device", "cpu",
              "--workers", "0", "--no-progress", "--gt-reid"]  # fmt: skip
    assert main([*common, "--two-step", "--teacher", str(teacher_path), "--json", str(tmp_path / "two.json")]) == 0
    assert main([*common, "--json", str(tmp_path / "e2e.json")]) == 0
    two = json.loads((tmp_path / "two.json").read_text())["gt_box_reid"]
    e2e = json.loads((tmp_path / "e2e.json").read_text())["gt_box_reid"]

    data = load_dataset("cuhk-sysu", root)
    teacher, _ = load_teacher(teacher_path)
    want = evaluate_teacher(teacher, data, torch.device("cpu"))
    assert two["queries"] == want["queries"] > 0
    assert two["mAP"] == pytest.approx(want["mAP"], abs=1e-6) and two["top1"] == pytest.approx(want["top1"])

    model, _, _ = load_trained_model(student, "cpu")
    from personsearch.data.images import load_image
    from personsearch.data.torch_dataset import image_to_tensor

    def embed(path: Path, boxes: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            image = image_to_tensor(load_image(path))
            return model.extract_query_features([image], [torch.from_numpy(boxes.astype(np.float32))])[0]

    qf = torch.cat([embed(q.path, q.box[None]) for q in data.queries])
    gallery = [r for r in data.gallery if len(r.boxes)]
    gf = torch.cat([embed(r.path, np.asarray(r.boxes)) for r in gallery])
    by_hand = crop_reid_metrics(
        qf, np.array([q.pid for q in data.queries]), [q.name for q in data.queries],
        gf, np.concatenate([r.pids for r in gallery]), [r.name for r in gallery for _ in r.boxes],
    )  # fmt: skip
    assert e2e == pytest.approx(by_hand, abs=1e-6)


def test_two_step_flags_go_together(files, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from personsearch.cli import main

    root, student, teacher_path = files
    common = ["infer", "--checkpoint", str(student), "--dataset", "cuhk-sysu", "--root", str(root), "--device", "cpu",
              "--out", str(tmp_path / "x.npz"), "--no-progress"]  # fmt: skip
    assert main([*common, "--two-step"]) == 2
    assert "go together" in capsys.readouterr().err
    assert main([*common, "--teacher", str(teacher_path)]) == 2


def test_time_pipelines_reports_a_ratio(files) -> None:
    from personsearch.data import load_dataset
    from personsearch.distill.teacher import load_teacher
    from personsearch.distill.two_step import time_pipelines
    from personsearch.engine.loading import load_trained_model

    root, student, teacher_path = files
    model, _, device = load_trained_model(student, "cpu")
    teacher, _ = load_teacher(teacher_path)
    timing = time_pipelines(model, teacher, load_dataset("cuhk-sysu", root), device, images=2)
    assert timing["images"] == 2 and timing["end_to_end_s"] > 0 and timing["ratio"] > 0
    assert timing["ratio"] == pytest.approx(timing["two_step_s"] / timing["end_to_end_s"])
