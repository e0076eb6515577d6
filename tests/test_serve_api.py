"""``personsearch serve``'s JSON API through FastAPI's test client, over a real gallery index (folders and a
video, tiny model): every endpoint, every bad input (a 4xx with a message, never a 500), the upload limits
and path traversal attempts (nothing outside the index and the static folder is ever served)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # starlette's note about httpx2 (TestClient still works with httpx)
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient

from personsearch.cli import main
from personsearch.errors import PersonSearchError
from personsearch.serve.app import create_app
from test_footage_query import env  # noqa: F401  (the module's tiny checkpoint and index)


@pytest.fixture(scope="module")
def app(env):  # noqa: F811
    return create_app(env["index"], device="cpu")


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(client, data: bytes, name: str = "me.png"):
    return client.post("/api/detect", files={"file": (name, data, "image/png")})


def _detail(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.strip(), detail
    return detail


@pytest.fixture(scope="module")
def uploaded(client, env):  # noqa: F811
    response = _upload(client, env["query_image"].read_bytes(), env["query_image"].name)
    assert response.status_code == 200, response.text
    return response.json()


def test_page_static_files_docs_and_info(client, env):  # noqa: F811
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file-input"' in page.text and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # no external resources
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text
    schema = client.get("/openapi.json").json()
    for path in ("/api/detect", "/api/query", "/api/images/{image_id}", "/api/info", "/api/images"):
        assert path in schema["paths"], path
    assert client.get("/docs").status_code == 200
    info = client.get("/api/info").json()
    assert info["index"]["path"] == str(env["index"]) and info["index"]["detections"] > 0
    assert info["det_thresh"] == 0.0 and info["device"] == "cpu" and info["max_upload_bytes"] == 20 * 1024 * 1024


def test_detect_an_upload_keeps_it_under_a_token(client, uploaded, env):  # noqa: F811
    width, height = Image.open(env["query_image"]).size
    assert (uploaded["width"], uploaded["height"]) == (width, height)
    assert uploaded["people"], "the tiny model at det_thresh 0 finds someone"
    scores = [p["score"] for p in uploaded["people"]]
    assert scores == sorted(scores, reverse=True)
    for person in uploaded["people"]:
        x1, y1, x2, y2 = person["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    picture = client.get(uploaded["image_url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(picture.content)).size == (width, height)
    boxed = client.get(uploaded["image_url"], params={"box": "10,10,60,90"})
    assert boxed.status_code == 200
    _detail(client.get("/api/uploads/not-a-token"), 404)


def test_query_ranks_hits_with_urls_that_work(client, uploaded, env):  # noqa: F811
    box = uploaded["people"][0]["box"]
    r = client.post("/api/query", json={"image_token": uploaded["image_token"], "box": box, "top_k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    hits = body["hits"]
    assert 1 <= len(hits) <= 5 and [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)
    np.testing.assert_allclose(body["box"], box, atol=1e-4)
    # the same ranking as the library (an upload is not an indexed path: nothing is left out)
    api = env["searcher"].query(env["index"], np.asarray(Image.open(env["query_image"]).convert("RGB")), box=box,
                                top_k=5)  # fmt: skip
    assert [(h.image_id, h.path) for h in api] == [(h["image_id"], h["path"]) for h in hits]
    np.testing.assert_allclose([h.similarity for h in api], sims, atol=1e-5)
    for hit in hits:
        assert {"path", "timestamp", "time", "box", "score", "similarity", "thumbnail_url", "image_url"} <= set(hit)
        for url in (hit["thumbnail_url"], hit["image_url"]):
            picture = client.get(url)
            assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg", url
        thumb = Image.open(io.BytesIO(client.get(hit["thumbnail_url"]).content))
        assert thumb.height <= 240 and thumb.width <= 320
    whole = client.post("/api/query", json={"image_token": uploaded["image_token"], "top_k": 3})
    assert whole.status_code == 200 and whole.json()["box"] == [0, 0, uploaded["width"], uploaded["height"]]


def test_query_filters_by_source_and_video_time(client, uploaded, env):  # noqa: F811
    token, box = uploaded["image_token"], uploaded["people"][0]["box"]
    cam2 = str(env["footage"] / "cam2")
    r = client.post("/api/query", json={"image_token": token, "box": box, "top_k": 50, "sources": [cam2]})
    assert r.status_code == 200 and r.json()["hits"]
    assert all(h["path"].startswith(cam2 + os.sep) for h in r.json()["hits"])
    r = client.post("/api/query", json={"image_token": token, "box": box, "top_k": 50, "time_range": [1.0, 2.5]})
    hits = r.json()["hits"]
    assert r.status_code == 200 and hits
    assert all(h["path"].endswith("walk.mp4") and 1.0 <= h["timestamp"] <= 2.5 for h in hits)
    assert all(h["time"].startswith("0:0") for h in hits)


def test_an_indexed_image_picked_by_id_leaves_itself_out(client, env):  # noqa: F811
    listing = client.get("/api/images", params={"limit": 1000}).json()
    assert listing["total"] == len(listing["images"]) > 0
    still = next(i for i in listing["images"] if i["path"] == os.path.abspath(env["query_image"]))
    frame = next(i for i in listing["images"] if i["timestamp"] is not None)
    for item, video in ((still, False), (frame, True)):
        found = client.post("/api/detect", data={"image_id": str(item["image_id"])})
        assert found.status_code == 200, found.text
        found = found.json()
        assert found["image_id"] == item["image_id"] and found["people"]
        query = {"image_token": found["image_token"], "box": found["people"][0]["box"], "top_k": 200}
        hits = client.post("/api/query", json=query).json()["hits"]
        assert hits and item["image_id"] not in {h["image_id"] for h in hits}
        if video:  # only the frame itself is left out, not the rest of its video
            assert any(h["path"] == item["path"] for h in hits)
        kept = client.post("/api/query", json={**query, "exclude_query_image": False}).json()["hits"]
        assert kept[0]["image_id"] == item["image_id"] and kept[0]["similarity"] > 0.999


def test_indexed_images_by_id_with_box_and_thumbnail(client, env):  # noqa: F811
    listing = client.get("/api/images").json()
    item = listing["images"][0]
    whole = client.get(f"/api/images/{item['image_id']}")
    assert whole.status_code == 200 and whole.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(whole.content)).size == (item["width"], item["height"])
    boxed = client.get(f"/api/images/{item['image_id']}", params={"box": "5,5,50,100"})
    assert boxed.status_code == 200 and boxed.content != whole.content
    thumb = client.get(f"/api/images/{item['image_id']}", params={"box": "5,5,50,100", "thumb": "1"})
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).height <= 240
    assert client.get(item["url"]).status_code == 200
    _detail(client.get("/api/images/999999"), 404)
    _detail(client.get(f"/api/images/{item['image_id']}", params={"box": "1,2,3"}), 400)
    _detail(client.get(f"/api/images/{item['image_id']}", params={"box": "a,b,c,d"}), 400)
    _detail(client.get(f"/api/images/{item['image_id']}", params={"box": "nan,1,2,3"}), 400)
    assert "outside" in _detail(
        client.get(f"/api/images/{item['image_id']}", params={"box": "5000,5000,6000,6000"}), 400
    )
    _detail(client.get(f"/api/images/{item['image_id']}", params={"thumb": "maybe"}), 400)
    _detail(client.get("/api/images/abc"), 400)
    _detail(client.get("/api/images", params={"limit": 0}), 400)


def test_bad_uploads_are_400_with_a_message(client, env):  # noqa: F811
    assert "not an image" in _detail(_upload(client, b"hello, not a picture", "notes.txt"), 400)
    assert "empty" in _detail(_upload(client, b"", "empty.png"), 400)
    truncated = _png(np.full((64, 48, 3), 120))[:60]
    assert "truncated.png" in _detail(_upload(client, truncated, "truncated.png"), 400)
    _detail(client.post("/api/detect"), 400)  # neither a file nor an id
    both = client.post("/api/detect", files={"file": ("a.png", _png(np.zeros((8, 8, 3))), "image/png")},
                       data={"image_id": "1"})  # fmt: skip
    _detail(both, 400)
    _detail(client.post("/api/detect", data={"image_id": "abc"}), 400)
    _detail(client.post("/api/detect", data={"image_id": "999999"}), 404)
    _detail(client.post("/api/detect", content=b"x" * 100, headers={"content-type": "text/plain"}), 400)
    # a one-pixel image is an image: nobody in it, no error
    tiny = _upload(client, _png(np.zeros((1, 1, 3))), "dot.png")
    assert tiny.status_code == 200 and tiny.json()["width"] == 1


def test_bad_queries_are_4xx_with_a_message(client, uploaded):
    token = uploaded["image_token"]
    w, h = uploaded["width"], uploaded["height"]
    bad = [
        ({"image_token": token, "box": [10, 10, 10, 50]}, "positive width"),
        ({"image_token": token, "box": [w + 10, h + 10, w + 50, h + 90]}, "outside"),
        ({"image_token": token, "box": [1, 2, 3]}, "box"),
        ({"image_token": token, "box": ["a", 2, 3, 4]}, "box"),
        ({"image_token": token, "box": [10, 10, 50, 90], "top_k": 0}, "top_k"),
        ({"image_token": token, "box": [10, 10, 50, 90], "top_k": "many"}, "top_k"),
        ({"image_token": token, "box": [10, 10, 50, 90], "time_range": [5, 1]}, "start <= end"),
        ({"image_token": token, "box": [10, 10, 50, 90], "time_range": [1]}, "time_range"),
        ({"image_token": token, "box": [10, 10, 50, 90], "sources": "cam1"}, "sources"),
        ({"box": [10, 10, 50, 90]}, "image_token"),
    ]
    for body, words in bad:
        detail = _detail(client.post("/api/query", json=body), 400)
        assert words in detail, (body, detail)
    nan = json.dumps({"image_token": token, "box": [float("nan"), 1, 20, 30]})
    assert "finite" in _detail(
        client.post("/api/query", content=nan, headers={"content-type": "application/json"}), 400
    )
    _detail(client.post("/api/query", content=b"{not json", headers={"content-type": "application/json"}), 400)
    _detail(client.post("/api/query", json=[1, 2]), 400)
    assert "upload the image again" in _detail(client.post("/api/query", json={"image_token": "gone"}), 404)
    # a source the index does not hold: no hits, not an error
    r = client.post("/api/query", json={"image_token": token, "box": [10, 10, 50, 90], "sources": ["/nowhere"]})
    assert r.status_code == 200 and r.json()["hits"] == []


def _raw_get(app, raw_path: str) -> tuple[int, bytes]:
    """A GET with ``raw_path`` exactly as a client could send it (no URL normalisation on the way)."""
    path = raw_path.split("?")[0]
    from urllib.parse import unquote

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": raw_path.partition("?")[2].encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../etc/passwd",
        "/static/../../../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/....//....//etc/passwd",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/../app.py",
        "/static/..%5capp.py",
        "/api/images/../x",
        "/api/images/..%2f..%2fetc%2fpasswd",
        "/api/images/%2fetc%2fpasswd",
        "/api/uploads/../../etc/passwd",
        "/../../etc/passwd",
        "/etc/passwd",
    ],
)
def test_path_traversal_serves_nothing_outside(app, client, path):
    secret = b"root:x:0:0"
    status, body = _raw_get(app, path)
    assert status in (400, 404, 405), (path, status)
    assert secret not in body and b"def create_app" not in body
    r = client.get(path)  # and as an HTTP client sends it
    assert r.status_code in (400, 404, 405) and secret not in r.content


def test_upload_limits_413_with_a_message(env):  # noqa: F811
    small = create_app(env["index"], device="cpu", max_upload_bytes=4096, max_pixels=100 * 100)
    client = TestClient(small, raise_server_exceptions=False)
    noise = np.random.default_rng(0).integers(0, 256, (80, 80, 3))
    big = _png(noise)
    assert len(big) > 4096
    detail = _detail(_upload(client, big + b"\0" * (70 * 1024), "big.png"), 413)
    assert "limited to" in detail or "upload limit" in detail
    assert "upload limit" in _detail(_upload(client, big, "big.png"), 413)  # over the limit, within the body slack
    # a lying Content-Length is refused before the body is read
    r = client.post("/api/detect", content=b"tiny", headers={"content-length": str(10**9), "content-type": "x/y"})
    assert r.status_code == 413
    # many pixels in few bytes (a decompression bomb) is refused before decoding
    bomb = _png(np.zeros((400, 400, 3)))
    assert len(bomb) < 4096
    assert "pixels" in _detail(_upload(client, bomb, "bomb.png"), 413)
    assert _upload(client, _png(np.zeros((50, 50, 3))), "fine.png").status_code == 200


def test_host_check_cache_bound_and_startup_errors(env, tmp_path):  # noqa: F811
    local = create_app(env["index"], device="cpu", allowed_hosts=["localhost", "127.0.0.1"], cache_items=2)
    client = TestClient(local, base_url="http://localhost", raise_server_exceptions=False)
    assert client.get("/api/info").status_code == 200
    assert client.get("/api/info", headers={"host": "evil.example"}).status_code == 400
    tokens = []
    for value in (0, 100, 200):
        r = _upload(client, _png(np.full((32, 32, 3), value)), f"{value}.png")
        tokens.append(r.json()["image_token"])
    assert len(local.state.uploads) == 2
    assert client.post("/api/query", json={"image_token": tokens[0]}).status_code == 404  # evicted
    assert client.post("/api/query", json={"image_token": tokens[2]}).status_code == 200
    with pytest.raises(PersonSearchError):
        create_app(tmp_path / "missing.index", device="cpu")
    other = tmp_path / "other.pth"
    other.write_bytes(b"not this model")
    with pytest.raises(PersonSearchError, match="built with model"):
        create_app(env["index"], checkpoint=other, device="cpu")


def _main(*args):
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code


def test_serve_command_line(env, capsys):  # noqa: F811
    assert _main("serve", "--help") == 0
    out = capsys.readouterr().out
    for option in ("--index", "--checkpoint", "--host", "--port", "--device", "--max-upload-mb"):
        assert option in out
    assert "127.0.0.1" in out
    assert _main("serve", "--index", env["index"], "--port", "70000") == 2
    assert _main("serve", "--index", env["index"], "--max-upload-mb", "0") == 2
    assert _main("serve", "--index", env["work"] / "nothing.index") == 2
    err = capsys.readouterr().err
    assert "personsearch serve: error:" in err


def test_openapi_documents_the_query_body(client):
    schema = client.get("/openapi.json").json()
    body = json.dumps(schema["components"]["schemas"]["QueryRequest"])
    for field in ("image_token", "box", "top_k", "sources", "time_range"):
        assert field in body
