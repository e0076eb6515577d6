"""Spatial-invariant augmentation: shift ranges, shared offsets, boxes inside the enlarged box and image."""

from __future__ import annotations

import torch

from personsearch.distill.sia import (
    SIASettings,
    apply_offsets,
    crop_resize,
    enlarge_boxes,
    perturb_boxes,
    sample_offsets,
    shift_ranges,
)

SETTINGS = SIASettings(alpha=16.0, dp=8.0, input_size=(256, 128))


def test_shift_ranges_formula() -> None:
    boxes = torch.tensor([[10.0, 20.0, 74.0, 148.0], [0.0, 0.0, 400.0, 900.0]])  # 64x128 and 400x900
    r = shift_ranges(boxes, SETTINGS)
    # r_w = min(2*64*8/128, 16) = 8, r_h = min(2*128*8/256, 16) = 8; the large box hits alpha on both
    assert r.tolist() == [[8.0, 8.0, 8.0, 8.0], [16.0, 16.0, 16.0, 16.0]]
    r2 = shift_ranges(boxes[:1], SIASettings(alpha=5.0, dp=8.0, input_size=(256, 128)))
    assert r2.tolist() == [[5.0, 5.0, 5.0, 5.0]]


def test_offsets_move_each_edge_by_offset_times_range() -> None:
    boxes = torch.tensor([[100.0, 100.0, 164.0, 228.0]])
    offsets = torch.tensor([[1.0, -1.0, 0.5, 0.0]])
    out = apply_offsets(boxes, offsets, SETTINGS, image_size=(480, 640))
    assert out.tolist() == [[108.0, 92.0, 168.0, 228.0]]
    assert apply_offsets(boxes, torch.zeros(1, 4), SETTINGS, (480, 640)).tolist() == boxes.tolist()


def test_offsets_are_uniform_in_unit_range_and_follow_the_global_rng() -> None:
    torch.manual_seed(3)
    a = sample_offsets(2000)
    torch.manual_seed(3)
    b = sample_offsets(2000)
    assert torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert a.min() < -0.95 and a.max() > 0.95 and abs(float(a.mean())) < 0.05
    g = torch.Generator().manual_seed(3)
    assert torch.equal(sample_offsets(5, g), sample_offsets(5, torch.Generator().manual_seed(3)))


def test_perturbed_boxes_stay_inside_enlarged_box_and_image() -> None:
    torch.manual_seed(0)
    height, width = 200, 300
    boxes = torch.tensor(
        [[0.0, 0.0, 40.0, 90.0], [280.0, 150.0, 300.0, 200.0], [100.0, 50.0, 180.0, 190.0], [5.0, 5.0, 7.0, 8.0]]
    )
    outer = enlarge_boxes(boxes, SETTINGS.alpha, (height, width))
    ranges = shift_ranges(boxes, SETTINGS)
    for _ in range(200):
        out, offsets = perturb_boxes(boxes, SETTINGS, (height, width))
        assert torch.all(out[:, 0] >= outer[:, 0]) and torch.all(out[:, 2] <= outer[:, 2])
        assert torch.all(out[:, 1] >= outer[:, 1]) and torch.all(out[:, 3] <= outer[:, 3])
        assert torch.all(out >= 0) and torch.all(out[:, 2] <= width) and torch.all(out[:, 3] <= height)
        assert torch.all(out[:, 2] > out[:, 0]) and torch.all(out[:, 3] > out[:, 1])
        assert torch.all((out - boxes).abs() <= ranges + 1e-5)
        assert offsets.shape == (4, 4)


def test_extreme_offsets_are_clipped_to_the_image() -> None:
    boxes = torch.tensor([[2.0, 3.0, 66.0, 131.0]])  # 64x128: ranges 8
    out = apply_offsets(boxes, torch.tensor([[-1.0, -1.0, 1.0, 1.0]]), SETTINGS, image_size=(135, 70))
    assert out.tolist() == [[0.0, 0.0, 70.0, 135.0]]


def test_tiny_box_keeps_its_edges_when_the_perturbation_would_collapse_it() -> None:
    boxes = torch.tensor([[10.0, 10.0, 10.5, 10.5]])
    out = apply_offsets(boxes, torch.tensor([[1.0, 1.0, -1.0, -1.0]]), SETTINGS, (100, 100))
    assert out.tolist() == boxes.tolist()


def test_crop_resize_identity_and_flip() -> None:
    torch.manual_seed(0)
    image = torch.rand(3, 8, 4)
    crop = crop_resize(image, torch.tensor([[0.0, 0.0, 4.0, 8.0]]), (8, 4))
    assert crop.shape == (1, 3, 8, 4)
    assert torch.allclose(crop[0], image, atol=1e-6)
    sub = crop_resize(image, torch.tensor([[1.0, 2.0, 3.0, 6.0]]), (4, 2))
    assert torch.allclose(sub[0], image[:, 2:6, 1:3], atol=1e-6)
    assert crop_resize(image, torch.zeros(0, 4), (8, 4)).shape == (0, 3, 8, 4)
