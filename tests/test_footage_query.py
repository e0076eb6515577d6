"""``personsearch query`` and ``Searcher.query`` over a real gallery index of folders and a video: each query
mode, the filters, JSON, the HTML report and contact sheet, and every bad input as one line with exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from personsearch.cli import main
from personsearch.data.synthetic import generate_dataset
from personsearch.errors import PersonSearchError

from handmade import TINY_MODEL

SIZE = (320, 240)


def _write_video(path, frames, fps=1):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny checkpoint; footage: cam1/ (3 images), cam2/ (2 images), walk.mp4 (4 s at 1 fps); the index."""
    from personsearch import Searcher

    work = tmp_path_factory.mktemp("query")
    data = generate_dataset("cuhk-sysu", work / "CUHK-SYSU", "tiny", seed=5)
    run = work / "run"
    overrides = ["train.epochs=1", "train.max_iters_per_epoch=1", "train.batch_size=2", "train.workers=0"]
    overrides += ["train.eval_period=-1", "train.tensorboard=false", "model.box_head.detections_per_img=6"]
    root = data.root
    assert main(["train", "--no-progress", f"dataset.root={root}", f"output_dir={run}", *overrides, *TINY_MODEL]) == 0
    scenes = sorted((root / "Image" / "SSM").glob("*.jpg"))[:9]
    footage = work / "footage"
    for folder, chosen in (("cam1", scenes[:3]), ("cam2", scenes[3:5])):
        (footage / folder).mkdir(parents=True)
        for scene in chosen:
            shutil.copy(scene, footage / folder / scene.name)
    frames = [np.asarray(Image.open(s).convert("RGB").resize(SIZE)) for s in scenes[5:9]]
    _write_video(footage / "walk.mp4", frames)
    checkpoint = run / "last.pth"
    searcher = Searcher.from_checkpoint(checkpoint, device="cpu", det_thresh=0.0)
    index = work / "gallery.index"
    sources = [footage / "cam1", footage / "cam2", footage / "walk.mp4"]
    searcher.build_index(index, sources, fps=1.0, progress=False)
    query_image = footage / "cam1" / scenes[0].name
    return {
        "work": work,
        "checkpoint": checkpoint,
        "searcher": searcher,
        "index": index,
        "footage": footage,
        "query_image": query_image,
    }


def _main(*args):
    """``personsearch`` with ``args``; its exit code (argparse exits with a SystemExit)."""
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code


