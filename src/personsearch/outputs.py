"""Output files and run folders: checked before long work starts, written atomically, kill leftovers removed.

Every file the project writes goes to a temporary ``.{name}.XXXXXXXX.tmp`` next to it (``tempfile.mkstemp``
with prefix ``.{name}.`` and suffix ``.tmp``), then is renamed over the target, so a crash or a kill never
leaves a half-written file under the real name: :func:`atomic_file` is the one place that does it (checkpoints,
index databases and caches, annotation caches with their own temporary names too). A kill can leave the
temporary file behind: :func:`remove_stale_temp_files` deletes those on the next run that writes there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from personsearch.errors import PersonSearchError

#: A temporary file of :func:`atomic_file` (with its default names): ``.{name}.{8 random chars}.tmp``.
TEMP_FILE = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (created if missing), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"{folder} is not a folder"
    except OSError as exc:
        return f"cannot create folder {folder} ({exc.strerror or exc})"
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".personsearch-write-test.", suffix=".tmp")
    except OSError as exc:
        return f"cannot write in {folder} ({exc.strerror or exc})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def check_output_file(path: str | Path | None, option: str = "--out") -> Path | None:
    """Fail now (a one-line :class:`PersonSearchError`), not after the work, if ``path`` cannot be written:
    it is a folder, its folder cannot be created, or nothing can be written there. Creates the folder."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise PersonSearchError(f"{option} {path} is a folder; give a file name")
    problem = _folder_problem(path.parent)
    if problem:
        raise PersonSearchError(f"{option} {path}: {problem}")
    return path


def remove_stale_temp_files(folder: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the temporary files a killed write left in ``folder`` (for target ``names``, or any)."""
    folder = Path(folder)
    wanted = None if names is None else set(names)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_FILE.fullmatch(entry.name)
        if match and (wanted is None or match["name"] in wanted) and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def _sync(handle: BinaryIO) -> None:
    """Flush ``handle`` to the disk (where a full disk shows at the latest)."""
    handle.flush()
    os.fsync(handle.fileno())


def make_readable(path: str | Path) -> None:
    """Give a file made by ``tempfile.mkstemp`` (mode 0600) the mode of a newly created file (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def atomic_file(
    path: str | Path, prefix: str | None = None, suffix: str = ".tmp", clean: bool = True
) -> Iterator[Path]:
    """The one atomic writer: yields a new empty temporary file next to ``path`` (``tempfile.mkstemp``, named
    ``{prefix}XXXXXXXX{suffix}``, by default ``.{name}.XXXXXXXX.tmp``) for the block to write, by path or by
    opening it. When the block ends normally the file is flushed to the disk, given the umask's mode
    (:func:`make_readable`) and renamed over ``path``; when it raises, or the sync or the rename fails, the
    temporary file is removed, ``path`` is unchanged and the exception propagates. Creates the folder;
    ``clean`` first removes what killed earlier writes of ``path`` left (:func:`remove_stale_temp_files`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if clean:
        remove_stale_temp_files(path.parent, [path.name])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            _sync(handle)
        make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_same_file(source: str | Path, path: str | Path) -> Path:
    """Make ``path`` hold what ``source`` holds, atomically (:func:`atomic_file`): a hard link where the file
    system allows one, so the bytes are on the disk once, else a copy. Later writes of either name replace
    that name (temporary file, then rename), so they never change the other."""
    with atomic_file(path) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # no hard links here (another file system, FAT, some network shares)
            shutil.copyfile(source, tmp)
    return Path(path)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], what: str = "file") -> Path:
    """Write ``path`` through ``write(handle)`` with :func:`atomic_file`. A failed write (a full disk, say)
    is a one-line :class:`PersonSearchError` naming the file; ``path`` is then unchanged."""
    path = Path(path)
    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as handle:
            write(handle)
    except OSError as exc:
        kept = "the previous one is unchanged" if path.is_file() else "nothing was written"
        raise PersonSearchError(f"cannot write {what} {path} ({exc.strerror or exc}); {kept}") from None
    return path


def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    data = text.encode()
    return atomic_write(path, lambda handle: handle.write(data), what)


def check_run_folder(
    folder: str | Path, finished: Iterable[str], overwrite: bool = False, resumable: bool = True
) -> Path:
    """A :class:`PersonSearchError` if ``folder`` cannot hold a new run: it is a file or cannot be created,
    or it already holds every file of ``finished`` (a run: ``config.yaml`` and ``last.pth``, say) and
    ``overwrite`` is not given. Checks only; :func:`open_run_folder` clears the folder when the run starts."""
    folder = Path(folder)
    finished = list(finished)
    if folder.is_dir() and all((folder / name).is_file() for name in finished) and not overwrite:
        resume = f"continue it with --resume {folder}, " if resumable else ""
        raise PersonSearchError(
            f"run folder {folder} already holds a run ({', '.join(finished)}); {resume}"
            "replace it with --overwrite, or choose another output_dir"
        )
    problem = _folder_problem(folder)
    if problem:
        raise PersonSearchError(f"run folder {folder}: {problem}")
    return folder


def open_run_folder(folder: str | Path, remove: Iterable[str] = ()) -> Path:
    """Create ``folder``, delete the files matching the glob patterns ``remove`` (the previous run's, with
    --overwrite) and the temporary files killed writes left there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for pattern in remove:
            for old in folder.glob(pattern):
                if old.is_file():
                    old.unlink()
    except OSError as exc:
        raise PersonSearchError(f"run folder {folder}: cannot prepare it ({exc.strerror or exc})") from None
    remove_stale_temp_files(folder)
    return folder
