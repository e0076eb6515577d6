"""What a gallery index is built from: folders, globs, list files and videos, expanded into files.

A source is

- a **folder**: every image (``.jpg .jpeg .png .bmp .webp``) and video below it, recursively (hidden
  files and folders, whose names start with ``.``, are left out); other files are skipped and listed;
- a **glob** (``footage/**/*.jpg``; ``**`` crosses folders): the images and videos it matches;
- a **list file** (``.txt``): one image, video or folder per line, relative to the list file's folder
  (blank lines and lines starting with ``#`` are ignored); a listed file that is missing is skipped and
  listed;
- a **video** (``.mp4 .avi .mkv .mov .webm`` ...): decoded with PyAV and sampled at ``fps`` frames per
  second, each frame keeping its timestamp (seconds from the start) and its frame index;
- a single **image**.

Paths are kept absolute (``os.path.abspath``: symbolic links are not resolved). A source that does not
exist or holds nothing to index, and a video given as a source that cannot be opened, are one-line
:class:`~personsearch.errors.PersonSearchError` s naming it.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from personsearch.errors import PersonSearchError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp", ".ogv"}
)
LIST_EXTENSIONS = frozenset({".txt"})
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class SourceFile:
    """One file to index: an image or a video, with the source that named it and its size and mtime."""

    path: str
    source: str
    kind: str  # "image" or "video"
    size: int
    mtime_ns: int


@dataclass
class Scan:
    """The files of some sources (each once, in a deterministic order) and the files skipped on the way."""

    files: list[SourceFile] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (path, source, reason)
    sources: list[str] = field(default_factory=list)


def kind_of(path: str) -> str | None:
    """``"image"``, ``"video"`` or None, from the file name's extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


def is_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def normalise_source(text: str | os.PathLike[str]) -> str:
    """The form a source is recorded in: an absolute path (or absolute glob pattern)."""
    text = os.fspath(text)
    if not text:
        raise PersonSearchError("an empty source name was given")
    return os.path.abspath(os.path.expanduser(text))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _Collector:
    def __init__(self, exclude: Iterable[str]) -> None:
        self.scan = Scan()
        self.seen: set[str] = set()
        self.exclude = [os.path.abspath(e) for e in exclude]

    def excluded(self, path: str) -> bool:
        return any(_inside(path, e) for e in self.exclude)

    def add(self, path: str, source: str, from_folder: bool) -> bool:
        """Add one file; True if it was something to index."""
        if path in self.seen or self.excluded(path):
            return False
        kind = kind_of(path)
        if kind is None:
            self.seen.add(path)
            self.scan.skipped.append((path, source, "not an image or video file"))
            return False
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.scan.skipped.append((path, source, "missing"))
            return False
        except OSError as exc:
            self.scan.skipped.append((path, source, f"cannot read ({exc.strerror or exc})"))
            return False
        self.seen.add(path)
        if kind == "video" and not from_folder:
            probe_video(path)
        self.scan.files.append(SourceFile(path, source, kind, int(st.st_size), int(st.st_mtime_ns)))
        return True

    def folder(self, folder: str, source: str) -> int:
        found = 0

        def onerror(exc: OSError) -> None:
            self.scan.skipped.append((exc.filename or folder, source, f"cannot list ({exc.strerror or exc})"))

        for root, dirs, files in os.walk(folder, onerror=onerror):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not self.excluded(os.path.join(root, d)))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                if os.path.isfile(path) or os.path.islink(path):
                    found += self.add(path, source, from_folder=True)
        return found


def scan_sources(sources: Iterable[str | os.PathLike[str]], exclude: Iterable[str] = ()) -> Scan:
    """Expand ``sources`` into the files to index (nothing under ``exclude``, e.g. the index folder itself).

    A file reached through two sources is indexed once, under the first. A source that does not exist or
    yields nothing to index is a :class:`PersonSearchError` naming it.
    """
    c = _Collector(exclude)
    for raw in sources:
        source = normalise_source(raw)
        if source in c.scan.sources:
            continue
        c.scan.sources.append(source)
        if is_glob(os.fspath(raw)) and not os.path.exists(source):
            found = 0
            matches = sorted(glob.glob(source, recursive=True))
            for match in matches:
                match = os.path.abspath(match)
                if os.path.isdir(match):
                    found += c.folder(match, source)
                elif os.path.isfile(match):
                    found += c.add(match, source, from_folder=True)
            if not found:
                raise PersonSearchError(f"source {raw}: the pattern matches no image or video files")
            continue
        if os.path.isdir(source):
            if not c.folder(source, source):
                raise PersonSearchError(f"source {raw}: the folder holds no image or video files")
            continue
        if not os.path.exists(source):
            raise PersonSearchError(f"source {raw} does not exist")
        if not os.path.isfile(source):
            raise PersonSearchError(f"source {raw} is not a file or folder")
        ext = os.path.splitext(source)[1].lower()
        if ext in LIST_EXTENSIONS:
            if not _list_file(c, source):
                raise PersonSearchError(f"source {raw}: the list file names no image or video files")
        elif kind_of(source) is not None:
            c.add(source, source, from_folder=False)
        else:
            raise PersonSearchError(
                f"source {raw} is not an image, a video or a list file (.txt with one path per line)"
            )
    return c.scan