def _query(capsys, env, *args):
    code = _main("query", "--index", env["index"], *args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ok(capsys, env, *args):
    code, out, err = _query(capsys, env, *args)
    assert code == 0, err
    return out


def _error(capsys, env, *args):
    code, out, err = _query(capsys, env, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("personsearch query: error:") or "error: argument" in lines[0], lines[0]
    return lines[0]


def test_box_query_prints_a_table_and_writes_json_matching_the_api(env, capsys, tmp_path):
    out_json = tmp_path / "hits.json"
    box = "20,30,90,200"
    out = _ok(capsys, env, "--image", env["query_image"], "--box", box, "--top-k", 5, "--json", out_json)
    assert re.search(r"rank\s+image\s+time\s+box\s+score\s+similarity", out)
    payload = json.loads(out_json.read_text())
    hits = payload["hits"]
    assert 1 <= len(hits) <= 5 and [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)
    assert payload["query"] == {"image": str(env["query_image"]), "box": [20.0, 30.0, 90.0, 200.0], "mode": "box"}
    for h in hits:  # each hit is a row of the table, path first
        assert {"rank", "image_id", "path", "source", "timestamp", "box", "score", "similarity"} <= set(h)
        assert h["path"] in out and len(h["box"]) == 4
    # the query image is in the index: its own detections are left out unless asked for
    assert str(os.path.abspath(env["query_image"])) not in {h["path"] for h in hits}
    api = env["searcher"].query(env["index"], env["query_image"], box=[20, 30, 90, 200], top_k=5)
    assert [(h.path, h.image_id) for h in api] == [(h["path"], h["image_id"]) for h in hits]
    np.testing.assert_allclose([h.similarity for h in api], sims, atol=1e-5)
    kept = tmp_path / "kept.json"
    _ok(
        capsys,
        env,
        "--image",
        env["query_image"],
        "--box",
        box,
        "--top-k",
        200,
        "--include-query-image",
        "--json",
        kept,
    )
    assert os.path.abspath(env["query_image"]) in {h["path"] for h in json.loads(kept.read_text())["hits"]}


def test_pick_lists_people_on_a_picture_then_queries_one(env, capsys, tmp_path):
    picture, listed = tmp_path / "people.png", tmp_path / "people.json"
    out = _ok(capsys, env, "--image", env["query_image"], "--pick", "--sheet", picture, "--json", listed)
    people = json.loads(listed.read_text())["people"]
    assert people and [p["number"] for p in people] == list(range(1, len(people) + 1))
    assert [p["score"] for p in people] == sorted((p["score"] for p in people), reverse=True)
    assert f"{len(people)} people detected" in out or "1 person detected" in out
    with Image.open(picture) as img:
        assert img.size == Image.open(env["query_image"]).size
    # "list" means the same; the default picture goes next to --report
    out = _ok(capsys, env, "--image", env["query_image"], "--pick", "list", "--report", tmp_path / "r" / "x.html")
    assert (tmp_path / "r" / f"{env['query_image'].stem}.people.png").is_file()
    assert not (tmp_path / "r" / "x.html").exists()  # listing only: nothing searched
    n = min(2, len(people))
    hits_json = tmp_path / "pick.json"
    _ok(capsys, env, "--image", env["query_image"], "--pick", n, "--top-k", 3, "--json", hits_json)
    payload = json.loads(hits_json.read_text())
    assert payload["query"]["mode"] == "pick"
    np.testing.assert_allclose(payload["query"]["box"], people[n - 1]["box"], atol=1e-3)
    assert payload["hits"]


def test_crop_query_uses_the_whole_image(env, capsys, tmp_path):
    crop = tmp_path / "person.jpg"
    Image.open(env["query_image"]).crop((20, 30, 90, 200)).save(crop)
    out_json = tmp_path / "crop.json"
    _ok(capsys, env, "--crop", crop, "--top-k", 4, "--json", out_json)
    payload = json.loads(out_json.read_text())
    assert payload["query"] == {"image": str(crop), "box": [0.0, 0.0, 70.0, 170.0], "mode": "crop"}
    assert len(payload["hits"]) == 4
    api = env["searcher"].query(env["index"], Image.open(crop), top_k=4)  # box None: the whole image
    assert [h.image_id for h in api] == [h["image_id"] for h in payload["hits"]]


def test_filters_by_source_and_time_range(env, capsys, tmp_path):
    cam2 = env["footage"] / "cam2"
    out_json = tmp_path / "cam2.json"
    _ok(capsys, env, "--image", env["query_image"], "--box", "20,30,90,200", "--top-k", 50, "--source", cam2,
        "--json", out_json)  # fmt: skip
    hits = json.loads(out_json.read_text())["hits"]
    assert hits and {h["source"] for h in hits} == {os.path.abspath(cam2)}
    video = env["footage"] / "walk.mp4"
    _ok(capsys, env, "--image", env["query_image"], "--box", "20,30,90,200", "--top-k", 50, "--time-range", "1,2.5",
        "--json", out_json)  # fmt: skip
    hits = json.loads(out_json.read_text())["hits"]
    assert hits and all(h["timestamp"] is not None and 1.0 <= h["timestamp"] <= 2.5 for h in hits)
    assert {h["path"] for h in hits} == {os.path.abspath(video)}
    out = _ok(capsys, env, "--image", env["query_image"], "--box", "20,30,90,200", "--top-k", 50, "--source", video)
    assert re.search(r"\b0:0[0-3]\.00\b", out)  # video timestamps in the table
    hits = env["searcher"].query(env["index"], env["query_image"], [20, 30, 90, 200], 50, sources=[str(cam2)])
    assert hits and {h.source for h in hits} == {os.path.abspath(cam2)}


def test_html_report_is_one_self_contained_file_and_the_sheet_a_png(env, capsys, tmp_path):
    report, sheet, out_json = tmp_path / "out" / "report.html", tmp_path / "out" / "sheet.png", tmp_path / "h.json"
    _ok(capsys, env, "--image", env["query_image"], "--box", "20,30,90,200", "--top-k", 6, "--report", report,
        "--sheet", sheet, "--json", out_json)  # fmt: skip
    hits = json.loads(out_json.read_text())["hits"]
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html", "sheet.png"]
    text = report.read_text()
    assert "http://" not in text and "https://" not in text and 'src="/' not in text and "<script" not in text
    sources = re.findall(r'<img [^>]*src="([^"]*)"', text)
    assert len(sources) == len(text.split("<img ")) - 1 == len(hits) + 1
    assert all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert re.findall(r"url\(([^)]*)\)", text) and all(
        u.startswith("data:image/jpeg;base64,") for u in re.findall(r"url\(([^)]*)\)", text)
    )
    for h in hits:
        assert f"#{h['rank']}</span> similarity {h['similarity']:.4f}" in text and h["path"] in text
    with Image.open(sheet) as img:
        img.load()
        assert img.format == "PNG" and img.width > 300 and img.height > 200


def test_report_and_sheet_functions(env, tmp_path):
    from personsearch.footage.report import write_contact_sheet, write_html_report
    from personsearch.footage.store import GalleryIndex

    hits = env["searcher"].query(env["index"], env["query_image"], [20, 30, 90, 200], 3)
    with GalleryIndex.open(env["index"]) as index:
        write_html_report(tmp_path / "a.html", env["query_image"], [20, 30, 90, 200], hits, index.read_image)
        write_contact_sheet(tmp_path / "a.png", env["query_image"], [20, 30, 90, 200], [], index.read_image)
    assert (tmp_path / "a.html").read_text().count("<img ") == 4
    assert Image.open(tmp_path / "a.png").format == "PNG"


@pytest.fixture(scope="module")
def other_checkpoint(env):
    """A loadable checkpoint of another model (other bytes, so another model id)."""
    state = torch.load(env["checkpoint"], map_location="cpu", weights_only=True)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    other = env["work"] / "other.pth"
    torch.save(state, other)
    return other


def test_model_id_mismatch_is_one_line(env, capsys, other_checkpoint):
    from personsearch import Searcher

    line = _error(capsys, env, "--image", env["query_image"], "--box", "20,30,90,200", "--checkpoint", other_checkpoint)
    index_id = env["searcher"].model_id[:12]
    other_id = Searcher.from_checkpoint(other_checkpoint, device="cpu").model_id
    assert line.endswith(
        f"index {env['index']} was built with model {index_id}, checkpoint {other_checkpoint} is {other_id[:12]}"
    )
    with pytest.raises(PersonSearchError, match=f"built with model {index_id}, checkpoint .* is {other_id[:12]}"):
        Searcher.from_checkpoint(other_checkpoint, device="cpu").query(env["index"], env["query_image"])
    # the same checkpoint given explicitly is fine
    _ok(capsys, env, "--image", env["query_image"], "--box", "20,30,90,200", "--checkpoint", env["checkpoint"])


def test_bad_input_is_one_line_with_exit_code_2(env, capsys, tmp_path):
    image = env["query_image"]
    width, height = Image.open(image).size
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    corrupt = tmp_path / "corrupt.index"
    corrupt.write_bytes(b"garbage" * 100)
    missing = tmp_path / "missing.index"
    damaged = tmp_path / "damaged.index"
    damaged.mkdir()
    (damaged / "index.sqlite").write_bytes(b"garbage" * 1000)
    cases = [
        (["--index", missing, "--image", image, "--box", "1,1,20,40"], str(missing)),
        (["--index", corrupt, "--image", image, "--box", "1,1,20,40"], str(corrupt)),
        (["--index", damaged, "--image", image, "--box", "1,1,20,40"], "index.sqlite"),
        (["--image", tmp_path / "nope.jpg", "--box", "1,1,20,40"], "nope.jpg"),
        (["--image", broken, "--box", "1,1,20,40"], "broken.jpg"),
        (["--crop", broken], "broken.jpg"),
        (["--image", image, "--box", f"{width + 10},10,{width + 50},60"], "outside the image"),
        (["--image", image, "--box", "10,10,10,60"], "positive width and height"),
        (["--image", image, "--box", "1,2,3"], "four numbers"),
        (["--image", image, "--pick", "99"], "numbered 1 to"),
        (["--image", image, "--pick", "0"], "'list' or a person number"),
        (["--image", image, "--pick", "1", "--det-thresh", "1.0"], "no person detected"),
        (["--box", "1,1,20,40"], "--box needs --image"),
        (["--crop", image, "--image", image], "do not combine it with --image"),
        (["--image", image, "--box", "1,1,20,40", "--time-range", "5,1"], "START,END"),
        (["--image", image, "--box", "1,1,20,40", "--json", tmp_path], "is a folder"),
    ]
    for args, words in cases:
        if "--index" not in args:
            args = ["--index", env["index"], *args]
        code = _main("query", *args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and words in err, (args, err)
    assert f"({width}x{height} pixels)" in _error(capsys, env, "--image", image, "--box=-50,-50,-1,-1")
    assert "not allowed with argument" in _error(capsys, env, "--image", image, "--box", "1,1,2,2", "--pick", "1")
