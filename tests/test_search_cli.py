"""``personsearch search`` with an arbitrary query box embedded by a trained model, and without a results
file (inference runs first): the tiny checkpoint and dataset of :mod:`test_footage_query`."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from personsearch.cli import main
from test_footage_query import env  # noqa: F401  (the module's tiny checkpoint and dataset)


def test_search_a_box_in_an_image_runs_inference_first(env, tmp_path: Path, capsys) -> None:  # noqa: F811
    root = env["work"] / "CUHK-SYSU"
    image = sorted((root / "Image" / "SSM").glob("*.jpg"))[0]
    width, height = Image.open(image).size
    out, hits = tmp_path / "v.png", tmp_path / "hits.json"
    argv = ["search", "--dataset", "cuhk-sysu", "--root", root, "--checkpoint", env["checkpoint"], "--device", "cpu"]
    argv += ["--det-thresh", "0", "--top", "3", "--image", image, f"--box=-5,2,40,{height + 10}"]
    assert main([str(a) for a in [*argv, "--out", out, "--json", hits]]) == 0
    printed = capsys.readouterr().out
    payload = json.loads(hits.read_text())
    assert payload["query"].startswith(f"{image.name} box [0.0, 2.0, 40.0, {height}")  # clipped to the image
    assert len(payload["hits"]) <= 3 and all(h["image"] != image.name for h in payload["hits"])
    assert printed.startswith(payload["query"] + ": top ") and "in the whole gallery" in printed
    assert f"picture: {out}" in printed and Image.open(out).format == "PNG"
    assert width > 40


def test_search_needs_results_or_a_checkpoint(env, tmp_path: Path, capsys) -> None:  # noqa: F811
    root = env["work"] / "CUHK-SYSU"
    assert main(["search", "--dataset", "cuhk-sysu", "--root", str(root), "--out", str(tmp_path / "v.png")]) == 2
    assert "give --results (a results file) or --checkpoint" in capsys.readouterr().err
