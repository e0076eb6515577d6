"""Training-free floors, embedding spectra, LUT alignment, and the OIM options that break its collapse."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from personsearch.evaluation.embedding_stats import lut_alignment, spectrum_summary
from personsearch.evaluation.floors import ColourHistogramEmbedder, RandomEmbedder, rgb_to_hsv
from personsearch.models.oim import OIMLoss


def test_rgb_to_hsv_matches_colorsys():
    rng = np.random.default_rng(0)
    pixels = rng.random((3, 5, 7)).astype(np.float32)
    hsv = rgb_to_hsv(torch.from_numpy(pixels)).numpy()
    for y in range(5):
        for x in range(7):
            expected = colorsys.rgb_to_hsv(*pixels[:, y, x])
            np.testing.assert_allclose(hsv[:, y, x], expected, atol=1e-5)


def test_colour_histogram_separates_colours_and_ignores_layout():
    red = torch.zeros(3, 40, 40)
    red[0] = 0.9
    blue = torch.zeros(3, 40, 40)
    blue[2] = 0.9
    mixed = red.clone()
    mixed[:, :, 20:] = blue[:, :, 20:]
    flipped = mixed.flip(-1)
    embed = ColourHistogramEmbedder()
    box = torch.tensor([[0.0, 0.0, 40.0, 40.0]])
    r, b, m, f = (embed([img], [box])[0][0] for img in (red, blue, mixed, flipped))
    assert r.shape == (128,) and float(r.norm()) == pytest.approx(1.0)
    assert float(r @ b) == pytest.approx(0.0)  # disjoint bins
    assert float(m @ f) == pytest.approx(1.0)  # the same colours, other layout
    assert float(r @ m) == pytest.approx(np.sqrt(0.5), abs=1e-6)  # Bhattacharyya of 1 vs (1/2, 1/2)


def test_colour_histogram_of_an_empty_box_is_zero():
    out = ColourHistogramEmbedder()([torch.rand(3, 10, 10)], [torch.tensor([[20.0, 20.0, 30.0, 30.0]])])[0]
    assert torch.count_nonzero(out) == 0


def test_random_embedder_is_seeded_unit_rows():
    boxes = [torch.zeros(4, 4), torch.zeros(2, 4)]
    a = RandomEmbedder(16, seed=3)([torch.zeros(3, 2, 2)] * 2, boxes)
    b = RandomEmbedder(16, seed=3)([torch.zeros(3, 2, 2)] * 2, boxes)
    assert [t.shape for t in a] == [(4, 16), (2, 16)]
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[0].norm(dim=1), torch.ones(4))


def test_spectrum_summary_tells_collapsed_from_isotropic():
    rng = np.random.default_rng(0)
    isotropic = rng.standard_normal((2000, 32))
    collapsed = rng.standard_normal((2000, 2)) @ rng.standard_normal((2, 32)) + 1e-4 * isotropic
    iso, col = spectrum_summary(isotropic), spectrum_summary(collapsed)
    assert iso["effective_rank"] > 28 and iso["dims_for_99"] > 28
    assert col["top5_share"] > 0.999 and col["dims_for_99"] <= 2 and col["effective_rank"] < 2.1
    assert spectrum_summary(np.zeros((1, 4)))["effective_rank"] == 0.0


def test_lut_alignment_of_class_means():
    feats = np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0], [0.5, 0.5]])
    labels = np.array([0, 0, 1, -1])
    lut = np.array([[2.0, 0.0], [0.0, -1.0]])  # row 0 near its class mean, row 1 opposite
    out = lut_alignment(lut, feats, labels)
    unit = feats[:2] / np.linalg.norm(feats[:2], axis=1, keepdims=True)  # features count by direction only
    mean0 = unit.mean(0) / np.linalg.norm(unit.mean(0))
    assert out["classes"] == 2
    assert out["min"] == pytest.approx(-1.0)
    assert out["mean"] == pytest.approx((mean0[0] - 1.0) / 2)


def _oim_feature_gradient(oim: OIMLoss, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    features = features.clone().requires_grad_(True)
    oim(features, labels, update=False).backward()
    return features.grad


def test_zero_lut_oim_gradient_stays_in_the_memory_span():
    """The reference OIM cannot leave the span of what it stored: the defect the options below address."""
    torch.manual_seed(0)
    oim = OIMLoss(8, 4, queue_size=0, scalar=10)
    stored = torch.nn.functional.normalize(torch.randn(4, 8) * torch.tensor([1.0, 1.0] + [0.0] * 6), dim=1)
    oim.lut.copy_(stored)  # memory confined to the first two dimensions
    feats = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    grad = _oim_feature_gradient(oim, feats, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert torch.count_nonzero(grad[:, 2:]) == 0
    fresh = OIMLoss(8, 4, queue_size=0, scalar=10)  # zero memory: no gradient at all
    assert torch.count_nonzero(_oim_feature_gradient(fresh, feats, torch.tensor([0, 1, 2, 3, 0, 1]))) == 0


def test_random_lut_and_classifier_give_full_rank_gradients():
    torch.manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    random_lut = OIMLoss(8, 4, queue_size=0, scalar=10, lut_init="random")
    assert torch.allclose(random_lut.lut.norm(dim=1), torch.ones(4))
    assert torch.count_nonzero(_oim_feature_gradient(random_lut, feats, labels)[:, 2:]) > 0
    with_classifier = OIMLoss(8, 4, queue_size=0, scalar=10, classifier_weight=1.0)
    assert torch.count_nonzero(_oim_feature_gradient(with_classifier, feats, labels)) > 0
    assert with_classifier.classifier is not None and with_classifier.classifier.requires_grad
    loss = with_classifier(feats, labels, update=False)
    loss.backward()
    assert with_classifier.classifier.grad is not None
    with pytest.raises(ValueError, match="lut_init"):
        OIMLoss(8, 4, lut_init="ones")
