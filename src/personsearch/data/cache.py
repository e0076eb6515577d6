"""A compact on-disk cache for parsed annotation files.

Parsing MATLAB files is slow (scipy needs minutes and gigabytes for CUHK-SYSU's ``TestG4000.mat``), so
parsed results are stored as ``.npz`` archives keyed by the source files' absolute paths, sizes and
modification times: editing or replacing a source file invalidates its entry. The cache lives outside the
dataset folder (which may be read-only): ``$PERSONSEARCH_CACHE`` if set, else
``$XDG_CACHE_HOME/personsearch``, else ``~/.cache/personsearch``. ``PERSONSEARCH_CACHE=off`` disables it.
Writes go to a temporary file that is renamed into place, so a crash never leaves a corrupt entry, and an
unreadable entry is simply rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

CACHE_FORMAT_VERSION = 1


def cache_dir() -> Path | None:
    """The cache folder, or ``None`` when caching is switched off."""
    configured = os.environ.get("PERSONSEARCH_CACHE")
    if configured is not None:
        if configured.strip().lower() in {"", "0", "off", "none", "false"}:
            return None
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "personsearch"


def _fingerprint(kind: str, sources: Sequence[Path], params: dict | None) -> str:
    items = []
    for src in sources:
        src = Path(src).resolve()
        st = src.stat()
        items.append([str(src), st.st_size, st.st_mtime_ns])
    from personsearch import __version__

    payload = json.dumps([CACHE_FORMAT_VERSION, __version__, kind, items, params or {}], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def load_or_build(
    kind: str,
    sources: Sequence[Path],
    build: Callable[[], dict[str, np.ndarray]],
    params: dict | None = None,
) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, from the cache when the ``sources`` have not changed since.

    ``kind`` names what is cached (it becomes part of the file name); ``params`` are extra settings that
    change the result. Arrays must be storable with ``allow_pickle=False`` (numbers, booleans, strings).
    """
    folder = cache_dir()
    if folder is None:
        return build()
    path = folder / f"{kind}-{_fingerprint(kind, sources, params)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            pass  # unreadable entry: rebuild it below
    arrays = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{kind}-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass  # a read-only or full cache folder must not stop the work
    return arrays
