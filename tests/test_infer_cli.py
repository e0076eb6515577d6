"""``personsearch train / infer / test / evaluate`` chained on a tiny synthetic dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from personsearch.cli import main
from personsearch.data.synthetic import generate_dataset

from handmade import TINY_MODEL


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("infer")
    root = generate_dataset("cuhk-sysu", work / "CUHK-SYSU", "tiny", seed=3).root
    run = work / "run"
    code = main(
        [
            "train",
            "--no-progress",
            f"dataset.root={root}",
            f"output_dir={run}",
            "train.epochs=1",
            "train.max_iters_per_epoch=2",
            "train.batch_size=2",
            "train.workers=0",
            "train.eval_period=-1",
            "train.tensorboard=false",
            *TINY_MODEL,
        ]
    )
    assert code == 0
    return root, run


def test_test_writes_results_with_cbgm_context_and_every_gallery_size(trained, tmp_path, capsys):
    root, run = trained
    out, report = tmp_path / "results.npz", tmp_path / "report.json"
    assert (
        main(
            [
                "test",
                "--checkpoint",
                str(run / "last.pth"),
                "--dataset",
                "cuhk-sysu",
                "--root",
                str(root),
                "--out",
                str(out),
                "--workers",
                "0",
                "--no-progress",
                "--json",
                str(report),
                "--cbgm",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "gallery" in printed and "full" in printed
    assert [row["gallery_size"] for row in json.loads(report.read_text())["sweep"]] == [50, -1]
    with np.load(out, allow_pickle=False) as arrays:
        assert arrays["query_features"].shape[0] == 10
        assert arrays["det_features"].shape[1] == arrays["query_features"].shape[1] == 256
        assert np.allclose(np.linalg.norm(arrays["query_features"], axis=1), 1.0, atol=1e-4)
        # CBGM context: every query image's own detections, its ground-truth box first
        first_rows = np.flatnonzero(np.diff(arrays["query_det_index"], prepend=-1))
        assert arrays["query_det_index"][first_rows].tolist() == list(range(10))
        assert np.allclose(arrays["query_det_features"][first_rows], arrays["query_features"], atol=1e-5)
    metrics = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                "cuhk-sysu",
                "--root",
                str(root),
                "--results",
                str(out),
                "--gallery-size",
                "50",
                "--cbgm",
                "--json",
                str(metrics),
            ]
        )
        == 0
    )
    first = json.loads(report.read_text())["sweep"][0]["search"]
    assert json.loads(metrics.read_text())["search"] == first


def test_infer_requires_out(trained, capsys):
    root, run = trained
    with pytest.raises(SystemExit):
        main(["infer", "--checkpoint", str(run / "last.pth"), "--dataset", "cuhk-sysu", "--root", str(root)])
    assert "--out" in capsys.readouterr().err


def test_resume_flag_conflicts_with_overrides(trained, capsys):
    _, run = trained
    assert main(["train", "--resume", str(run), "train.lr=1"]) == 2
    assert "--resume continues a run" in capsys.readouterr().err
