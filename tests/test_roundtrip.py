"""Generator to loader round trip: what the synthetic generator drew is what the loaders read."""

from __future__ import annotations

import pytest

from personsearch.data import load_dataset
from personsearch.data.stats import dataset_statistics
from personsearch.data.synthetic import generate_dataset


@pytest.fixture(scope="module", params=["cuhk-sysu", "prw"])
def generated(request, tmp_path_factory):
    truth = generate_dataset(request.param, tmp_path_factory.mktemp(request.param) / "data", "tiny", seed=5)
    return truth, load_dataset(request.param, truth.root)


def test_images_boxes_and_identities(generated):
    truth, data = generated
    for split in ("train", "gallery"):
        expected = truth.split(split)
        loaded = data.split(split)
        assert [r.name for r in loaded] == [t.name for t in expected]
        for record, image in zip(loaded, expected, strict=True):
            assert record.boxes.tolist() == [list(b) for b in image.boxes], record.name
            assert record.pids.tolist() == image.pids, record.name
            assert record.cam_id == image.cam
            assert record.size() == image.size


def test_queries(generated):
    truth, data = generated
    assert [(q.name, q.box.tolist(), q.pid, q.cam_id) for q in data.queries] == [
        (q.image, list(q.box), q.pid, q.cam) for q in truth.queries
    ]


def test_counts_and_identity_table(generated):
    truth, data = generated
    stats = dataset_statistics(data)
    assert stats["train"]["identities"] == data.num_train_classes == len(truth.train_ids)
    assert stats["query"]["count"] == len(truth.queries)
    assert data.dropped_boxes == truth.num_zero_size_boxes
    if truth.fmt == "cuhk-sysu":
        assert data.protocol_sizes == truth.gallery_sizes
    assert not data.warnings
