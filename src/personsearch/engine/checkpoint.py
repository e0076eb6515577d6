"""Checkpoints: atomic writes (temp file + rename), CPU-loadable reads with readable errors, and the id of a
checkpoint file (:func:`checkpoint_id`) that indexes and exported models record.

torch is imported where it is used, so :func:`checkpoint_id` works without it (the onnxruntime backend)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from personsearch.errors import PersonSearchError
from personsearch.outputs import atomic_file, atomic_same_file

LAST = "last.pth"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file in the same folder, then rename it
    (:func:`~personsearch.outputs.atomic_file`).

    A crash or kill while writing leaves the previous checkpoint intact (rename is atomic on POSIX); a
    failed write (a full disk, say) raises a one-line :class:`PersonSearchError` naming the file.
    """
    import torch

    path = Path(path)
    state = plain(state)
    try:
        with atomic_file(path) as tmp, open(tmp, "wb") as handle:
            torch.save(state, handle)
    except (OSError, RuntimeError) as exc:  # torch re-raises a failed write as RuntimeError
        cause = next((e for e in _exception_chain(exc) if isinstance(e, OSError)), exc)
        kept = "the previous one is unchanged" if path.exists() else "nothing was written"
        raise PersonSearchError(f"cannot write checkpoint {path} ({cause}); {kept}") from exc
    return path


def link_checkpoint(source: str | Path, path: str | Path) -> Path:
    """Make checkpoint ``path`` (``last.pth``, say) the same file as the one just written at ``source``:
    a hard link (no second copy on the disk), or a copy where links are not possible; atomic either way."""
    try:
        return atomic_same_file(source, path)
    except OSError as exc:
        raise PersonSearchError(f"cannot write checkpoint {path} ({exc}); the previous one is unchanged") from exc