def _list_file(c: _Collector, source: str) -> int:
    try:
        with open(source, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError:
        raise PersonSearchError(f"list file {source} is not a UTF-8 text file") from None
    except OSError as exc:
        raise PersonSearchError(f"cannot read list file {source} ({exc.strerror or exc})") from None
    base = os.path.dirname(source)
    found = 0
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if "\0" in entry:
            raise PersonSearchError(f"list file {source}: a line holds a NUL character")
        path = os.path.abspath(os.path.join(base, os.path.expanduser(entry)))
        if os.path.isdir(path):
            found += c.folder(path, source)
        elif not os.path.exists(path):
            c.scan.skipped.append((path, source, "missing"))
        else:
            found += c.add(path, source, from_folder=True)
    return found


# ------------------------------------------------------------------------------------------------ videos
def _av():
    import av

    return av


def _decode_errors() -> tuple[type[BaseException], ...]:
    av = _av()
    return (av.FFmpegError, OSError, ValueError, RuntimeError, EOFError)


def probe_video(path: str) -> dict:
    """Duration (seconds, None if unknown), frame rate, frame count and size of a video; a one-line
    :class:`PersonSearchError` naming the file if it cannot be opened or holds no video stream."""
    av = _av()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise PersonSearchError(f"video {path} cannot be decoded: it holds no video stream")
            stream = container.streams.video[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            rate = float(stream.average_rate) if stream.average_rate else None
            return {
                "duration": duration,
                "rate": rate,
                "frames": int(stream.frames or 0),
                "width": stream.codec_context.width,
                "height": stream.codec_context.height,
            }
    except PersonSearchError:
        raise
    except _decode_errors() as exc:
        raise PersonSearchError(f"video {path} cannot be decoded ({type(exc).__name__}: {exc})") from None


def estimate_samples(path: str, fps: float) -> int:
    """About how many frames sampling ``path`` at ``fps`` gives (for the progress bar; 1 if unknown)."""
    try:
        info = probe_video(path)
    except PersonSearchError:
        return 1
    if info["duration"]:
        return max(1, math.ceil(info["duration"] * fps))
    if info["frames"] and info["rate"]:
        return max(1, math.ceil(info["frames"] / info["rate"] * fps))
    return 1


@dataclass
class VideoFrame:
    frame_index: int  # ordinal of the decoded frame, from 0
    timestamp: float  # seconds from the start of the stream
    pts: int | None
    image: np.ndarray | None  # H x W x 3 uint8 RGB (None for frames skipped on resume)


class VideoDecodeError(PersonSearchError):
    """A video stopped decoding part-way (``frames`` were decoded before)."""

    def __init__(self, message: str, frames: int) -> None:
        super().__init__(message)
        self.frames = frames


def sample_frames(path: str, fps: float, after_frame: int = -1) -> Iterator[VideoFrame]:
    """Decode ``path`` and yield one frame per ``1 / fps`` seconds (the first frame at or after each
    multiple of it), skipping the sampled frames up to ``after_frame`` (their pixels are not converted).

    Opening failures are a :class:`PersonSearchError`; a failure part-way is a :class:`VideoDecodeError`.
    """
    av = _av()
    errors = _decode_errors()
    try:
        container = av.open(path)
    except errors as exc:
        raise PersonSearchError(f"video {path} cannot be decoded ({type(exc).__name__}: {exc})") from None
    sampled = 0
    try:
        if not container.streams.video:
            raise PersonSearchError(f"video {path} cannot be decoded: it holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base
        start = stream.start_time if stream.start_time is not None else None
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        next_time = 0.0
        index = -1
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except errors as exc:
                raise VideoDecodeError(
                    f"video {path} stopped decoding after frame {index} ({type(exc).__name__}: {exc})", sampled
                ) from None
            index += 1
            if frame.pts is not None and time_base is not None:
                if start is None:
                    start = frame.pts
                t = float((frame.pts - start) * time_base)
            else:
                t = index / rate
            if t + 1e-6 < next_time:
                continue
            next_time = (math.floor(t * fps + 1e-6) + 1) / fps
            sampled += 1
            if index <= after_frame:
                yield VideoFrame(index, t, frame.pts, None)
                continue
            try:
                image = frame.to_ndarray(format="rgb24")
            except errors as exc:
                raise VideoDecodeError(
                    f"video {path}: cannot convert frame {index} ({type(exc).__name__}: {exc})", sampled
                ) from None
            yield VideoFrame(index, t, frame.pts, np.ascontiguousarray(image))
    finally:
        container.close()


def read_video_frame(path: str, frame_index: int, pts: int | None) -> np.ndarray:
    """The frame ``frame_index`` (presentation time ``pts``) of a video as an RGB array."""
    av = _av()
    errors: tuple[type[BaseException], ...] = (*_decode_errors(), IndexError)
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if pts is not None:
                container.seek(int(pts), stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.pts is not None and frame.pts >= pts:
                        return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            else:
                for i, frame in enumerate(container.decode(stream)):
                    if i == frame_index:
                        return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    except FileNotFoundError:
        raise PersonSearchError(f"video {path} is missing (it was indexed, then moved or deleted)") from None
    except errors as exc:
        what = f"{type(exc).__name__}: {exc}"
        raise PersonSearchError(f"video {path}: cannot decode frame {frame_index} ({what})") from None
    raise PersonSearchError(f"video {path}: frame {frame_index} is not in the file any more (was it changed?)")
