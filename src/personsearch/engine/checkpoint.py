"""Checkpoints: atomic writes (temp file + rename) and CPU-loadable reads with readable errors."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from personsearch.errors import PersonSearchError

LAST = "last.pth"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file in the same folder, then rename it.

    A crash or kill while writing leaves the previous checkpoint intact (rename is atomic on POSIX); a
    failed write (a full disk, say) raises a one-line :class:`PersonSearchError` naming the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch re-raises a failed write as RuntimeError
        cause = next((e for e in _exception_chain(exc) if isinstance(e, OSError)), exc)
        kept = "the previous one is unchanged" if path.exists() else "nothing was written"
        raise PersonSearchError(f"cannot write checkpoint {path} ({cause}); {kept}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, innermost last."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU (works on hosts without a GPU)."""
    path = Path(path)
    if not path.is_file():
        raise PersonSearchError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for damaged files
        raise PersonSearchError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise PersonSearchError(f"{path}: not a personsearch checkpoint (no 'model' entry)")
    return state


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pth"


def prune_epoch_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest ``epoch_*.pth`` files (``last.pth`` is never deleted)."""
    found = sorted(p for p in folder.glob("epoch_*.pth") if re.fullmatch(r"epoch_\d+\.pth", p.name))
    for old in found[: max(0, len(found) - max(keep, 0))]:
        old.unlink(missing_ok=True)


def resolve_resume(path: str | Path) -> Path:
    """``--resume`` accepts a run folder (its ``last.pth``) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        candidate = path / LAST
        if not candidate.is_file():
            raise PersonSearchError(f"--resume {path}: the run folder holds no {LAST}")
        return candidate
    if not path.is_file():
        raise PersonSearchError(f"--resume {path}: no such run folder or checkpoint")
    return path
