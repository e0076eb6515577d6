"""The FastAPI application of ``personsearch serve``: a static page and a JSON API over one gallery index.

Endpoints (documented at ``/docs``, schema at ``/openapi.json``):

* ``POST /api/detect``: a multipart image upload (field ``file``), or ``image_id`` (form field) for an
  indexed image; the image is kept under a token in a bounded in-memory LRU and its detected people are
  returned (``{image_token, width, height, people: [{box, score}], ...}``).
* ``POST /api/query``: JSON ``{image_token, box, top_k, sources?, time_range?}``; the ranked hits.
* ``GET /api/images/{id}``: the JPEG of an indexed image or video frame (``?box=x1,y1,x2,y2`` draws a box,
  ``?thumb=1`` makes a thumbnail around it); ``GET /api/images`` lists the indexed images.
* ``GET /api/uploads/{token}``: the JPEG of a kept upload (as decoded by the server: boxes match it).
* ``GET /api/info``: the index and model.

Safety: pictures are served only from the index (by id) and from the upload cache (by token); files only
from the package's ``static`` folder. A request body larger than the upload limit is refused (413) before it
is parsed; a file that is not an image, a box outside the image and every other bad input are a 4xx with a
one-line ``detail``, never a 500.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageDraw
from pydantic import BaseModel, Field

from personsearch.errors import PersonSearchError
from personsearch.footage.query import format_timestamp, people, resolve_checkpoint, search_index
from personsearch.footage.searcher import Searcher
from personsearch.footage.store import GalleryIndex, Hit, connect, read_info, resolve_index

STATIC = Path(__file__).resolve().parent / "static"
#: Default upload limit of ``personsearch serve`` (``--max-upload-mb 20``).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Largest upload in pixels (a decompression bomb is refused before it is decoded).
MAX_PIXELS = 40_000_000
#: Multipart framing allowed on top of the upload limit for the whole request body.
BODY_SLACK = 64 * 1024
THUMB_H = 240
THUMB_W = 320
HIT_COLOUR = (230, 120, 20)
#: Extra hits asked for when the query is an indexed video frame, whose own detections are then dropped.
SELF_MARGIN = 100

PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


# ---------------------------------------------------------------------------------------------------------
# the upload cache


@dataclass
class Upload:
    """A query image kept under a token: its pixels, a name, and (when picked from the index) its id."""

    image: np.ndarray
    name: str
    image_id: int | None = None
    path: str | None = None
    video: bool = False


class UploadCache:
    """A thread-safe LRU of :class:`Upload` by token, bounded in entries and in bytes of pixels."""

    def __init__(self, max_items: int = 16, max_bytes: int = 1 << 30) -> None:
        self.max_items = max(1, int(max_items))
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, upload: Upload) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._items[token] = upload
            while len(self._items) > self.max_items or (len(self._items) > 1 and self.nbytes > self.max_bytes):
                self._items.popitem(last=False)
        return token

    def get(self, token: str) -> Upload:
        with self._lock:
            upload = self._items.get(token)
            if upload is None:
                raise HTTPException(404, f"unknown or expired image_token {token[:40]!r}: upload the image again")
            self._items.move_to_end(token)
            return upload

    @property
    def nbytes(self) -> int:
        return sum(u.image.nbytes for u in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


# ---------------------------------------------------------------------------------------------------------
# request and response bodies (they document /docs)


class Person(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in image pixels")
    score: float = Field(description="detection score")


class DetectResponse(BaseModel):
    image_token: str = Field(description="the image's key for /api/query (kept in a bounded in-memory cache)")
    width: int
    height: int
    people: list[Person] = Field(description="detected people, best score first (numbered from 1 on the page)")
    image_url: str = Field(description="the image as the server decoded it (boxes are in its pixels)")
    name: str
    image_id: int | None = Field(None, description="the indexed image's id when the query was picked by id")


class QueryRequest(BaseModel):
    image_token: str = Field(description="from /api/detect", max_length=200)
    box: list[float] | None = Field(
        None, min_length=4, max_length=4, description="x1, y1, x2, y2 (pixels); omitted: the whole image"
    )
    top_k: int = Field(20, ge=1, le=1000)
    sources: list[str] | None = Field(None, description="only hits from these indexed sources (folders, videos)")
    time_range: tuple[float, float] | None = Field(None, description="only video frames from start to end seconds")
    exclude_query_image: bool = Field(True, description="no hits from the query image itself (when it is indexed)")


class HitOut(BaseModel):
    rank: int
    image_id: int
    path: str
    source: str
    timestamp: float | None = Field(description="video frame time in seconds (None for a still image)")
    time: str = Field(description="the timestamp as h:mm:ss.ss ('-' for a still image)")
    frame_index: int | None
    box: list[float]
    score: float = Field(description="detection score")
    similarity: float
    thumbnail_url: str
    image_url: str = Field(description="the whole frame with the box drawn")


class QueryResponse(BaseModel):
    box: list[float] = Field(description="the query box, clipped to the image")
    hits: list[HitOut]


class IndexedImage(BaseModel):
    image_id: int
    path: str
    timestamp: float | None
    width: int
    height: int
    url: str


class ImageList(BaseModel):
    total: int
    offset: int
    images: list[IndexedImage]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad input (the detail says what)"},
    404: {"description": "no such image or token"},
    413: {"description": "upload too large"},
}


# ---------------------------------------------------------------------------------------------------------
# helpers


def parse_box(text: str) -> list[float]:
    """``x1,y1,x2,y2`` as four finite numbers (a 400 otherwise)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise HTTPException(400, f"box {text[:80]!r}: expected four finite numbers x1,y1,x2,y2 (pixels)")
    return values


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The uploaded bytes as an RGB array; not an image, a damaged one or too many pixels is an HTTP error."""
    if not data:
        raise HTTPException(400, f"{name}: the upload is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise HTTPException(
                    413, f"{name}: {width}x{height} pixels is more than the limit of {max_pixels:,} pixels"
                )
            image.load()
            array = np.array(image.convert("RGB"))
    except HTTPException:
        raise
    except Image.DecompressionBombError:
        raise HTTPException(413, f"{name}: too many pixels (more than {max_pixels:,})") from None
    except Exception as exc:  # PIL raises many kinds (UnidentifiedImageError, OSError, ValueError, SyntaxError)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise HTTPException(400, f"{name}: not an image that can be decoded ({reason})") from None
    if array.ndim != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise HTTPException(400, f"{name}: not an RGB image")
    return np.ascontiguousarray(array)


def jpeg(image: Image.Image, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def render(array: np.ndarray, box: Sequence[float] | None, thumb: bool, what: str) -> bytes:
    """The JPEG of ``array`` with ``box`` drawn; ``thumb``: a small picture around the box (or of the whole
    image without one)."""
    from personsearch.footage.images import check_box
    from personsearch.search.draw import context_crop, draw_box, fit

    image = Image.fromarray(array)
    drawn = None
    if box is not None:
        drawn = np.asarray(check_box(box, what, image.size), dtype=np.float64)
    if thumb:
        if drawn is not None:
            image, drawn = context_crop(image, drawn)
        image, scaled = fit(image, drawn if drawn is not None else np.zeros(4), THUMB_H, THUMB_W)
        drawn = scaled if drawn is not None else None
    if drawn is not None:
        image = image.copy()
        draw_box(ImageDraw.Draw(image), drawn, HIT_COLOUR, width=max(2, round(max(image.size) / 320)))
    return jpeg(image, 82 if thumb else 90)


def box_param(box: Sequence[float]) -> str:
    return ",".join(f"{float(v):.1f}" for v in box)


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before the app reads it (by its
    Content-Length, or while it streams in without one)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        mib = (self.limit - BODY_SLACK) / (1024 * 1024)
        body = json.dumps({"detail": f"request too large: uploads are limited to {mib:g} MiB"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------------------
# what the routes share


@dataclass
class ServeContext:
    """The state every route of one app works on: the open index and model, the upload cache, the limits,
    and the lock that lets one forward pass or search run at a time (the model and faiss index are shared)."""

    index: GalleryIndex
    searcher: Searcher
    index_path: Path
    checkpoint: str
    db: Path
    uploads: UploadCache
    max_upload_bytes: int
    max_pixels: int
    model_lock: threading.Lock = field(default_factory=threading.Lock)

    def indexed(self, image_id: int) -> np.ndarray:
        """The pixels of indexed image ``image_id`` (a 404 when there is none)."""
        try:
            return self.index.read_image(image_id)
        except PersonSearchError as exc:
            raise HTTPException(404, " ".join(str(exc).split())) from None

    def frame_time(self, image_id: int) -> float | None:
        """The video timestamp of indexed image ``image_id`` (None for a still image)."""
        conn = connect(self.db, readonly=True)
        try:
            row = conn.execute("SELECT video, timestamp FROM images WHERE id = ?", (image_id,)).fetchone()
        finally:
            conn.close()
        return None if row is None or not row[0] else float(row[1])


def open_context(
    index_path: Path,
    checkpoint: str | os.PathLike[str] | None,
    device: str,
    *,
    det_thresh: float | None,
    max_upload_bytes: int,
    max_pixels: int,
    cache_items: int,
) -> ServeContext:
    """Open the index and load the model that built it (the index is closed again when that fails)."""
    index = GalleryIndex.open(index_path)
    try:
        checkpoint = resolve_checkpoint(index, index_path, None if checkpoint is None else str(checkpoint))
        if det_thresh is None:
            recorded = index.info().get("det_thresh")
            det_thresh = 0.5 if recorded is None else float(recorded)
        searcher = Searcher.from_checkpoint(checkpoint, device, det_thresh=det_thresh)
    except BaseException:
        index.close()
        raise
    _, db = resolve_index(index_path)
    uploads = UploadCache(cache_items)
    return ServeContext(index, searcher, index_path, checkpoint, db, uploads, int(max_upload_bytes), max_pixels)


# ---------------------------------------------------------------------------------------------------------
# what the routes do


def index_info(ctx: ServeContext) -> dict[str, Any]:
    """``/api/info``: the index, the model and the limits."""
    return {
        "index": read_info(ctx.index_path),
        "checkpoint": ctx.checkpoint,
        "model_id": ctx.searcher.model_id,
        "device": str(ctx.searcher.device),
        "det_thresh": ctx.searcher.det_thresh,
        "max_upload_bytes": ctx.max_upload_bytes,
        "max_pixels": ctx.max_pixels,
    }


def uploaded_image(ctx: ServeContext, file: UploadFile) -> Upload:
    """A file upload as a query image (too large, not an image: an HTTP error)."""
    name = os.path.basename(file.filename or "upload")[:120] or "upload"
    data = file.file.read(ctx.max_upload_bytes + 1)
    if len(data) > ctx.max_upload_bytes:
        mib = ctx.max_upload_bytes / (1024 * 1024)
        raise HTTPException(413, f"{name}: larger than the upload limit of {mib:g} MiB")
    return Upload(decode_upload(data, name, ctx.max_pixels), name)


def indexed_image(ctx: ServeContext, image_id: int) -> Upload:
    """Indexed image (or video frame) ``image_id`` as a query image."""
    array = ctx.indexed(image_id)
    path = ctx.index.image_path(image_id)
    timestamp = ctx.frame_time(image_id)
    label = path if timestamp is None else f"{path} @ {format_timestamp(timestamp)}"
    return Upload(array, label, image_id, path, timestamp is not None)


def detect_people(ctx: ServeContext, upload: Upload) -> DetectResponse:
    """Keep ``upload`` under a new token and detect its people (best score first)."""
    with ctx.model_lock:
        found = people(ctx.searcher, upload.image)
    token = ctx.uploads.add(upload)
    height, width = upload.image.shape[:2]
    return DetectResponse(
        image_token=token,
        width=width,
        height=height,
        people=[Person(box=[float(v) for v in b], score=float(s)) for b, s in zip(found.boxes, found.scores)],
        image_url=f"/api/uploads/{token}",
        name=upload.name,
        image_id=upload.image_id,
    )


def hit_out(rank: int, hit: Hit) -> HitOut:
    """One ranked hit with the URLs of its thumbnail and of its whole frame."""
    box = [float(v) for v in hit.box]
    return HitOut(
        rank=rank,
        image_id=hit.image_id,
        path=hit.path,
        source=hit.source,
        timestamp=hit.timestamp,
        time=format_timestamp(hit.timestamp),
        frame_index=hit.frame_index,
        box=box,
        score=hit.score,
        similarity=hit.similarity,
        thumbnail_url=f"/api/images/{hit.image_id}?box={box_param(box)}&thumb=1",
        image_url=f"/api/images/{hit.image_id}?box={box_param(box)}",
    )


def rank_index(ctx: ServeContext, body: QueryRequest) -> QueryResponse:
    """``/api/query``: the indexed people most similar to the one in ``body.box``, best first. An indexed
    query image is left out when asked: a still image by its path, a video frame by its own detections only
    (so ``SELF_MARGIN`` more hits are asked for)."""
    upload = ctx.uploads.get(body.image_token)
    exclude: list[str] = []
    drop_image = None
    top_k = body.top_k
    if body.exclude_query_image and upload.image_id is not None:
        if upload.video:  # drop only this frame's own detections, not the whole video
            drop_image, top_k = upload.image_id, top_k + SELF_MARGIN
        elif upload.path is not None:
            exclude.append(upload.path)
    with ctx.model_lock:
        result = search_index(
            ctx.searcher,
            ctx.index,
            upload.image,
            body.box,
            top_k,
            sources=body.sources,
            time_range=body.time_range,
            exclude_paths=exclude,
            exclude_query_image=False,
            index_name=ctx.index_path,
        )
    hits = [h for h in result.hits if h.image_id != drop_image][: body.top_k]
    out = [hit_out(rank, hit) for rank, hit in enumerate(hits, start=1)]
    return QueryResponse(box=[float(v) for v in result.box], hits=out)


def list_indexed(db: Path, offset: int, limit: int) -> ImageList:
    """``/api/images``: the indexed images and video frames by id, ``limit`` from ``offset``."""
    conn = connect(db, readonly=True)
    try:
        total = int(conn.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchone()[0])
        rows = conn.execute(
            "SELECT id, path, video, timestamp, width, height FROM images WHERE status = 'ok' "
            "ORDER BY id LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
    finally:
        conn.close()
    images = [
        IndexedImage(image_id=i, path=p, timestamp=t if v else None, width=w, height=h, url=f"/api/images/{i}?thumb=1")
        for i, p, v, t, w, h in rows
    ]
    return ImageList(total=total, offset=offset, images=images)


# ---------------------------------------------------------------------------------------------------------
# the routes

PICTURE: dict[int | str, dict[str, Any]] = {200: {"content": {"image/jpeg": {}}, "description": "a JPEG"}, **ERRORS}


def search_router(ctx: ServeContext) -> APIRouter:
    """``/api/info``, ``/api/detect`` and ``/api/query``."""
    api = APIRouter()

    @api.get("/api/info", summary="The index and the model")
    def info() -> dict[str, Any]:
        return index_info(ctx)

    @api.post("/api/detect", response_model=DetectResponse, responses=ERRORS, summary="Detect the people in an image")
    def detect(
        file: Annotated[
            UploadFile | None, File(description="the query image (at most the upload limit, see /api/info)")
        ] = None,
        image_id: Annotated[int | None, Form(description="instead of a file: an indexed image's id")] = None,
    ) -> DetectResponse:
        """Upload an image (multipart field ``file``) or give an indexed image's ``image_id``; the image is
        kept under ``image_token`` for ``/api/query`` and its people are detected (best score first)."""
        if (file is None) == (image_id is None):
            raise HTTPException(400, "give one query image: a file upload (field 'file') or an 'image_id'")
        if file is not None:
            return detect_people(ctx, uploaded_image(ctx, file))
        assert image_id is not None
        return detect_people(ctx, indexed_image(ctx, image_id))

    @api.post("/api/query", response_model=QueryResponse, responses=ERRORS, summary="Rank the index for one person")
    def query(body: QueryRequest) -> QueryResponse:
        """The ``top_k`` indexed people most similar to the one in ``box`` of the image behind
        ``image_token``, best first; ``sources`` and ``time_range`` filter the hits."""
        return rank_index(ctx, body)

    return api


def picture_router(ctx: ServeContext) -> APIRouter:
    """``/api/images``, ``/api/images/{id}`` and ``/api/uploads/{token}``: pictures only from the index and
    the upload cache."""
    api = APIRouter()

    @api.get("/api/images", response_model=ImageList, responses=ERRORS, summary="List the indexed images")
    def list_images(
        offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> ImageList:
        """Indexed images and video frames by id (pick one as the query with ``/api/detect``)."""
        return list_indexed(ctx.db, offset, limit)

    @api.get("/api/images/{image_id}", responses=PICTURE, response_class=Response, summary="An indexed image")
    def image(
        image_id: int,
        box: Annotated[str | None, Query(max_length=200, description="x1,y1,x2,y2: draw this box")] = None,
        thumb: Annotated[bool, Query(description="a thumbnail (around the box when one is given)")] = False,
    ) -> Response:
        """The JPEG of indexed image (or video frame) ``image_id``, only from the index."""
        parsed = None if box is None else parse_box(box)
        data = render(ctx.indexed(image_id), parsed, thumb, f"image {image_id}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @api.get("/api/uploads/{token}", responses=PICTURE, response_class=Response, summary="A kept upload")
    def upload_image(token: str, box: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        """The JPEG of a query image kept by ``/api/detect`` (as the server decoded it)."""
        upload = ctx.uploads.get(token)
        parsed = None if box is None else parse_box(box)
        return Response(render(upload.image, parsed, False, upload.name), media_type="image/jpeg")

    return api


def add_page(app: FastAPI) -> None:
    """The page (``/``) and its files (``/static``, only from the package's folder)."""

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def add_safety(app: FastAPI, body_limit: int, allowed_hosts: Sequence[str] | None) -> None:
    """The body limit, the Host check (when ``allowed_hosts`` is given) and the security headers."""
    app.add_middleware(BodyLimit, limit=body_limit)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        path = request.url.path
        if path == "/" or path.startswith("/static/"):
            response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return response


def add_error_handlers(app: FastAPI) -> None:
    """A bad request and a user error are a 400 with a one-line ``detail``."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)}, status_code=400)

    @app.exception_handler(PersonSearchError)
    async def user_error(request: Request, exc: PersonSearchError) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=400)


# ---------------------------------------------------------------------------------------------------------
# the app


def create_app(
    index_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    *,
    det_thresh: float | None = None,
    max_pixels: int = MAX_PIXELS,
    cache_items: int = 16,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The application serving ``index_path`` with ``checkpoint`` (default: the one the index records; it
    must be the model that built the index). The index and the model are loaded here: a missing or
    foreign index, a wrong checkpoint are a :class:`PersonSearchError` before anything is served.

    ``det_thresh``: lowest detection score on uploads (default: the index's); ``allowed_hosts``: the Host
    headers accepted (None: any; ``serve`` on a loopback address accepts only local names, against DNS
    rebinding).
    """
    if int(max_upload_bytes) < 1:
        raise PersonSearchError(f"the upload limit must be positive, got {max_upload_bytes} bytes")
    ctx = open_context(
        Path(index_path),
        checkpoint,
        device,
        det_thresh=det_thresh,
        max_upload_bytes=int(max_upload_bytes),
        max_pixels=max_pixels,
        cache_items=cache_items,
    )
    app = FastAPI(
        title="personsearch",
        summary="Search a gallery index for a person",
        description=f"Index `{ctx.index_path}`, checkpoint `{ctx.checkpoint}`. Upload a query image "
        "(`/api/detect`), pick a person or draw a box, and rank the indexed people (`/api/query`).",
        version=_version(),
    )
    app.state.index = ctx.index
    app.state.searcher = ctx.searcher
    app.state.uploads = ctx.uploads
    add_safety(app, ctx.max_upload_bytes + BODY_SLACK, allowed_hosts)
    add_error_handlers(app)
    add_page(app)
    app.include_router(search_router(ctx))
    app.include_router(picture_router(ctx))
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("personsearch")
    except Exception:
        return "0"
