"""A compact on-disk cache for parsed annotation files.

Parsing MATLAB files is slow (scipy needs minutes and gigabytes for CUHK-SYSU's ``TestG4000.mat``), so
parsed results are stored as ``.npz`` archives keyed by the source files' absolute paths, sizes,
modification times and a content hash (BLAKE2b of the whole file, about 1.3 GB/s here: 14 ms for an
18 MB ``TestG500.mat``, about 60 ms for the real 75 MiB ``TestG4000.mat``), so editing or replacing a
source file invalidates its entry even when its size and mtime are kept. The cache lives outside the
dataset folder (which may be read-only): ``$PERSONSEARCH_CACHE`` if set, else
``$XDG_CACHE_HOME/personsearch``, else ``~/.cache/personsearch``. ``PERSONSEARCH_CACHE=off`` disables it.

Writes go to a temporary file (``.<kind>-<pid>-*.npz.tmp``, :func:`personsearch.outputs.atomic_file`) that
is renamed into place, so a crash never leaves a corrupt entry; temporary files left by a killed writer are
removed by the next process that uses the folder. An entry that cannot be read, whose stored digest of its
own arrays does not match, or whose arrays do not have the expected names, types and shapes, is treated as a
miss and rebuilt: a cache file can never cause an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from personsearch.outputs import atomic_file

CACHE_FORMAT_VERSION = 2
# key -> (allowed dtype kinds, shape with -1 for any length), e.g. {"boxes": ("iu", (-1, 4))}
Schema = Mapping[str, tuple[str, tuple[int, ...]]]
STALE_TMP_SECONDS = 3600.0
DIGEST_KEY = "__digest__"
_TMP_NAME = re.compile(r"^\..*\.npz\.tmp$")
_TMP_PID = re.compile(r"-(\d+)-[A-Za-z0-9_]+\.npz\.tmp$")
_swept: set[Path] = set()


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when caching is switched off."""
    configured = os.environ.get("PERSONSEARCH_CACHE")
    if configured is not None:
        if configured.strip().lower() in {"", "0", "off", "none", "false"}:
            return None
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "personsearch"


def file_digest(path: Path | str) -> str:
    """BLAKE2b-128 of the file's content."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size <= 1 << 20:  # small files (PRW's 11,816): one read
            return hashlib.blake2b(handle.read(), digest_size=16).hexdigest()
        digest = hashlib.blake2b(digest_size=16)  # chunked (hashlib.file_digest is Python 3.11+)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()


def _fingerprint(kind: str, sources: Sequence[Path], params: dict | None) -> str:
    items = []
    folders: dict[str, str] = {}  # each folder resolved once (sources share few folders)
    for src in sources:
        parent, name = os.path.split(os.path.abspath(src))
        if parent not in folders:
            folders[parent] = os.path.realpath(parent)
        full = os.path.join(folders[parent], name)
        st = os.stat(full)
        items.append([full, st.st_size, st.st_mtime_ns, file_digest(full)])
    from personsearch import __version__

    payload = json.dumps([CACHE_FORMAT_VERSION, __version__, kind, items, params or {}], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's process) or cannot tell
    return True


def sweep_temporary_files(folder: Path) -> list[Path]:
    """Remove ``*.npz.tmp`` files left in ``folder`` by killed writers: those whose writer process is
    gone, and any older than an hour (a writer on another machine sharing the folder). Returns them."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not _TMP_NAME.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        pid = _TMP_PID.search(entry.name)
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS
            dead = pid is not None and not _pid_alive(int(pid.group(1)))
            if old or dead:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def matches_schema(arrays: Mapping[str, np.ndarray], schema: Schema | None) -> bool:
    """Whether every key of ``schema`` is present with an allowed dtype kind and shape."""
    for key, (kinds, shape) in (schema or {}).items():
        arr = arrays.get(key)
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in kinds or arr.ndim != len(shape):
            return False
        if any(want not in (-1, got) for want, got in zip(shape, arr.shape, strict=True)):
            return False
    return True


def _arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """BLAKE2b of every array's name, dtype, shape and bytes (detects a torn or edited entry)."""
    digest = hashlib.blake2b(digest_size=16)
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        digest.update(json.dumps([key, arr.dtype.str, arr.shape]).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _read_entry(path: Path, schema: Schema | None, check: Callable[[dict], bool] | None) -> dict | None:
    """The arrays of a cache entry, or ``None`` for anything unreadable or unexpected."""
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        stored = arrays.pop(DIGEST_KEY, None)
        if stored is None or stored.shape != () or str(stored) != _arrays_digest(arrays):
            return None
        if not matches_schema(arrays, schema):
            return None
        if check is not None and not check(arrays):
            return None
        return arrays
    except Exception:  # any broken or foreign file is a cache miss, never an error
        return None


def load_or_build(
    kind: str,
    sources: Sequence[Path],
    build: Callable[[], dict[str, np.ndarray]],
    params: dict | None = None,
    schema: Schema | None = None,
    check: Callable[[dict], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, from the cache when the ``sources`` have not changed since.

    ``kind`` names what is cached (it becomes part of the file name); ``params`` are extra settings that
    change the result. Arrays must be storable with ``allow_pickle=False`` (numbers, booleans, strings).
    A cached entry is used only if it matches ``schema`` and ``check(arrays)`` is true (consistency
    between arrays); otherwise it is rebuilt.
    """
    folder = cache_dir()
    if folder is None:
        return build()
    if folder not in _swept:
        _swept.add(folder)
        sweep_temporary_files(folder)
    path = folder / f"{kind}-{_fingerprint(kind, sources, params)}.npz"
    if path.is_file():
        arrays = _read_entry(path, schema, check)
        if arrays is not None:
            return arrays
    arrays = build()
    try:  # the temporary name holds the writer's pid for sweep_temporary_files (it does the cleaning)
        temporary = atomic_file(path, prefix=f".{kind}-{os.getpid()}-", suffix=".npz.tmp", clean=False)
        with temporary as tmp, open(tmp, "wb") as handle:
            np.savez(handle, allow_pickle=True, **arrays, **{DIGEST_KEY: np.array(_arrays_digest(arrays))})
    except OSError:
        pass  # a read-only or full cache folder must not stop the work
    return arrays