def checkpoint_id(path: str | Path) -> str:
    """The id of a checkpoint file: the SHA-256 (hex) of its bytes, read in 1 MiB chunks. Needs no torch.
    (An exported model's folder carries its checkpoint's id: :func:`personsearch.export.runtime.model_id`.)"""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        raise PersonSearchError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise PersonSearchError(f"checkpoint {path} is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise PersonSearchError(f"cannot read checkpoint {path} ({exc.strerror or exc})") from None
    return digest.hexdigest()


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars turned into Python numbers and paths into strings, through dicts, lists
    and tuples (tensors untouched), so that ``torch.load(..., weights_only=True)`` can read it back."""
    import collections

    import numpy as np
    import torch

    if torch.is_tensor(obj):
        return obj
    if isinstance(obj, dict):
        if all(type(k) is str and torch.is_tensor(v) for k, v in obj.items()):
            return obj  # a state dict, kept with its ``_metadata``
        items = ((plain(k), plain(v)) for k, v in obj.items())
        out = collections.OrderedDict(items) if isinstance(obj, collections.OrderedDict) else dict(items)
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata  # type: ignore[attr-defined]
        return out
    if type(obj) in (list, tuple):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, innermost last."""
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain:
        chain.append(node)
        node = node.__cause__ or node.__context__
    return chain


#: numpy objects that checkpoints written before RNG states were stored as tensors hold (numpy's RNG key, a
#: ``uint32`` array): array and dtype reconstruction only, no callable that could run code. The name under
#: numpy 1.x (``numpy.core``) is accepted too.
def _old_numpy_globals() -> list:
    import numpy as np

    reconstruct = np._core.multiarray._reconstruct  # type: ignore[attr-defined]
    return [
        reconstruct,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        np.dtypes.UInt32DType,
    ]


#: What each kind of checkpoint must hold, and what it is called in messages.
_KINDS = {
    "model": ("a person search model (train)", ("config", "num_classes")),
    "resume": ("a person search model (train)", ("config", "num_classes", "optimizer", "scheduler", "train_state")),
    "teacher": ("a Re-ID teacher (train-teacher)", ("teacher",)),
}


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Load a checkpoint onto the CPU (works on hosts without a GPU) without running any code in it.

    Only tensors and plain Python values are unpickled (``torch.load(..., weights_only=True)``); checkpoints
    of older versions, which hold numpy's RNG state as an array, load with a narrow numpy allowlist. A file
    holding anything else (a crafted payload) is refused with a one-line :class:`PersonSearchError`.
    ``kind`` (``model``: a training checkpoint for infer/test/search, ``resume``: one to continue training
    from, ``teacher``: a ``train-teacher`` checkpoint) checks that the file is that kind of checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise PersonSearchError(f"checkpoint {path} does not exist")
    state = _safe_load(path)
    if not isinstance(state, dict) or "model" not in state:
        raise PersonSearchError(f"{path}: not a personsearch checkpoint (no 'model' entry)")
    if not isinstance(state["model"], dict) or not all(torch.is_tensor(v) for v in state["model"].values()):
        raise PersonSearchError(f"{path}: not a personsearch checkpoint (its 'model' entry is not a dict of tensors)")
    if kind is not None:
        _check_kind(path, state, kind)
    return state


def _check_kind(path: Path, state: dict[str, Any], kind: str) -> None:
    what, needed = _KINDS[kind]
    is_teacher = "teacher" in state
    if kind == "teacher" and not is_teacher and "num_classes" in state:
        raise PersonSearchError(
            f"checkpoint {path} is a person search model (train), not a Re-ID teacher (train-teacher)"
        )
    if kind != "teacher" and is_teacher:
        raise PersonSearchError(f"checkpoint {path} is a Re-ID teacher (train-teacher), not a person search model")
    missing = [key for key in needed if key not in state]
    if kind == "resume" and missing and not any(key in missing for key in _KINDS["model"][1]):
        raise PersonSearchError(
            f"checkpoint {path} holds no {', '.join(missing)}: infer/test can use it, train --resume cannot"
        )
    if missing:
        raise PersonSearchError(f"checkpoint {path} lacks {', '.join(map(repr, missing))}: not {what} checkpoint")
    if kind == "teacher":
        if not isinstance(state["teacher"], dict):
            raise PersonSearchError(f"checkpoint {path}: its 'teacher' entry is not a teacher spec")
        return
    cfg = state["config"]
    sections = ("model",) if kind == "model" else ("model", "train", "dataset")
    bad = [s for s in sections if not isinstance(cfg, dict) or not isinstance(cfg.get(s), dict)]
    if bad:
        raise PersonSearchError(f"checkpoint {path}: its saved config has no {', '.join(bad)} section")
    if isinstance(state["num_classes"], bool) or not isinstance(state["num_classes"], int):
        raise PersonSearchError(f"checkpoint {path}: its 'num_classes' entry is not an integer")


def _safe_load(path: Path) -> Any:
    import pickle
    import warnings

    import torch

    def load() -> Any:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal below says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)

    try:
        try:
            return load()
        except pickle.UnpicklingError as exc:
            if "numpy" not in str(exc):
                raise
            with torch.serialization.safe_globals(_old_numpy_globals()):
                return load()
    except pickle.UnpicklingError as exc:
        names = _unsafe_globals(path, str(exc))
        if names:
            raise PersonSearchError(
                f"{path}: refused to load: it contains Python objects a checkpoint should not "
                f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}); only tensors and plain values "
                "are loaded from checkpoints, nothing in it was run"
            ) from None
        raise PersonSearchError(f"{path}: not a readable checkpoint ({_reason(exc)})") from None
    except Exception as exc:  # torch raises many types for damaged files
        raise PersonSearchError(f"{path}: not a readable checkpoint ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """One line about ``exc``: torch's weights-only errors are a page long, the cause is one line of it."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text[text.index(marker) + len(marker) :]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return f"{exc.__class__.__name__}: {first}" if first else exc.__class__.__name__


def _unsafe_globals(path: Path, message: str) -> list[str]:
    """The classes and functions a refused file references beyond what ``weights_only`` loading allows: read
    from the pickle opcodes (never executed) and from torch's error message."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except Exception:  # a private torch helper: fall back to a prefix test
        allowed = {"collections.OrderedDict"}
    allowed |= {name if isinstance(name, str) else f"{name.__module__}.{name.__qualname__}" for name in
                (g[1] if isinstance(g, tuple) else g for g in _old_numpy_globals())}  # fmt: skip
    found = (re.sub(r"^__builtin__\.", "builtins.", n) for n in _pickle_globals(path))  # protocol-2 spelling
    names = [n for n in found if n not in allowed and not n.startswith("torch.")]
    for pattern in (r"GLOBAL (\S+) was not an allowed global", r"but got <class '([^']+)'>"):
        match = re.search(pattern, message)
        if match and not any(n == match.group(1) or n.endswith("." + match.group(1)) for n in names):
            names.insert(0, match.group(1))
    if not names and ("allowlist" in message or "Unsupported global" in message):
        names = [_reason(Exception(message)).split(": ", 1)[-1] or "unknown"]
    return list(dict.fromkeys(names))


def _pickle_globals(path: Path, limit: int = 64 << 20) -> list[str]:
    """Every ``module.name`` global the pickles of a checkpoint reference, found by reading opcodes only.

    Handles torch's zip format (``*/data.pkl``), its legacy format and plain pickle files (consecutive
    pickles, read until the first thing that is not one); best effort, for naming what was refused.
    """
    import io
    import pickletools
    import zipfile

    blobs: list[bytes] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                blobs = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
        else:
            with open(path, "rb") as handle:
                blobs = [handle.read(limit)]
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return []
    found: list[str] = []
    for blob in blobs:
        stream = io.BytesIO(blob)
        while stream.tell() < len(blob):
            memo: dict[Any, Any] = {}
            pushed: list[Any] = []
            try:
                for op, arg, _ in pickletools.genops(stream):
                    name = op.name
                    if name == "GLOBAL" or name == "INST":
                        found.append(str(arg).replace(" ", "."))
                    elif name == "STACK_GLOBAL":
                        if len(pushed) >= 2 and all(isinstance(v, str) for v in pushed[-2:]):
                            found.append(f"{pushed[-2]}.{pushed[-1]}")
                        pushed.append(None)
                    elif name == "MEMOIZE":
                        memo[len(memo)] = pushed[-1] if pushed else None
                    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                        memo[arg] = pushed[-1] if pushed else None
                    elif name in ("GET", "BINGET", "LONG_BINGET"):
                        pushed.append(memo.get(arg))
                    elif name not in ("PROTO", "FRAME", "STOP"):
                        text = isinstance(arg, str) and ("UNICODE" in name or "STRING" in name)
                        pushed.append(arg if text else None)
            except Exception:  # not (or no longer) a pickle: raw tensor bytes of the legacy format, garbage
                break
    return list(dict.fromkeys(found))


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
